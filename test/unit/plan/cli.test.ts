// Contract: `usaf plan` prints the plan as JSON with "fits" and returns 0 iff it fits, from a config.json or a model folder.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { plan } from '../../../src/cli/commands/plan.ts';

async function runPlan(argv: string[]): Promise<{ code: number; out: Record<string, unknown> }> {
  const lines: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((s: unknown) => void lines.push(String(s)));
  const code = await plan.run(argv);
  return { code, out: JSON.parse(lines.join('\n')) as Record<string, unknown> };
}

describe('usaf plan', () => {
  afterEach(() => vi.restoreAllMocks());

  it('Qwen3-30B-A3B config.json, TRAIN_FROM 40, 2×512, 12 GiB, unquantized: does not fit, exit 1', async () => {
    const { code, out } = await runPlan(['--model', 'test/unit/model/configs/Qwen3-30B-A3B.json', '--train-from', '40', '--microbatch', '2', '--seq', '512', '--gpu-gib', '12']);
    expect(out.fits).toBe(false);
    expect(code).toBe(1);
    expect(out.settings).toMatchObject({ trainFrom: 40, microbatch: 2, seq: 512, frozenCacheN: 0 });
    const gpu = out.gpu as Record<string, number>;
    for (const k of ['weights', 'masters', 'optimizer', 'activations', 'cache', 'workspace', 'total']) expect(typeof gpu[k]).toBe('number');
    expect((out.storage as Record<string, number>).q4).toBeGreaterThan(15e9);
    // the frozen layers alone (bf16, resident) exceed 12 GiB: only streamed, with fewer f32 trained layers
    expect(out.suggestion).toMatchObject({ streamFrozen: true, microbatch: 2 });
    expect((out.suggestion as { trainFrom: number }).trainFrom).toBeGreaterThan(44);
  });

  it('Qwen3-30B-A3B, TRAIN_FROM 40, 2×512, 4-bit, frozen layers streamed: fits 12 GiB, and 8 with the selection work in expert chunks it picks; --expert-chunk forces one', async () => {
    const args = ['--model', 'test/unit/model/configs/Qwen3-30B-A3B.json', '--train-from', '40', '--quantize-experts', '--stream-frozen'];
    // fused (the default for 4-bit): the chunk sizes only the scratch a selection or an export makes (the plan's transient)
    for (const [gib, chunk] of [['12', undefined], ['8', 43]] as const) {
      const { code, out } = await runPlan([...args, '--gpu-gib', gib]);
      expect(code).toBe(0);
      expect(out.settings).toMatchObject({ trainFrom: 40, microbatch: 2, seq: 512 });
      expect((out.settings as { expertChunk?: number }).expertChunk).toBe(chunk);
      expect((out.settings as { hostExperts?: boolean }).hostExperts).toBeUndefined(); // fits without hosting its experts
    }
    // one chunk forced: one layer's 128 experts in f32 (2.25 GiB) while selecting; it fits 8 GiB only with the trained
    // layers' 4-bit experts in host memory, which the plan then takes (fitSettings), and not at all in 7
    const forced = await runPlan([...args, '--gpu-gib', '8', '--expert-chunk', '128']);
    expect(forced.code).toBe(0);
    expect(forced.out.settings).toMatchObject({ expertChunk: 128, hostExperts: true });
    expect(forced.out.hostVisible as number).toBeGreaterThan(2 * 2 ** 30);
    const tight = await runPlan([...args, '--gpu-gib', '7', '--expert-chunk', '128']);
    expect(tight.code).toBe(1);
    expect(tight.out.peakGiB as number).toBeGreaterThan(7);
  });

  it('the demo model folder fits 1 GiB (exit 0) and not 64 MiB (exit 1); defaults to the top half for ≤ 16 layers', async () => {
    const a = await runPlan(['--model', 'public/models/usaf-demo-moe', '--seq', '32', '--gpu-gib', '1']);
    expect(a.code).toBe(0);
    expect(a.out.fits).toBe(true);
    expect((a.out.settings as Record<string, number>).trainFrom).toBe(4);
    const b = await runPlan(['--model', 'public/models/usaf-demo-moe', '--seq', '32', '--gpu-gib', '0.0625', '--frozen-cache-n', '8']);
    expect(b.code).toBe(1);
    expect((b.out.gpu as Record<string, number>).cache).toBe(8 * 32 * 256 * 4);
    expect(b.out.suggestion).toMatchObject({ seq: 32 });
    expect((b.out.suggestion as Record<string, number>).trainFrom).toBeGreaterThan(4);
  });

  it('--train-shared (or TRAIN_SHARED=1) adds the shared experts\' training buffers on DeepSeek-V3 and Qwen2-MoE, nothing on Qwen3-MoE', async () => {
    for (const [fam, grows] of [['deepseek_v3', true], ['qwen2_moe', true], ['qwen3_moe', false]] as const) {
      const args = ['--model', `test/fixtures/${fam}`, '--train-from', '1', '--seq', '12', '--gpu-gib', '1'];
      const off = await runPlan(args);
      const on = await runPlan([...args, '--train-shared']);
      expect((on.out.settings as Record<string, unknown>).trainShared).toBe(true);
      expect((off.out.settings as Record<string, unknown>).trainShared).toBe(false);
      const total = (r: typeof on) => (r.out.gpu as Record<string, number>).total;
      if (grows) expect(total(on)).toBeGreaterThan(total(off));
      else expect(total(on)).toBe(total(off));
      expect(on.out.transient as number).toBeGreaterThanOrEqual(off.out.transient as number);
      vi.restoreAllMocks();
    }
  });
});
