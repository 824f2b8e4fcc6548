// Contract: the app's memory plan (worker/plan.ts) is the engine planner's: the same peak as `usaf plan` for the same
// settings, each built-in preset planned on its own model, and the GPU's buffer limits and the memory given judged.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { plan as planCommand } from '../../../src/cli/commands/plan.ts';
import type { GpuInfo } from '../../../src/engine/gpu/device.ts';
import { parseConfig } from '../../../src/engine/model/index.ts';
import { BUILTIN_PRESETS, DEFAULTS, type Settings } from '../../../src/presets/index.ts';
import { PRESET_MODEL_CONFIGS } from '../../../src/presets/models.ts';
import { appPlan, planSettings } from '../../../src/worker/plan.ts';

const GiB = 2 ** 30;
const demo = parseConfig(PRESET_MODEL_CONFIGS['usaf-demo-moe']);
const qwen = parseConfig(PRESET_MODEL_CONFIGS['Qwen/Qwen3-30B-A3B']);
const qwen2 = parseConfig(JSON.parse(readFileSync('test/unit/model/configs/Qwen1.5-MoE-A2.7B.json', 'utf8')));

/** Limits as a browser reports them (only the two the plan reads matter). */
const gpu = (maxBufferSize: number, maxStorageBufferBindingSize: number): GpuInfo =>
  ({ maxBufferSize, maxStorageBufferBindingSize } as GpuInfo);

async function cliPlan(argv: string[]): Promise<{ code: number; out: { peak: number; fits: boolean } }> {
  const lines: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((s: unknown) => void lines.push(String(s)));
  const code = await planCommand.run(argv);
  vi.restoreAllMocks();
  return { code, out: JSON.parse(lines.join('\n')) as { peak: number; fits: boolean } };
}

describe('app memory plan', () => {
  afterEach(() => vi.restoreAllMocks());

  it('agrees with `usaf plan` on the demo, Qwen3-30B-A3B (also with 4-bit experts) and Qwen1.5-MoE (trained shared experts) configs (no dataset: no frozen cache)', async () => {
    const cases: [string, typeof demo, Partial<Settings>, string[]][] = [
      ['public/models/usaf-demo-moe/config.json', demo, { seq: 96, microbatch: 3 }, ['--seq', '96', '--microbatch', '3']],
      ['src/presets/configs/Qwen3-30B-A3B.json', qwen, { trainFrom: 44, microbatch: 1 }, ['--train-from', '44', '--microbatch', '1']],
      ['public/models/usaf-demo-moe/config.json', demo, { quantizeExperts: true, quantGroupSize: 64 }, ['--quantize-experts', '--group-size', '64']],
      ['src/presets/configs/Qwen3-30B-A3B.json', qwen, { quantizeExperts: true }, ['--quantize-experts']],
      ['test/unit/model/configs/Qwen1.5-MoE-A2.7B.json', qwen2, { trainShared: true, microbatch: 1 }, ['--train-shared', '--microbatch', '1']],
      ['src/presets/configs/Qwen3-30B-A3B.json', qwen, { quantizeExperts: true, streamFrozen: true }, ['--quantize-experts', '--stream-frozen']],
    ];
    for (const [path, spec, over, flags] of cases) {
      const settings = { ...DEFAULTS, ...over };
      for (const gib of [0.25, 24, 200]) {
        const app = appPlan({ gpu: null, spec, settings, trainTokens: null, gpuMemoryBytes: gib * GiB });
        // 4-bit: both split the experts into the largest chunks that fit the memory given (the worker's Trainer gets it too)
        const cli = await cliPlan(['--model', path, ...flags, '--gpu-gib', String(gib)]);
        expect(app.gpuBytes).toBe(cli.out.peak);
        expect(app.fits).toBe(cli.out.fits);
        expect(cli.code).toBe(cli.out.fits ? 0 : 1);
      }
    }
  });

  it('Qwen3-235B-A22B top 8 in 16 GiB: the app, like `usaf plan`, keeps the trained layers\' 4-bit experts in host memory and says so', async () => {
    const path = 'test/unit/model/configs/Qwen3-235B-A22B.json';
    const spec = parseConfig(JSON.parse(readFileSync(path, 'utf8')));
    const settings = { ...DEFAULTS, trainFrom: 86, quantizeExperts: true, streamFrozen: true };
    const app = appPlan({ gpu: null, spec, settings, trainTokens: null, gpuMemoryBytes: 16 * GiB });
    const cli = await cliPlan(['--model', path, '--train-from', '86', '--quantize-experts', '--stream-frozen', '--gpu-gib', '16']);
    expect(app.fits).toBe(true);
    expect(cli.out.fits).toBe(true);
    expect(app.gpuBytes).toBe(cli.out.peak);
    const host = app.items.find((i) => /host memory \(copied/.test(i.label));
    expect(host?.where).toBe('cpu');
    expect(host!.bytes).toBeGreaterThan(9.5 * GiB);
    // with room for them, the experts stay on the GPU and no such line is shown
    const roomy = appPlan({ gpu: null, spec, settings, trainTokens: null, gpuMemoryBytes: 24 * GiB });
    expect(roomy.items.some((i) => /host memory \(copied/.test(i.label))).toBe(false);
  });

  it('sizes the frozen cache as the worker allocates it: every training sequence (STEPS · MICROBATCH · ACCUM at random positions, or every window)', () => {
    expect(planSettings(demo, { ...DEFAULTS, seq: 100 }, 1001, null).frozenCacheN).toBe(180 * 2);
    expect(planSettings(demo, { ...DEFAULTS, seq: 100, steps: 7, accum: 3 }, 1001, null).frozenCacheN).toBe(7 * 2 * 3);
    expect(planSettings(demo, { ...DEFAULTS, seq: 100, epochs: 2 }, 1001, null).frozenCacheN).toBe(Math.floor((2 * 1001) / 200) * 2);
  });

  it('WINDOW_SAMPLES: every training window, capped by FROZEN_CACHE_N and maxBufferSize', () => {
    const s = { ...DEFAULTS, seq: 100, windowSampling: true };
    expect(planSettings(demo, s, 1001, null).frozenCacheN).toBe(11);
    expect(planSettings(demo, { ...s, frozenCacheN: 4 }, 1001, null).frozenCacheN).toBe(4);
    expect(planSettings(demo, s, 1001, 5 * 100 * 256 * 4 + 3).frozenCacheN).toBe(5);
    expect(planSettings(demo, { ...s, trainFrom: 0 }, 1001, null).frozenCacheN).toBe(0);
    const withData = appPlan({ gpu: null, spec: demo, settings: s, trainTokens: 1001, gpuMemoryBytes: null });
    const without = appPlan({ gpu: null, spec: demo, settings: s, trainTokens: null, gpuMemoryBytes: null });
    expect(withData.gpuBytes - without.gpuBytes).toBe(11 * 100 * 256 * 4);
  });

  it('pre-tokenized records: at least one sample per SEQ tokens, whatever WINDOW_SAMPLES says', () => {
    expect(planSettings(demo, { ...DEFAULTS, seq: 100 }, 1001, null, true).frozenCacheN).toBe(11);
    expect(planSettings(demo, { ...DEFAULTS, seq: 100, windowSampling: true }, 1001, null, true).frozenCacheN).toBe(11);
    const records = appPlan({ gpu: null, spec: demo, settings: { ...DEFAULTS, seq: 100 }, trainTokens: 1001, pretokenized: true, gpuMemoryBytes: null });
    const text = appPlan({ gpu: null, spec: demo, settings: { ...DEFAULTS, seq: 100 }, trainTokens: 1001, gpuMemoryBytes: null });
    expect(text.gpuBytes - records.gpuBytes).toBe((360 - 11) * 100 * 256 * 4);
  });

  it('STREAM_FROZEN: every training window cached in host memory (RAM, not GPU), whatever FROZEN_CACHE_N and maxBufferSize', () => {
    const s = { ...DEFAULTS, seq: 100, streamFrozen: true, frozenCacheN: 4, windowSampling: true };
    const ps = planSettings(demo, s, 1001, 5 * 100 * 256 * 4 + 3);
    expect([ps.frozenCacheN, ps.streamFrozen]).toEqual([11, true]);
    expect(planSettings(demo, { ...s, trainFrom: 0 }, 1001, null).streamFrozen).toBe(false);
    const withData = appPlan({ gpu: null, spec: demo, settings: s, trainTokens: 1001, gpuMemoryBytes: null });
    const without = appPlan({ gpu: null, spec: demo, settings: s, trainTokens: null, gpuMemoryBytes: null });
    expect(withData.gpuBytes).toBe(without.gpuBytes);
    const resident = appPlan({ gpu: null, spec: demo, settings: { ...s, streamFrozen: false }, trainTokens: 1001, gpuMemoryBytes: null });
    expect(withData.gpuBytes).toBeLessThan(resident.gpuBytes);
  });

  it('judges the GPU limits: a binding larger than maxStorageBufferBindingSize does not fit, and says which', () => {
    const ok = appPlan({ gpu: gpu(2 * GiB, 2 * GiB), spec: demo, settings: DEFAULTS, trainTokens: 100_912, gpuMemoryBytes: null });
    expect(ok.fits).toBe(true);
    expect(ok.notes.join(' ')).toMatch(/WebGPU does not report/);
    const tight = appPlan({ gpu: gpu(2 * GiB, 1024 * 1024), spec: demo, settings: DEFAULTS, trainTokens: 100_912, gpuMemoryBytes: null });
    expect(tight.fits).toBe(false);
    expect(tight.notes.join(' ')).toMatch(/largest bound buffer \(.+\) exceeds this GPU's maxStorageBufferBindingSize/);
  });

  it('plans every built-in preset on its own model: each fits the GPU memory it names (the Qwen3-30B-A3B ones with 4-bit experts and streamed frozen layers)', () => {
    expect(BUILTIN_PRESETS.map((p) => p.model)).toEqual(['usaf-demo-moe', 'usaf-demo-moe', 'Qwen/Qwen3-30B-A3B', 'Qwen/Qwen3-30B-A3B']);
    for (const p of BUILTIN_PRESETS) {
      const spec = parseConfig(PRESET_MODEL_CONFIGS[p.model!]);
      const budget = p.gpuGiB === null ? null : p.gpuGiB * GiB;
      const r = appPlan({ gpu: gpu(2 ** 40, 2 * GiB - 4), spec, settings: p.settings, trainTokens: null, gpuMemoryBytes: budget });
      expect(r.gpuBudgetBytes).toBe(budget);
      expect(r.fits).toBe(true);
      if (p.model === 'usaf-demo-moe') {
        expect(r.trainFrom).toBe(4);
      } else {
        expect([p.settings.quantizeExperts, p.settings.streamFrozen]).toEqual([true, true]);
        expect(r.items[0]!.label).toMatch(/4 bits/);
        expect(r.trainFrom).toBe(40);
        // room to spare on the card: at most 11 GiB of 12, 13 GiB of 24
        expect(r.gpuBytes).toBeLessThanOrEqual((p.gpuGiB === 12 ? 11 : 13) * GiB);
        expect(r.notes.join(' ')).toMatch(/STREAM_FROZEN: the frozen layers stay in storage/);
        // with every frozen layer resident: 12 GB does not fit (the 4-bit experts of 48 layers alone take ~15 GiB); 24 GB
        // fits only in expert chunks, within 1.5 GiB of the card's size
        const resident = appPlan({ gpu: gpu(2 ** 40, 2 * GiB - 4), spec, settings: { ...p.settings, streamFrozen: false }, trainTokens: null, gpuMemoryBytes: budget });
        if (p.gpuGiB === 24) {
          expect(resident.gpuBytes).toBeGreaterThan(22.5 * GiB);
          continue;
        }
        expect(resident.fits).toBe(false);
        expect(resident.notes.join(' ')).toMatch(/With STREAM_FROZEN on \(frozen layers read once from storage instead of resident on the GPU\), the peak would be .*, which fits/);
      }
    }
  });

  it('QUANTIZE_EXPERTS: the demo plan has 4-bit experts and a smaller peak; QUANT_GROUP 64 costs more tables than 128', () => {
    const plan = (over: Partial<Settings>) => appPlan({ gpu: null, spec: demo, settings: { ...DEFAULTS, ...over }, trainTokens: 100_912, gpuMemoryBytes: null });
    const bf16 = plan({});
    const q128 = plan({ quantizeExperts: true });
    const q64 = plan({ quantizeExperts: true, quantGroupSize: 64 });
    expect(planSettings(demo, { ...DEFAULTS, quantizeExperts: true, quantGroupSize: 64 }, 100_912, null).quantizeExperts).toEqual({ groupSize: 64 });
    expect(planSettings(demo, DEFAULTS, 100_912, null).quantizeExperts).toBeNull();
    const weights = (p: typeof bf16) => p.items.find((i) => i.label.startsWith('Weights'))!;
    expect(weights(bf16).label).toMatch(/frozen bf16/);
    expect(weights(q128).label).toMatch(/4 bits/);
    expect(weights(q128).bytes).toBeLessThan(weights(bf16).bytes / 2);
    expect(weights(q64).bytes).toBeGreaterThan(weights(q128).bytes);
    expect(q128.gpuBytes).toBeLessThan(bf16.gpuBytes);
    expect(q128.notes.join(' ')).not.toMatch(/QUANTIZE_EXPERTS|not applied/);
  });

  it('4-bit overlays are sized for the run: STEPS (EPOCHS resolved) and RESELECT_EVERY reach the planner', () => {
    const s = { ...DEFAULTS, quantizeExperts: true };
    expect(planSettings(demo, { ...s, epochs: 2 }, 100_912, null)).toMatchObject({ steps: 197, reselectEvery: 50 });
    const few = appPlan({ gpu: null, spec: demo, settings: { ...s, reselectEvery: 0 }, trainTokens: null, gpuMemoryBytes: null });
    const many = appPlan({ gpu: null, spec: demo, settings: { ...s, reselectEvery: 10 }, trainTokens: null, gpuMemoryBytes: null });
    expect(many.gpuBytes).toBeGreaterThan(few.gpuBytes);
  });

  it('TRAIN_SHARED: more memory on a model with shared experts (Qwen1.5-MoE), none on the demo (it has none)', () => {
    const plan = (spec: typeof demo, trainShared: boolean) =>
      appPlan({ gpu: null, spec, settings: { ...DEFAULTS, trainShared, microbatch: 1 }, trainTokens: null, gpuMemoryBytes: null }).gpuBytes;
    expect(planSettings(qwen2, { ...DEFAULTS, trainShared: true }, null, null).trainShared).toBe(true);
    expect(plan(qwen2, true)).toBeGreaterThan(plan(qwen2, false));
    expect(plan(demo, true)).toBe(plan(demo, false));
  });

  it('every setting is applied: no note says otherwise; PER_ENTRY_STEP adds its update counts to the optimizer state', () => {
    const plan = (over: Partial<Settings>) => appPlan({ gpu: null, spec: demo, settings: { ...DEFAULTS, ...over }, trainTokens: null, gpuMemoryBytes: null });
    const all = plan({ keepAdamState: true, trainShared: true, quantizeExperts: true, perEntryStep: true, accumulatedReselect: true });
    expect(all.notes.join(' ')).not.toMatch(/not applied/);
    const optimizer = (p: typeof all) => p.items.find((i) => i.label.startsWith('Adam'))!.bytes;
    expect(planSettings(demo, { ...DEFAULTS, perEntryStep: true }, null, null).perEntryStep).toBe(true);
    expect(optimizer(plan({ perEntryStep: true }))).toBeGreaterThan(optimizer(plan({})));
  });

  it('an unquantized run that fits nowhere proposes QUANTIZE_EXPERTS', () => {
    const r = appPlan({ gpu: null, spec: qwen, settings: { ...DEFAULTS }, trainTokens: null, gpuMemoryBytes: 24 * GiB });
    expect(r.notes.join(' ')).toMatch(/with QUANTIZE_EXPERTS on: TRAIN_FROM \d+, MICROBATCH \d+/);
  });
});
