// elementwise: every map, SwiGLU, the sigmoid gate and the reductions vs the float64 oracle (awkward n, poisoned outputs);
// oracle backward vs finite differences; one dispatch large enough to need the 2-D workgroup grid.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/elementwise.ts';
import * as ref from '../../../src/engine/ref/elementwise.ts';
import { createBuffer, readU32 } from '../../../src/engine/gpu/buffers.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { testWeights } from '../../helpers/matmul-weights.ts';

describe('elementwise', () => {
  const rows = 26, cols = 80, n = rows * cols + 3;
  const a = randn(n, 1), b = randn(n, 2);

  it('absAddInPlace accumulates magnitudes', async () => {
    const gpu = await testGpu();
    const acc = f32Buffer(gpu, a);
    await run(gpu, (enc) => {
      gpuOp.absAddInPlace(enc, acc, f32Buffer(gpu, b), n);
      gpuOp.absAddInPlace(enc, acc, f32Buffer(gpu, a), n);
    });
    const want = Float64Array.from(a);
    ref.absAddInPlace(want, b, n);
    ref.absAddInPlace(want, a, n);
    expectClose(await readF32(gpu, acc), want, 1e-6, 1e-6, 'absAddInPlace');
  });

  it('add, addInPlace, scale, scaleInPlace, fill', async () => {
    const gpu = await testGpu();
    const sum = poisoned(gpu, n), acc = f32Buffer(gpu, a), scaled = poisoned(gpu, n), inPlace = f32Buffer(gpu, b);
    const filled = f32Buffer(gpu, a);
    await run(gpu, (enc) => {
      gpuOp.add(enc, sum, f32Buffer(gpu, a), f32Buffer(gpu, b), n);
      gpuOp.addInPlace(enc, acc, f32Buffer(gpu, b), n);
      gpuOp.scale(enc, scaled, f32Buffer(gpu, a), -0.37, n);
      gpuOp.scaleInPlace(enc, inPlace, 3.5, n);
      gpuOp.fill(enc, filled, 2.25, n - 10, 7);
    });
    const want = new Float64Array(n);
    ref.add(want, a, b, n);
    expectClose(await readF32(gpu, sum), want, 1e-6, 1e-6, 'add');
    expectClose(await readF32(gpu, acc), want, 1e-6, 1e-6, 'addInPlace');
    ref.scale(want, a, -0.37, n);
    expectClose(await readF32(gpu, scaled), want, 1e-6, 1e-6, 'scale');
    const sip = Float64Array.from(b);
    ref.scaleInPlace(sip, 3.5, n);
    expectClose(await readF32(gpu, inPlace), sip, 1e-6, 1e-6, 'scaleInPlace');
    const fl = Float64Array.from(a);
    ref.fill(fl, 2.25, n - 10, 7);
    expectClose(await readF32(gpu, filled), fl, 0, 0, 'fill (untouched around the range)');
  });

  it('convertBf16ToF32 at odd offsets is exact', async () => {
    const gpu = await testGpu();
    const w = testWeights(n + 5, 3);
    const out = poisoned(gpu, n + 2);
    await run(gpu, (enc) => gpuOp.convertBf16ToF32(enc, out, u32Buffer(gpu, w.packed), n, 3, 2));
    const want = new Float64Array(n + 2).fill(NaN);
    ref.convertBf16ToF32(want, w.packed, n, 3, 2);
    const got = await readF32(gpu, out);
    expect(Number.isNaN(got[0]!) && Number.isNaN(got[1]!), 'elements before outOffset untouched').toBe(true);
    expectClose(got.subarray(2), want.subarray(2), 0, 0, 'bf16 -> f32');
    expectClose(want.subarray(2), w.values.subarray(3, 3 + n), 0, 0, 'oracle vs dtype.ts');
  });

  it('clamp and its backward (boundaries pass the gradient)', async () => {
    const gpu = await testGpu();
    const lo = -0.75, hi = 1.5;
    const x = randn(n, 4);
    x[0] = lo, x[1] = hi, x[2] = Math.fround(lo - 1e-6), x[3] = Math.fround(hi + 1e-6);
    const y = poisoned(gpu, n), dx = poisoned(gpu, n);
    await run(gpu, (enc) => {
      gpuOp.clamp(enc, y, f32Buffer(gpu, x), lo, hi, n);
      gpuOp.clampBackward(enc, dx, f32Buffer(gpu, b), f32Buffer(gpu, x), lo, hi, n);
    });
    const yr = new Float64Array(n), dxr = new Float64Array(n);
    ref.clamp(yr, x, lo, hi, n);
    ref.clampBackward(dxr, b, x, lo, hi, n);
    expect([dxr[0], dxr[1], dxr[2], dxr[3]]).toEqual([b[0], b[1], 0, 0]);
    expectClose(await readF32(gpu, y), yr, 0, 0, 'clamp');
    expectClose(await readF32(gpu, dx), dxr, 0, 0, 'clamp backward');
  });

  it('siluMul forward/backward, stable at |g| = 100', async () => {
    const gpu = await testGpu();
    const g = randn(n, 5, 2);
    g[0] = 100, g[1] = -100, g[2] = 0;
    const dh = randn(n, 6);
    const h = poisoned(gpu, n), dg = poisoned(gpu, n), du = poisoned(gpu, n);
    const G = f32Buffer(gpu, g), U = f32Buffer(gpu, b);
    await run(gpu, (enc) => {
      gpuOp.siluMul(enc, h, G, U, n);
      gpuOp.siluMulBackward(enc, dg, du, f32Buffer(gpu, dh), G, U, n);
    });
    const hr = new Float64Array(n), dgr = new Float64Array(n), dur = new Float64Array(n);
    ref.siluMul(hr, g, b, n);
    ref.siluMulBackward(dgr, dur, dh, g, b, n);
    expectClose(await readF32(gpu, h), hr, 1e-6, 1e-5, 'h');
    expectClose(await readF32(gpu, dg), dgr, 1e-6, 1e-5, 'dg');
    expectClose(await readF32(gpu, du), dur, 1e-6, 1e-5, 'du');
  });

  it('sigmoidGate forward/backward', async () => {
    const gpu = await testGpu();
    const s = randn(rows, 7, 3);
    s[0] = 60, s[1] = -60;
    const y = randn(rows * cols, 8), dout = randn(rows * cols, 9);
    const out = poisoned(gpu, rows * cols), ds = poisoned(gpu, rows), dy = poisoned(gpu, rows * cols);
    const S = f32Buffer(gpu, s), Y = f32Buffer(gpu, y);
    await run(gpu, (enc) => {
      gpuOp.sigmoidGate(enc, out, S, Y, rows, cols);
      gpuOp.sigmoidGateBackward(enc, ds, dy, f32Buffer(gpu, dout), S, Y, rows, cols);
    });
    const outr = new Float64Array(rows * cols), dsr = new Float64Array(rows), dyr = new Float64Array(rows * cols);
    ref.sigmoidGate(outr, s, y, rows, cols);
    ref.sigmoidGateBackward(dsr, dyr, dout, s, y, rows, cols);
    expectClose(await readF32(gpu, out), outr, 1e-6, 1e-5, 'out');
    expectClose(await readF32(gpu, ds), dsr, 1e-5, 1e-5, 'ds');
    expectClose(await readF32(gpu, dy), dyr, 1e-6, 1e-5, 'dy');
  });

  it('sumSquares (=, +=) and nonFiniteCount (=, +=)', async () => {
    const gpu = await testGpu();
    const big = 100_003;
    const x = randn(big, 10);
    const bad = Float32Array.from(x);
    bad[0] = NaN, bad[5000] = Infinity, bad[big - 1] = -Infinity, bad[77777] = NaN;
    const ss = poisoned(gpu, 2), work = createBuffer(gpu, { label: 'work', size: gpuOp.SUM_SQUARES_WORK * 4 });
    const small = f32Buffer(gpu, [5]);
    const cnt = u32Buffer(gpu, [12345]), cntAcc = u32Buffer(gpu, [10]);
    await run(gpu, (enc) => {
      gpuOp.sumSquares(enc, ss, f32Buffer(gpu, x), big, work);
      gpuOp.sumSquares(enc, small, f32Buffer(gpu, a), 7, work, true);
      gpuOp.nonFiniteCount(enc, cnt, f32Buffer(gpu, bad), big);
      gpuOp.nonFiniteCount(enc, cntAcc, f32Buffer(gpu, bad), big, true);
      gpuOp.nonFiniteCount(enc, cntAcc, f32Buffer(gpu, x), big, true);
    });
    const want = new Float64Array(1);
    ref.sumSquares(want, x, big);
    expectClose((await readF32(gpu, ss)).subarray(0, 1), want, 0, 1e-5, 'sum of squares');
    want[0] = 5;
    ref.sumSquares(want, a, 7, true);
    expectClose(await readF32(gpu, small), want, 1e-5, 1e-6, 'sum of squares (accumulated)');
    const c = new Uint32Array(1);
    ref.nonFiniteCount(c, bad, big);
    expect(c[0]).toBe(4);
    expect((await readU32(gpu, cnt))[0]).toBe(4);
    expect((await readU32(gpu, cntAcc))[0]).toBe(14);
  });

  it('fill beyond 65535 workgroups uses the 2-D grid', async () => {
    const gpu = await testGpu();
    const big = 65_535 * 256 + 517;
    expect(gpuOp.flatGrid(Math.ceil(big / 256))[1]).toBe(2);
    const buf = createBuffer(gpu, { label: 'big', size: (big + 1) * 4 });
    await run(gpu, (enc) => {
      gpuOp.fill(enc, buf, -1, big + 1);
      gpuOp.fill(enc, buf, 0.5, big);
    });
    const got = await readF32(gpu, buf);
    let wrong = 0;
    for (let i = 0; i < big; i++) if (got[i] !== 0.5) wrong++;
    expect(wrong).toBe(0);
    expect(got[big]).toBe(-1);
  });

  it('oracle backward agrees with finite differences', () => {
    const m = 6, r = 3, c = 4;
    const g = Float64Array.from(randn(m, 11, 2)), u = Float64Array.from(randn(m, 12)), dh = Float64Array.from(randn(m, 13));
    const silu = (gg: Float64Array, uu: Float64Array) => {
      const h = new Float64Array(m);
      ref.siluMul(h, gg, uu, m);
      return h.reduce((acc, v, i) => acc + v * dh[i]!, 0);
    };
    const dg = new Float64Array(m), du = new Float64Array(m);
    ref.siluMulBackward(dg, du, dh, g, u, m);
    for (let i = 0; i < m; i++) {
      expectClose([dg[i]!], [finiteDiff((v) => silu(v, u), g, i)], 1e-6, 1e-5, `dg[${i}]`);
      expectClose([du[i]!], [finiteDiff((v) => silu(g, v), u, i)], 1e-6, 1e-5, `du[${i}]`);
    }
    const s = Float64Array.from(randn(r, 14, 2)), y = Float64Array.from(randn(r * c, 15)), dout = Float64Array.from(randn(r * c, 16));
    const gate = (ss: Float64Array, yy: Float64Array) => {
      const o = new Float64Array(r * c);
      ref.sigmoidGate(o, ss, yy, r, c);
      return o.reduce((acc, v, i) => acc + v * dout[i]!, 0);
    };
    const ds = new Float64Array(r), dy = new Float64Array(r * c);
    ref.sigmoidGateBackward(ds, dy, dout, s, y, r, c);
    for (let i = 0; i < r; i++) expectClose([ds[i]!], [finiteDiff((v) => gate(v, y), s, i)], 1e-6, 1e-5, `ds[${i}]`);
    for (let i = 0; i < r * c; i += 5) expectClose([dy[i]!], [finiteDiff((v) => gate(s, v), y, i)], 1e-6, 1e-5, `dy[${i}]`);
    const x = Float64Array.from([-2, -0.5, 0.3, 1.2, 3]), dyc = Float64Array.from([1, 2, 3, 4, 5]);
    const clampLoss = (xx: Float64Array) => {
      const o = new Float64Array(5);
      ref.clamp(o, xx, -1, 1, 5);
      return o.reduce((acc, v, i) => acc + v * dyc[i]!, 0);
    };
    const dxc = new Float64Array(5);
    ref.clampBackward(dxc, dyc, x, -1, 1, 5);
    for (let i = 0; i < 5; i++) expectClose([dxc[i]!], [finiteDiff(clampLoss, x, i)], 1e-6, 1e-6, `clamp dx[${i}]`);
  });
});
