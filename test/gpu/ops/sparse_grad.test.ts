// sparse_grad: GPU sparse expert weight grads vs the float64 oracle (assign and accumulate), and the oracle equals the
// dense expert weight gradient (ref/experts) at the active indices, in both index spaces (G = [gate; up], D = down).
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/sparse_grad.ts';
import * as ref from '../../../src/engine/ref/sparse_grad.ts';
import * as expertsRef from '../../../src/engine/ref/experts.ts';
import { rng, randn } from '../../helpers/random.ts';
import { expectClose } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { cpuRoute, randomRouting } from '../../helpers/experts-data.ts';

/** ~frac of [0, size) sorted, always with the first and last index, a run of neighbours and `extra`. */
function activeSet(size: number, frac: number, seed: number, extra: number[] = []): Uint32Array {
  const r = rng(seed);
  const s = new Set<number>([0, size - 1, 100, 101, 102, 103, ...extra]);
  while (s.size < Math.max(8, Math.floor(size * frac))) s.add(Math.floor(r() * size));
  return Uint32Array.from([...s].sort((a, b) => a - b));
}

describe('sparse_grad', () => {
  const d = { T: 13, H: 80, E: 6, K: 3, IE: 24 };
  const R = d.T * d.K, nW = d.E * d.IE * d.H;
  const topIdx = randomRouting(d.T, d.K, d.E, 31, 4);
  const rt = cpuRoute(topIdx, { ...d, tileM: 32 });
  const x = randn(d.T * d.H, 32), dG = randn(R * d.IE, 33), dU = randn(R * d.IE, 34), dY = randn(R * d.H, 35), A = randn(R * d.IE, 36);
  // G includes both sides of the gate|up boundary
  const idxG = activeSet(2 * nW, 0.02, 37, [nW - 1, nW]), idxD = activeSet(nW, 0.02, 38);

  it('oracle equals the dense gradient at the active indices', () => {
    const s = { G: new Float64Array(0), U: new Float64Array(0), A: Float64Array.from(A), Y: new Float64Array(0) };
    const g = { dY: Float64Array.from(dY), dG: Float64Array.from(dG), dU: Float64Array.from(dU), dXr: new Float64Array(0) };
    const dense = { gate: new Float64Array(nW), up: new Float64Array(nW), down: new Float64Array(nW) };
    expertsRef.expertsBackwardWeights(dense, x, s, g, rt, { ...d, wDtype: 'f32' });
    const gradG = new Float64Array(idxG.length), gradD = new Float64Array(idxD.length);
    ref.sparseGradGateUp(gradG, idxG, dG, dU, x, rt, idxG.length, d);
    ref.sparseGradDown(gradD, idxD, dY, A, rt, idxD.length, d);
    const denseG = new Float64Array(2 * nW);
    denseG.set(dense.gate, 0);
    denseG.set(dense.up, nW);
    expectClose(gradG, Array.from(idxG, (i) => denseG[i]!), 1e-12, 1e-12, 'G');
    expectClose(gradD, Array.from(idxD, (i) => dense.down[i]!), 1e-12, 1e-12, 'D');
    // the unused expert (4) has zero gradient; some active entries fall in it
    const inUnused = Array.from(idxD.keys()).filter((j) => Math.floor(idxD[j]! / (d.H * d.IE)) === 4);
    expect(inUnused.length).toBeGreaterThan(0);
    for (const j of inUnused) expect(gradD[j]).toBe(0);
  });

  for (const accumulate of [false, true]) {
    it(`GPU matches the oracle (${accumulate ? 'accumulate' : 'assign'})`, async () => {
      const gpu = await testGpu();
      const g0 = randn(idxG.length, 39), d0 = randn(idxD.length, 40);
      const gradG = accumulate ? f32Buffer(gpu, g0) : poisoned(gpu, idxG.length);
      const gradD = accumulate ? f32Buffer(gpu, d0) : poisoned(gpu, idxD.length);
      const route = { offsets: u32Buffer(gpu, rt.offsets), rowPair: u32Buffer(gpu, rt.rowPair) };
      await run(gpu, (enc) => {
        gpuOp.sparseGradGateUp(enc, gradG, u32Buffer(gpu, idxG), f32Buffer(gpu, dG), f32Buffer(gpu, dU), f32Buffer(gpu, x), route, idxG.length, d, accumulate);
        gpuOp.sparseGradDown(enc, gradD, u32Buffer(gpu, idxD), f32Buffer(gpu, dY), f32Buffer(gpu, A), route, idxD.length, d, accumulate);
      });
      const wantG = Float64Array.from(g0), wantD = Float64Array.from(d0);
      ref.sparseGradGateUp(wantG, idxG, dG, dU, x, rt, idxG.length, d, accumulate);
      ref.sparseGradDown(wantD, idxD, dY, A, rt, idxD.length, d, accumulate);
      expectClose(await readF32(gpu, gradG), wantG, 1e-5, 1e-4, 'gradG');
      expectClose(await readF32(gpu, gradD), wantD, 1e-5, 1e-4, 'gradD');
    });
  }
});
