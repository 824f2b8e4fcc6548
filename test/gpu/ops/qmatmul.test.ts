// qmatmul: fused 4-bit dequantize-matmul forward and backward_input vs the float64 oracle at awkward sizes
// (M = 13 and 70, N = 40 and 72, K = 128/G 64, 256/G 128, 200/G 64, 24/G 128), expert offsets, accumulate; oracle vs finite differences.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/qmatmul.ts';
import * as ref from '../../../src/engine/ref/qmatmul.ts';
import { quantizeCpu } from '../../../src/engine/quant/hqq.ts';
import { quantLayout, type QmatmulDims } from '../../../src/engine/quant/format.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';

/** HQQ-quantized random weights [E * N, K] (E experts of [N, K]). */
function quantWeights(E: number, N: number, K: number, G: number, seed: number) {
  const L = quantLayout(E * N, K, G);
  const q = new Uint32Array(L.qWords), sz = new Uint32Array(L.groups);
  quantizeCpu(q, sz, randn(E * N * K, seed, 0.05), { rows: E * N, K, G });
  return { q, sz };
}

// [M, N, K, G, experts, expert used]
const CASES: [number, number, number, number, number, number][] = [
  [13, 40, 128, 64, 1, 0],
  [13, 40, 256, 128, 3, 2],
  [70, 72, 200, 64, 2, 1],
  [5, 16, 24, 128, 1, 0],
];

describe('qmatmul', () => {
  it('forward matches the oracle', async () => {
    const gpu = await testGpu();
    for (const [M, N, K, G, E, e] of CASES) {
      const { q, sz } = quantWeights(E, N, K, G, M + N + K);
      const xOffset = 7, yOffset = 3;
      const x = randn(xOffset + M * K, K);
      const d: QmatmulDims = { M, N, K, G, rowOffset: e * N, xOffset, yOffset };
      const y = poisoned(gpu, yOffset + M * N + 2);
      await run(gpu, (enc) => gpuOp.qmatmulForward(enc, y, f32Buffer(gpu, x), u32Buffer(gpu, q), u32Buffer(gpu, sz), d));
      const want = new Float64Array(yOffset + M * N + 2).fill(NaN);
      ref.qmatmulForward(want, x, q, sz, d);
      const got = await readF32(gpu, y);
      const what = `y [${M}, ${N}] K ${K} G ${G} expert ${e}/${E}`;
      expect([...got.subarray(0, yOffset), ...got.subarray(yOffset + M * N)].every(Number.isNaN), `${what}: outside`).toBe(true);
      expectClose(got.subarray(yOffset, yOffset + M * N), want.subarray(yOffset, yOffset + M * N), 1e-5, 1e-4, what);
    }
  });

  it('backward_input matches the oracle (assign and accumulate)', async () => {
    const gpu = await testGpu();
    for (const [M, N, K, G, E, e] of CASES) {
      const { q, sz } = quantWeights(E, N, K, G, M + N + K);
      const xOffset = 5, yOffset = 2;
      const dy = randn(yOffset + M * N, N + 1);
      const d: QmatmulDims = { M, N, K, G, rowOffset: e * N, xOffset, yOffset };
      const what = `dx [${M}, ${K}] N ${N} G ${G} expert ${e}/${E}`;
      const dx = poisoned(gpu, xOffset + M * K + 1);
      const qb = u32Buffer(gpu, q), szb = u32Buffer(gpu, sz), dyb = f32Buffer(gpu, dy);
      await run(gpu, (enc) => gpuOp.qmatmulBackwardInput(enc, dx, dyb, qb, szb, d));
      const want = new Float64Array(xOffset + M * K + 1).fill(NaN);
      ref.qmatmulBackwardInput(want, dy, q, sz, d);
      const got = await readF32(gpu, dx);
      expect([...got.subarray(0, xOffset), ...got.subarray(xOffset + M * K)].every(Number.isNaN), `${what}: outside`).toBe(true);
      expectClose(got.subarray(xOffset, xOffset + M * K), want.subarray(xOffset, xOffset + M * K), 1e-5, 1e-4, what);

      const prior = randn(xOffset + M * K + 1, K + 2);
      const dxAcc = f32Buffer(gpu, prior);
      await run(gpu, (enc) => gpuOp.qmatmulBackwardInput(enc, dxAcc, dyb, qb, szb, { ...d, accumulate: true }));
      const wantAcc = Float64Array.from(prior);
      ref.qmatmulBackwardInput(wantAcc, dy, q, sz, { ...d, accumulate: true });
      expectClose(await readF32(gpu, dxAcc), wantAcc, 1e-5, 1e-4, `${what} accumulate`);
    }
  });

  it('oracle backward agrees with finite differences of the forward', () => {
    const M = 3, N = 5, K = 16, G = 8;
    const { q, sz } = quantWeights(2, N, K, G, 1);
    const d: QmatmulDims = { M, N, K, G, rowOffset: N };
    const x = Float64Array.from(randn(M * K, 2));
    const g = Float64Array.from(randn(M * N, 3));
    const loss = (xx: Float64Array) => {
      const y = new Float64Array(M * N);
      ref.qmatmulForward(y, xx, q, sz, d);
      return y.reduce((a, v, i) => a + v * g[i]!, 0);
    };
    const dx = new Float64Array(M * K);
    ref.qmatmulBackwardInput(dx, g, q, sz, d);
    for (const i of [0, 7, 20, 33, 47]) expectClose([dx[i]!], [finiteDiff(loss, x, i)], 1e-6, 1e-5, `dx[${i}]`);
  });
});
