// Trained 4-bit layers run their expert GEMMs on the 4-bit W0 with the trained entries' Δ folded in (ops/experts_q4.ts) instead of
// materializing f32 weights: after steps through a reselection (masters and a non-empty overlay differ from W0), one
// training pass (loss, the selected entries' gradients, the routers' gradients) and an evaluation through the fused
// path (the default) must match the same pass of a run on the materialized path (fusedExperts false: each layer's
// weights materialized in an f32 scratch held for the run) resumed from the fused run's snapshot. The fused run holds no
// f32 expert scratch: its selections made one and freed it.
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import { allocatedBytes, readF32 } from '../../src/engine/gpu/buffers.ts';
import { Encoder } from '../../src/engine/gpu/encoder.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import { importanceBatches } from '../../src/engine/train/run.ts';
import { randomSamples } from '../helpers/samples.ts';
import { expectClose } from '../helpers/compare.ts';

describe('4-bit experts: fused GEMMs with the trained entries folded in equal the materialized weights', () => {
  it('qwen3_moe fixture, after a reselection: loss, entry and router gradients, evaluation', async () => {
    const gpu = await nodeGpu();
    const s: TrainSettings = { frac: 0.05, steps: 4, microbatch: 2, accum: 1, seq: 12, lrPeak: 2e-2, wd: 0.005, trainFrom: 2, reselectEvery: 3, evalEvery: 0, nImportance: 2, frozenCacheN: 100, seed: 7, evalWindows: null };
    const m = await openModel(gpu, 'test/fixtures/qwen3_moe', { trainFrom: s.trainFrom, quantizeExperts: { groupSize: 32 } });
    const data = randomSamples(8, s.seq, 512, 3);
    const t = new Trainer(gpu, m.spec, m.weights, s, data);
    expect(t.fused).toBe(true);
    expect(t.scratch).toBeNull();
    const held = allocatedBytes(gpu).workspace ?? 0;
    await t.init(importanceBatches(s.seed, s.nImportance, s.microbatch, data.count));
    for (let i = 0; i < s.steps; i++) await t.trainStep();
    for (const l of t.layers) expect(l.G.overlay!.n, `L${l.layer} overlay`).toBeGreaterThan(0);
    // the selections' f32 scratch and dense gradient are freed: the run's workspace is as it was after construction
    expect(allocatedBytes(gpu).workspace ?? 0).toBe(held);

    const pass = async (t: Trainer) => {
      const { ids, targets } = t.batch([0, 5]);
      const enc = new Encoder(gpu, 'test.clear');
      for (const l of t.layers) for (const b of [l.G.grad, l.D.grad, l.dRouter]) enc.clear(b);
      enc.submit();
      const r = await t.graph.pass(ids, s.microbatch, s.seq, {
        targets, cache: { cache: t.cache, samples: [0, 5] }, dRouters: t.routers(true),
        modes: t.modes((l) => ({ kind: 'sparse', idxG: l.G.idx, nG: l.G.k, gradG: l.G.grad, idxD: l.D.idx, nD: l.D.k, gradD: l.D.grad })),
      });
      const grads: Float32Array[] = [];
      for (const l of t.layers) grads.push(await readF32(gpu, l.G.grad, 0, l.G.k), await readF32(gpu, l.D.grad, 0, l.D.k), await readF32(gpu, l.dRouter));
      return { loss: r.loss, grads, evalLoss: (await t.evaluate(data, 4)).loss };
    };
    const fused = await pass(t);
    const ckpt = await t.snapshot({}, []);
    const m2 = await openModel(gpu, 'test/fixtures/qwen3_moe', { trainFrom: s.trainFrom, quantizeExperts: { groupSize: 32 } });
    const t2 = new Trainer(gpu, m2.spec, m2.weights, { ...s, fusedExperts: false }, data);
    expect(t2.fused).toBe(false);
    expect(t2.layers.every((l) => !m2.weights.layers[l.layer]!.expertChunks!.fused)).toBe(true);
    await t2.restore(ckpt);
    const materialized = await pass(t2);

    expect(fused.loss).toBeCloseTo(materialized.loss, 5);
    expect(fused.evalLoss).toBeCloseTo(materialized.evalLoss, 5);
    fused.grads.forEach((g, i) => {
      const want = materialized.grads[i]!;
      const scale = Math.max(...want.map(Math.abs));
      expect(scale).toBeGreaterThan(0);
      expectClose(g, want, 1e-4 * scale, 1e-3, `grad ${i}`);
    });
    await m.ckpt.close();
    await m2.ckpt.close();
  });
});
