// The memory planner against reality: on the demo model (trainFrom 4, 2×32), the bytes planMemory predicts per kind and
// in total equal, to the byte, what allocatedBytes counts after openModel + new Trainer (deltas: the device is shared).
// The same with 4-bit experts (every layer quantized; fused: sparse tables, no f32 scratch held; materialized: one
// shared f32 scratch), also in chunks of experts. The five family fixtures (MLA, shared experts, dense layers, clip_qkv, biases) are held to the same,
// DeepSeek-V3 and Qwen2-MoE also with their shared experts trained (trainShared).
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import { allocatedBytes, BufferPool, hostVisibleBytes, peakAllocatedBytes, withPool } from '../../src/engine/gpu/buffers.ts';
import { runTraining } from '../../src/engine/train/run.ts';
import { randomSamples } from '../helpers/samples.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import { planSettings, type TrainSettings } from '../../src/engine/train/settings.ts';
import type { SampleSet } from '../../src/engine/train/types.ts';
import { KINDS, PlanError, planMemory } from '../../src/engine/plan/memory.ts';
import { destroyLayer, layerBuffers, loadEmbed, loadLayer, readEntry } from '../../src/engine/train/weights.ts';

const DEMO = 'public/models/usaf-demo-moe';

function samples(count: number, seq: number): SampleSet {
  return { count, seq, fill(i, ids, targets, off) { for (let j = 0; j < seq; j++) (ids[off + j] = (i * 7 + j) % 64, targets[off + j] = j + 1 < seq ? (i * 7 + j + 1) % 64 : 0xffffffff); } };
}

async function compare(dir: string, trainFrom: number, seq: number, q4: { groupSize: number } | null = null, trainShared = false, perEntryStep = false, streamFrozen = false, expertChunk?: number, fusedExperts?: boolean, hostExperts = false): Promise<void> {
  const gpu = await nodeGpu();
  const s: TrainSettings = { frac: 0.005, steps: 7, microbatch: 2, accum: 1, seq, lrPeak: 1e-3, wd: 0, trainFrom, reselectEvery: 0, evalEvery: 0, nImportance: 1, frozenCacheN: 10, seed: 1, evalWindows: null, trainShared, perEntryStep, expertChunk, fusedExperts };
  const data = samples(10, s.seq);
  const before = allocatedBytes(gpu);
  const hostBefore = hostVisibleBytes(gpu);
  const m = await openModel(gpu, dir, { trainFrom: s.trainFrom, quantizeExperts: q4 ?? undefined, trainShared, streamFrozen, hostExperts });
  const t = new Trainer(gpu, m.spec, m.weights, s, data);
  const after = allocatedBytes(gpu);
  const real = Object.fromEntries(KINDS.map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)])) as Record<string, number>;
  real.total = KINDS.reduce((a, k) => a + real[k]!, 0);
  const p = planMemory(m.spec, t.planned);
  expect(p.settings.quantizeExperts ?? null).toEqual(q4);
  expect(p.settings.trainShared).toBe(trainShared);
  expect(p.settings.perEntryStep).toBe(perEntryStep);
  expect(!!p.settings.streamFrozen).toBe(streamFrozen);
  // hosted experts: the host-visible buffers, to the byte, beside the GPU kinds
  expect(!!p.settings.hostExperts).toBe(hostExperts);
  expect(hostVisibleBytes(gpu) - hostBefore).toBe(p.hostVisible);
  if (hostExperts) expect(p.hostVisible).toBeGreaterThan(0);
  if (streamFrozen) {
    // the layer-major pass's staging: the most loadEmbed or loadLayer holds at once (for a frozen layer sampled at every
    // tensor read: the 4-bit quantizer's staging lives while the experts are read; and after), freed after
    const total = () => KINDS.reduce((a, k) => a + (allocatedBytes(gpu)[k] ?? 0), 0);
    let staged = 0;
    // untied embeddings: the embedding is streamed too (not in the plan's resident items; loaded for the embedding pass)
    expect(m.weights.embed).toBeNull();
    expect(p.items.some((i) => i.label === 'model.embed_tokens.weight')).toBe(false);
    {
      const b = total();
      const e = await loadEmbed(gpu, m.spec, m.ckpt, m.load);
      staged = total() - b;
      e.buf.destroy();
    }
    // (hosted experts: a frozen layer's experts borrow a slot, as the frozen pass lends them through its pool)
    const pool = new BufferPool();
    const slots = m.weights.slots?.buffers() ?? [];
    pool.give(slots);
    for (let L = 0; L < trainFrom; L++) {
      const b = total();
      const lw = await withPool(gpu, pool, () => loadLayer(gpu, m.spec, L, m.ckpt, m.load, (e) => ((staged = Math.max(staged, total() - b)), readEntry(m.ckpt, m.spec, e))));
      staged = Math.max(staged, total() - b);
      if (slots.length) pool.give(layerBuffers(lw));
      else destroyLayer(lw);
    }
    pool.withdraw(slots);
    pool.destroy();
    console.log(`staging: planned ${p.staging}, allocated at most ${staged}`);
    expect(p.staging).toBe(staged);
    const resident = planMemory(m.spec, { ...p.settings, streamFrozen: false });
    console.log(`peak: streamed ${p.peak}, resident ${resident.peak}`);
    expect(p.peak).toBeLessThan(resident.peak);
  }
  if (trainShared) expect(t.shared).not.toBeNull();
  if (q4) {
    // fused (the default): no f32 expert scratch held, sparse tables instead; materialized: the scratch, no tables
    expect(t.fused).toBe(fusedExperts !== false);
    expect(t.scratch === null).toBe(t.fused);
    expect(p.items.some((i) => i.label.startsWith('experts.scratch'))).toBe(!t.fused);
    expect(p.items.some((i) => i.label.endsWith('sparse.table'))).toBe(t.fused);
  }
  if (expertChunk !== undefined && !t.fused) {
    // the scratch holds the largest chunk only: planned to the byte
    expect(t.chunks.length).toBeGreaterThan(1);
    expect(p.settings.expertChunk).toBe(expertChunk);
    const item = (label: string) => p.items.find((i) => i.label === label)!.bytes;
    expect(item('experts.scratch.gate_up')).toBe(t.scratch!.gu.size);
    expect(item('experts.scratch.down')).toBe(t.scratch!.down.size);
    expect(t.scratch!.down.size).toBeLessThan(m.spec.moe.numExperts * m.spec.moe.expertIntermediate * m.spec.hidden * 4);
  }
  const rows = [...KINDS, 'total'].map((k) => ({ kind: k, planned: p.gpu[k as keyof typeof p.gpu], allocated: real[k]! }));
  console.log(`${dir}${q4 ? `, 4-bit experts (G ${q4.groupSize})` : ''}${trainShared ? ', shared experts trained' : ''}${perEntryStep ? ', per-entry Adam steps' : ''}`);
  console.table(rows);
  // the plan mirrors the buffers the engine creates: every kind to the byte
  for (const r of rows) expect(r.planned, `${r.kind}: planned ${r.planned}, allocated ${r.allocated}`).toBe(r.allocated);
  expect(real.total).toBeGreaterThan(0);
  expect(t.layers.length).toBe(m.spec.layers.filter((l) => l.index >= trainFrom && l.mlp === 'moe').length);
}

describe('memory plan vs allocation', () => {
  it('demo model, trainFrom 4, 2×32: planned bytes per kind and in total equal allocatedBytes', () => compare(DEMO, 4, 32), 60_000);
  it('demo model with 4-bit experts, trainFrom 4, 2×32: the same', () => compare(DEMO, 4, 32, { groupSize: 128 }), 120_000);
  it('demo model with 4-bit experts in chunks of 5 (4 chunks of 4 experts), trainFrom 4, 2×32: the same', () => compare(DEMO, 4, 32, { groupSize: 128 }, false, false, false, 5), 120_000);
  it('demo model with 4-bit experts materialized (fusedExperts false), in chunks of 5: the same', () => compare(DEMO, 4, 32, { groupSize: 128 }, false, false, false, 5, false), 120_000);
  it('demo model, trainFrom 4, 2×32, frozen layers streamed: the same, and the staging of one frozen layer', () => compare(DEMO, 4, 32, null, false, false, true), 60_000);
  it('demo model with 4-bit experts, frozen layers streamed: the same', () => compare(DEMO, 4, 32, { groupSize: 128 }, false, false, true), 120_000);
  it('demo model with 4-bit experts hosted (two GPU slots), frozen layers streamed through them: the same, and the host-visible bytes', () => compare(DEMO, 4, 32, { groupSize: 128 }, false, false, true, undefined, undefined, true), 120_000);
  it('the Trainer refuses settings whose plan exceeds gpuBytes, proposing ones that fit; chunks its experts when that fits', async () => {
    const gpu = await nodeGpu();
    const m = await openModel(gpu, 'test/fixtures/qwen3_moe', { trainFrom: 1, quantizeExperts: { groupSize: 32 } });
    const s: TrainSettings = { frac: 0.005, steps: 1, microbatch: 2, accum: 1, seq: 12, lrPeak: 1e-3, wd: 0, trainFrom: 1, reselectEvery: 0, evalEvery: 0, nImportance: 1, frozenCacheN: 10, seed: 1, evalWindows: null };
    const data = samples(10, s.seq);
    const need = planMemory(m.spec, planSettings(s, data.count, m.weights)).peak;
    // (in chunks of one expert, the least a 4-bit run can take: the Trainer would choose chunks before refusing)
    const fits = planMemory(m.spec, { ...planSettings({ ...s, trainFrom: 3, frozenCacheN: 0 }, data.count, m.weights), expertChunk: 1 }).peak;
    expect(planMemory(m.spec, { ...planSettings(s, data.count, m.weights), expertChunk: 1 }).fits(fits)).toBe(false);
    expect(() => new Trainer(gpu, m.spec, m.weights, { ...s, gpuBytes: fits }, data)).toThrow(PlanError);
    let err: PlanError | null = null;
    try {
      new Trainer(gpu, m.spec, m.weights, { ...s, gpuBytes: fits }, data);
    } catch (e) {
      err = e as PlanError;
    }
    expect(err!.message).toMatch(/needs [\d.]+ MiB of GPU memory .*Settings that fit: train-from \d, microbatch \d.*in chunks of 1\)/);
    expect(planMemory(m.spec, err!.suggestion!).fits(fits)).toBe(true);
    expect(new Trainer(gpu, m.spec, m.weights, { ...s, gpuBytes: need }, data).layers.length).toBe(3);
    // a budget just under one chunk's plan: the Trainer materializes the experts in chunks instead of refusing
    const m2 = await openModel(gpu, 'test/fixtures/qwen3_moe', { trainFrom: 1, quantizeExperts: { groupSize: 32 } }); // (a Trainer takes over its weights)
    const t = new Trainer(gpu, m2.spec, m2.weights, { ...s, gpuBytes: need - 1 }, data);
    expect(t.chunks.length).toBeGreaterThan(1);
    expect(t.planned.expertChunk).toBe(t.chunks[0]![1]);
    expect(planMemory(m.spec, t.planned).fits(need - 1)).toBe(true);
    await m.ckpt.close();
    await m2.ckpt.close();
  });
  for (const fam of ['qwen3_moe', 'mixtral', 'olmoe', 'qwen2_moe', 'deepseek_v3']) {
    it(`${fam} fixture, trainFrom 1, 2×12: the same`, () => compare(`test/fixtures/${fam}`, 1, 12), 60_000);
  }
  for (const fam of ['deepseek_v3', 'qwen2_moe']) {
    it(`${fam} fixture with trainShared, trainFrom 1, 2×12: the same (f32 shared weights, their copies, gradients, selections)`, () => compare(`test/fixtures/${fam}`, 1, 12, null, true), 60_000);
  }
  it('deepseek_v3 fixture with trainShared and perEntryStep (step counts, bias table): the same', () => compare('test/fixtures/deepseek_v3', 1, 12, null, true, true), 60_000);

  // The plan's peak against a whole run on a fresh device (load, frozen pass, importance, steps, a reselection, the
  // evaluations): the most bytes held at once never exceeds it, and is at least what the run holds between steps.
  for (const [stream, hostExperts] of [[false, false], [true, false], [true, true]]) {
    it(`qwen3_moe fixture, 4-bit experts${stream ? ', frozen layers streamed' : ''}${hostExperts ? ', hosted' : ''}: a run's peak allocation within the plan's peak`, async () => {
      const gpu = await nodeGpu({ fresh: true });
      const s: TrainSettings = { frac: 0.005, steps: 3, microbatch: 2, accum: 1, seq: 12, lrPeak: 1e-3, wd: 0, trainFrom: 1, reselectEvery: 2, evalEvery: 0, nImportance: 2, frozenCacheN: 6, seed: 1, evalWindows: null };
      const data = randomSamples(6, s.seq, 512, 3);
      const heldout = randomSamples(3, s.seq, 512, 4);
      const m = await openModel(gpu, 'test/fixtures/qwen3_moe', { trainFrom: s.trainFrom, quantizeExperts: { groupSize: 32 }, streamFrozen: stream, hostExperts });
      const t = new Trainer(gpu, m.spec, m.weights, s, data);
      const p = planMemory(m.spec, t.planned);
      await runTraining(t, { inDomain: data, heldout, sink: null, checkpointEvery: 0, settings: s as unknown as Record<string, unknown>, frozenSource: stream ? { ckpt: m.ckpt, load: m.load } : undefined });
      const peak = peakAllocatedBytes(gpu);
      console.log(`plan: held ${p.gpu.total}, peak ${p.peak} (transient ${p.transient}, staging ${p.staging}); allocated at most ${peak}`);
      expect(t.turnovers.length).toBe(1);
      expect(peak).toBeLessThanOrEqual(p.peak);
      expect(peak).toBeGreaterThanOrEqual(p.gpu.total);
      await m.ckpt.close();
      gpu.device.destroy();
    }, 180_000);
  }
});

