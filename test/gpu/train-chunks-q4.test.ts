// 4-bit training with the trained layers' weights materialized in chunks of experts (expertChunk) against one chunk of
// all experts (the unchunked reference): forward loss, every step's loss through a reselection, the selections (dense
// gradients per chunk, exact top-k over chunks), masters, overlays, last gradients, routers and the exported weights must
// be bit-identical, and so must the checkpoint's touched values and the weights of a run restored from it.
// qwen3_moe fixture (also with accumulatedReselect), qwen2_moe with its shared experts trained, and the demo model; the
// fixtures also with one importance microbatch (every chunk of every trained layer ranked from one pass).
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { readF32 } from '../../src/engine/gpu/buffers.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { SampleSet } from '../../src/engine/train/types.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import { importanceBatches } from '../../src/engine/train/run.ts';
import { randomSamples } from '../helpers/samples.ts';

/** Everything a short run leaves, read back as bytes. */
async function runOnce(gpu: GpuContext, dir: string, s: TrainSettings, data: SampleSet, groupSize: number, restore: boolean) {
  const m = await openModel(gpu, dir, { trainFrom: s.trainFrom, quantizeExperts: { groupSize }, trainShared: !!s.trainShared });
  const t = new Trainer(gpu, m.spec, m.weights, s, data);
  const evalBefore = (await t.evaluate(data, null)).loss;
  await t.init(importanceBatches(s.seed, s.nImportance, s.microbatch, data.count));
  const losses: number[] = [];
  for (let i = 0; i < s.steps; i++) losses.push((await t.trainStep()).record.loss);
  const evalAfter = (await t.evaluate(data, null)).loss;
  const state: Record<string, number[]> = {};
  const f32 = async (b: GPUBuffer, n?: number) => Array.from(new Uint32Array((await readF32(gpu, b, 0, n)).buffer));
  for (const l of t.layers) {
    for (const [name, sel] of [['G', l.G], ['D', l.D]] as const) {
      const p = `L${l.layer}.${name}`;
      state[`${p}.idx`] = Array.from(sel.host);
      state[`${p}.touched`] = Array.from(sel.touched);
      state[`${p}.master`] = await f32(sel.master, sel.k);
      state[`${p}.m`] = await f32(sel.m, sel.k);
      state[`${p}.grad`] = await f32(sel.grad, sel.k);
      state[`${p}.overlay`] = await f32(sel.overlay!.val, sel.overlay!.n);
    }
    state[`L${l.layer}.router`] = await f32(l.router);
  }
  if (s.trainShared) expect(t.shared).not.toBeNull();
  const changed = new Map([...(await t.changedTensors())].map(([k, v]) => [k, Array.from(new Uint32Array(v.buffer))]));
  // the checkpoint (every touched entry's value, gathered chunk by chunk), and a run restored from it in the same chunks
  const snap = await t.snapshot({}, []);
  const saved = [...snap.layers.map((l) => Array.from(new Uint32Array(l.touchedValG.buffer)).concat(Array.from(new Uint32Array(l.touchedValD.buffer))))];
  let restored = changed;
  if (restore) {
    const m2 = await openModel(gpu, dir, { trainFrom: s.trainFrom, quantizeExperts: { groupSize }, trainShared: !!s.trainShared });
    const t2 = new Trainer(gpu, m2.spec, m2.weights, s, data);
    await t2.restore(snap);
    restored = new Map([...(await t2.changedTensors())].map(([k, v]) => [k, Array.from(new Uint32Array(v.buffer))]));
    await m2.ckpt.close();
  }
  await m.ckpt.close();
  return { chunks: t.chunks, dense: t.importance.chunked, scratch: t.chunks[0]![1] - t.chunks[0]![0], /* experts of the f32 scratch (fused: made for a selection or an export only) */ evalBefore, evalAfter, losses, turnovers: t.turnovers, state, changed, saved, restored };
}

const cases: { name: string; dir: string; chunk: number; want: number; V: number; groupSize: number; trainFrom: number; steps: number; accumulatedReselect?: boolean; trainShared?: boolean; nImportance?: number }[] = [
  { name: 'qwen3_moe fixture (8 experts in chunks of 3, 3, 2)', dir: 'test/fixtures/qwen3_moe', chunk: 3, want: 3, V: 512, groupSize: 32, trainFrom: 2, steps: 5 },
  { name: 'qwen3_moe fixture with accumulatedReselect (importance at the reselection too)', dir: 'test/fixtures/qwen3_moe', chunk: 3, want: 3, V: 512, groupSize: 32, trainFrom: 2, steps: 5, accumulatedReselect: true },
  { name: 'qwen2_moe fixture with its shared experts trained (their importance from the first chunk\'s passes)', dir: 'test/fixtures/qwen2_moe', chunk: 3, want: 3, V: 512, groupSize: 32, trainFrom: 2, steps: 5, trainShared: true },
  { name: 'qwen3_moe fixture, one importance microbatch (one pass ranks every chunk of both trained layers)', dir: 'test/fixtures/qwen3_moe', chunk: 3, want: 3, V: 512, groupSize: 32, trainFrom: 2, steps: 4, nImportance: 1 },
  { name: 'qwen2_moe fixture, one importance microbatch, shared experts trained', dir: 'test/fixtures/qwen2_moe', chunk: 3, want: 3, V: 512, groupSize: 32, trainFrom: 2, steps: 4, trainShared: true, nImportance: 1 },
  { name: 'demo model (16 experts in chunks of 6, 5, 5)', dir: 'public/models/usaf-demo-moe', chunk: 6, want: 3, V: 4096, groupSize: 128, trainFrom: 6, steps: 4 },
];

describe('4-bit training in expert chunks equals one chunk bit for bit', () => {
  it('refuses expertChunk on unquantized experts, and a chunk that is not a positive integer', async () => {
    const gpu = await nodeGpu();
    const data = randomSamples(2, 12, 512, 1);
    const s: TrainSettings = { frac: 0.01, steps: 1, microbatch: 2, accum: 1, seq: 12, lrPeak: 1e-3, wd: 0, trainFrom: 2, reselectEvery: 0, evalEvery: 0, nImportance: 1, frozenCacheN: 0, seed: 1, evalWindows: null };
    const f32 = await openModel(gpu, 'test/fixtures/qwen3_moe', { trainFrom: 2 });
    expect(() => new Trainer(gpu, f32.spec, f32.weights, { ...s, expertChunk: 3 }, data)).toThrow(/4-bit experts/);
    const q4 = await openModel(gpu, 'test/fixtures/qwen3_moe', { trainFrom: 2, quantizeExperts: { groupSize: 32 } });
    expect(() => new Trainer(gpu, q4.spec, q4.weights, { ...s, expertChunk: 0 }, data)).toThrow(/positive integer/);
    await f32.ckpt.close();
    await q4.ckpt.close();
  });

  for (const c of cases) {
    it(c.name, async () => {
      const gpu = await nodeGpu();
      const data = randomSamples(6, 12, c.V, 11);
      const s: TrainSettings = {
        frac: 0.01, steps: c.steps, microbatch: 2, accum: 1, seq: 12, lrPeak: 5e-3, wd: 0.005, trainFrom: c.trainFrom, reselectEvery: 3,
        evalEvery: 0, nImportance: c.nImportance ?? 2, frozenCacheN: 100, seed: 5, evalWindows: null, accumulatedReselect: !!c.accumulatedReselect, trainShared: !!c.trainShared,
      };
      const one = await runOnce(gpu, c.dir, s, data, c.groupSize, false);
      const many = await runOnce(gpu, c.dir, { ...s, expertChunk: c.chunk }, data, c.groupSize, !c.dir.includes('demo')); // (the demo: too slow here)
      expect(one.chunks.length).toBe(1);
      expect(many.chunks.length).toBe(c.want);
      expect([one.dense, many.dense]).toEqual([false, true]); // dense gradients (importance, reselection) in chunks too
      expect(many.scratch).toBeLessThan(one.scratch);
      expect(one.turnovers.length).toBe(1); // a reselection happened
      expect(one.losses.every(Number.isFinite)).toBe(true);
      expect(one.evalAfter).not.toBe(one.evalBefore);
      expect(many.evalBefore).toBe(one.evalBefore);
      expect(many.losses).toEqual(one.losses);
      expect(many.evalAfter).toBe(one.evalAfter);
      expect(many.turnovers).toEqual(one.turnovers);
      for (const [k, v] of Object.entries(one.state)) expect(many.state[k], k).toEqual(v);
      expect([...many.changed.keys()]).toEqual([...one.changed.keys()]);
      for (const [k, v] of one.changed) expect(many.changed.get(k), k).toEqual(v);
      expect(many.saved).toEqual(one.saved);
      for (const [k, v] of one.changed) expect(many.restored.get(k), `restored ${k}`).toEqual(v);
    });
  }
});
