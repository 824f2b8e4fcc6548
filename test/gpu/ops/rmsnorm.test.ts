// rmsnorm: GPU forward/backward vs the float64 oracle at awkward sizes; oracle backward vs finite differences.
import { describe, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/rmsnorm.ts';
import * as ref from '../../../src/engine/ref/rmsnorm.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu } from '../../helpers/gpu.ts';

describe('rmsnorm', () => {
  const rows = 13, dim = 80, eps = 1e-6;
  const x = randn(rows * dim, 1);
  const w = randn(dim, 2, 0.5).map((v) => 1 + v);
  const dy = randn(rows * dim, 3);

  it('forward matches the oracle', async () => {
    const gpu = await testGpu();
    const y = poisoned(gpu, rows * dim), rstd = poisoned(gpu, rows);
    await run(gpu, (enc) => gpuOp.rmsnormForward(enc, y, rstd, f32Buffer(gpu, x), f32Buffer(gpu, w), rows, dim, eps));
    const yr = new Float64Array(rows * dim), rr = new Float64Array(rows);
    ref.rmsnormForward(yr, rr, x, w, rows, dim, eps);
    expectClose(await readF32(gpu, y), yr, 1e-5, 1e-5, 'y');
    expectClose(await readF32(gpu, rstd), rr, 1e-5, 1e-5, 'rstd');
  });

  it('backward matches the oracle', async () => {
    const gpu = await testGpu();
    const yr = new Float64Array(rows * dim), rr = new Float64Array(rows);
    ref.rmsnormForward(yr, rr, x, w, rows, dim, eps);
    const dx = poisoned(gpu, rows * dim), dw = poisoned(gpu, dim);
    await run(gpu, (enc) =>
      gpuOp.rmsnormBackward(enc, dx, dw, f32Buffer(gpu, dy), f32Buffer(gpu, x), f32Buffer(gpu, w), f32Buffer(gpu, rr), rows, dim, false),
    );
    const dxr = new Float64Array(rows * dim), dwr = new Float64Array(dim);
    ref.rmsnormBackward(dxr, dwr, dy, x, w, rr, rows, dim);
    expectClose(await readF32(gpu, dx), dxr, 1e-5, 1e-4, 'dx');
    expectClose(await readF32(gpu, dw), dwr, 1e-4, 1e-4, 'dw');
  });

  it('oracle backward agrees with finite differences', () => {
    const r = 3, d = 7;
    const x64 = Float64Array.from(randn(r * d, 4));
    const w64 = Float64Array.from(randn(d, 5));
    const g = Float64Array.from(randn(r * d, 6));
    const loss = (xx: Float64Array, ww: Float64Array) => {
      const y = new Float64Array(r * d), s = new Float64Array(r);
      ref.rmsnormForward(y, s, xx, ww, r, d, eps);
      return y.reduce((a, v, i) => a + v * g[i]!, 0);
    };
    const y = new Float64Array(r * d), s = new Float64Array(r);
    ref.rmsnormForward(y, s, x64, w64, r, d, eps);
    const dx = new Float64Array(r * d), dw = new Float64Array(d);
    ref.rmsnormBackward(dx, dw, g, x64, w64, s, r, d);
    for (const i of [0, 5, 11, 20]) expectClose([dx[i]!], [finiteDiff((xx) => loss(xx, w64), x64, i)], 1e-6, 1e-5, `dx[${i}]`);
    for (const i of [0, 3, 6]) expectClose([dw[i]!], [finiteDiff((ww) => loss(x64, ww), w64, i)], 1e-6, 1e-5, `dw[${i}]`);
  });
});
