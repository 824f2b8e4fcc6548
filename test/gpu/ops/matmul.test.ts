// matmul: GPU forward/backward (f32 and bf16 W, offsets, bias, accumulate, ragged tiles) vs the float64 oracle; oracle vs finite differences.
import { describe, expect, it, it as vitestIt } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/matmul.ts';
import * as ref from '../../../src/engine/ref/matmul.ts';
import type { GpuContext } from '../../../src/engine/gpu/device.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { testWeights } from '../../helpers/matmul-weights.ts';
import { withForced } from '../../helpers/forced.ts';

const ATOL = 1e-4, RTOL = 1e-5;

/** W in a buffer with `off` leading elements, as f32 or packed bf16 (values identical: bf16-exact). */
function weightBuffer(gpu: GpuContext, n: number, off: number, dtype: gpuOp.WDtype, seed: number) {
  const t = testWeights(off + n, seed, 0.5);
  return { values: t.values, buf: dtype === 'bf16' ? u32Buffer(gpu, t.packed, 'w') : f32Buffer(gpu, t.values, 'w') };
}

// Shapes: a small linear (2 x 13 tokens, hidden 80 -> 72: the thin 32-row tile), ones spanning several ragged 64 x 64
// tiles, and 13 rows (the thin 16-row tile).
// x/dx and y/dy may sit at element offsets (xo, yo) inside bigger buffers.
const cases = [
  { M: 26, N: 72, K: 80, wOffset: 0, dtype: 'f32' as const, xo: 0, yo: 0 },
  { M: 26, N: 72, K: 80, wOffset: 0, dtype: 'bf16' as const, xo: 0, yo: 0 },
  { M: 70, N: 130, K: 37, wOffset: 3 * 37 + 1, dtype: 'bf16' as const, xo: 11, yo: 6 },
  { M: 65, N: 129, K: 33, wOffset: 5, dtype: 'f32' as const, xo: 0, yo: 3 },
  { M: 13, N: 300, K: 41, wOffset: 1, dtype: 'bf16' as const, xo: 2, yo: 1 }, // few rows: the thin 16-row tile, 3 ragged column tiles
];

/** `data` after `off` leading filler elements. */
function padded(data: Float32Array, off: number, fill = 7): Float32Array {
  const out = new Float32Array(off + data.length).fill(fill);
  out.set(data, off);
  return out;
}

// Every tiling of matmulVariants, forced (subgroup ones strict: no silent fallback to staging A), on the ragged cases
// plus one spanning several 128 x 128 tiles and an odd number of k-slices; the adapter's own choice on every case.
const bigCase = { M: 150, N: 133, K: 45, wOffset: 2, dtype: 'bf16' as const, xo: 1, yo: 0 };
// Each tiling also on the grid laid out row tiles first (the layout gemmBytes picks for the LM head's logits).
const variants: { name: string; t: gpuOp.MatmulTiling | null; rowsFast?: boolean; cases: typeof cases }[] = [
  { name: 'adapter tiling', t: null, cases },
  ...gpuOp.matmulVariants(await testGpu()).map((v) => ({ name: v.name, t: v.tiling, cases: [...cases.slice(2), bigCase] })),
  ...gpuOp.matmulVariants(await testGpu()).map((v) => ({ name: `${v.name} rows first`, t: v.tiling, rowsFast: true, cases: [cases[2]!, bigCase] })),
];

/** Runs `f` with the launchers forced to tiling t (null: by adapter) and, when rowsFast is set, that grid order. */
const withTiling = (t: gpuOp.MatmulTiling | null, rowsFast: boolean | undefined, f: () => Promise<void>) =>
  withForced((x: gpuOp.MatmulTiling | null) => gpuOp.forceMatmulTiling(x, true), t, () => withForced(gpuOp.forceMatmulGridOrder, rowsFast ?? null, f));

describe('matmul variants', () => {
  it('SwiftShader offers all six tilings, subgroups included', async () => {
    const gpu = await testGpu();
    expect(gpu.hasSubgroups).toBe(true);
    expect(variants.filter((v) => !v.rowsFast).map((v) => v.name)).toEqual(['adapter tiling', 'matmul 64x64 4x4', 'matmul 128x128 8x8 db', 'matmul 64x64 4x4 subgroups', 'matmul 128x128 8x8 db subgroups', 'matmul 16x128 thin', 'matmul 32x128 thin']);
  });

  it('a GEMM of at most 16 / 32 rows takes the thin 16- / 32-row tile on every adapter, more rows the adapter\'s', async () => {
    const gpu = await testGpu();
    const nvidia = { ...gpu, hasSubgroups: true, info: { ...gpu.info, vendor: 'nvidia', cpu: false, maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256 } };
    for (const g of [gpu, nvidia]) {
      expect(gpuOp.gemmTiling(g, 1)).toMatchObject({ TX: 32, TY: 4 });
      expect(gpuOp.gemmTiling(g, 16)).toMatchObject({ TX: 32, TY: 4 });
      expect(gpuOp.gemmTiling(g, 17)).toMatchObject({ TX: 32, TY: 8 });
      expect(gpuOp.gemmTiling(g, 32)).toMatchObject({ TX: 32, TY: 8 });
      expect(gpuOp.gemmTiling(g, 33)).toEqual(gpuOp.matmulTiling(g));
    }
  });

  it('the per-vendor table: 128 x 128 on large GPUs with subgroups when present; 64 x 64 on CPUs and other GPUs', async () => {
    const gpu = await testGpu();
    const as = (vendor: string, cpu: boolean, hasSubgroups: boolean, storage = 16384) =>
      gpuOp.matmulTiling({ ...gpu, hasSubgroups, info: { ...gpu.info, vendor, cpu, maxComputeWorkgroupStorageSize: storage, maxComputeInvocationsPerWorkgroup: 256 } });
    expect(as('nvidia', false, true)).toMatchObject({ RM: 8, RN: 8, DB: true, SG: true });
    expect(as('amd', false, false)).toMatchObject({ RM: 8, RN: 8, DB: true, SG: false });
    expect(as('intel', false, true)).toMatchObject({ RM: 4, RN: 4, DB: false, SG: true });
    expect(as('google', true, true)).toMatchObject({ RM: 4, RN: 4, DB: false, SG: false });
    expect(as('nvidia', false, true, 12288)).toMatchObject({ RM: 4, RN: 4 });   // 16 KiB tile refused by the limit
  });
});

describe('matmul', () => {
  for (const v of variants) for (const c of v.cases) {
    const { M, N, K, wOffset, dtype, xo, yo } = c;
    const tag = `M${M} N${N} K${K} ${dtype} offsets w ${wOffset} x ${xo} y ${yo}, ${v.name}`;
    const it = (title: string, f: () => Promise<void>) => vitestIt(title, () => withTiling(v.t, v.rowsFast, f));
    const x = padded(randn(M * K, 1), xo);
    const dy = padded(randn(M * N, 2), yo);
    const bias = randn(N + 2, 3);

    it(`forward (=, with bias; +=, without) ${tag}`, async () => {
      const gpu = await testGpu();
      const w = weightBuffer(gpu, N * K, wOffset, dtype, 4);
      const y0 = padded(randn(M * N, 5), yo);
      const y = poisoned(gpu, yo + M * N), yAcc = f32Buffer(gpu, y0);
      const d = { M, N, K, wDtype: dtype, wOffset, biasOffset: 2, xOffset: xo, yOffset: yo };
      await run(gpu, (enc) => {
        gpuOp.matmulForward(enc, y, f32Buffer(gpu, x), w.buf, f32Buffer(gpu, bias), d);
        gpuOp.matmulForward(enc, yAcc, f32Buffer(gpu, x), w.buf, null, { ...d, accumulate: true });
      });
      const yr = new Float64Array(yo + M * N).fill(NaN), yAccR = Float64Array.from(y0);
      ref.matmulForward(yr, x, w.values, bias, d);
      ref.matmulForward(yAccR, x, w.values, null, { ...d, accumulate: true });
      const got = await readF32(gpu, y);
      expect(got.subarray(0, yo).every(Number.isNaN), 'y before yOffset untouched').toBe(true);
      expectClose(got.subarray(yo), yr.subarray(yo), ATOL, RTOL, 'y');
      expectClose(await readF32(gpu, yAcc), yAccR, ATOL, RTOL, 'y (accumulated)');
    });

    it(`backward input (=, +=) ${tag}`, async () => {
      const gpu = await testGpu();
      const w = weightBuffer(gpu, N * K, wOffset, dtype, 4);
      const dx0 = padded(randn(M * K, 6), xo);
      const dx = poisoned(gpu, xo + M * K), dxAcc = f32Buffer(gpu, dx0);
      const d = { M, N, K, wDtype: dtype, wOffset, xOffset: xo, yOffset: yo };
      await run(gpu, (enc) => {
        gpuOp.matmulBackwardInput(enc, dx, f32Buffer(gpu, dy), w.buf, d);
        gpuOp.matmulBackwardInput(enc, dxAcc, f32Buffer(gpu, dy), w.buf, { ...d, accumulate: true });
      });
      const dxr = new Float64Array(xo + M * K), dxAccR = Float64Array.from(dx0);
      ref.matmulBackwardInput(dxr, dy, w.values, d);
      ref.matmulBackwardInput(dxAccR, dy, w.values, { ...d, accumulate: true });
      expectClose((await readF32(gpu, dx)).subarray(xo), dxr.subarray(xo), ATOL, RTOL, 'dx');
      expectClose(await readF32(gpu, dxAcc), dxAccR, ATOL, RTOL, 'dx (accumulated)');
    });

    it(`backward weight and bias (+= at an offset, =) ${tag}`, async () => {
      const gpu = await testGpu();
      const off = 7;
      const dw0 = randn(off + N * K, 7), db0 = randn(off + N, 8);
      const dw = f32Buffer(gpu, dw0), db = f32Buffer(gpu, db0);
      const dwSet = poisoned(gpu, N * K), dbSet = poisoned(gpu, N);
      const d = { M, N, K, xOffset: xo, yOffset: yo };
      await run(gpu, (enc) => {
        gpuOp.matmulBackwardWeight(enc, dw, f32Buffer(gpu, dy), f32Buffer(gpu, x), { ...d, dwOffset: off });
        gpuOp.matmulBackwardBias(enc, db, f32Buffer(gpu, dy), { ...d, dwOffset: off });
        gpuOp.matmulBackwardWeight(enc, dwSet, f32Buffer(gpu, dy), f32Buffer(gpu, x), { ...d, accumulateDw: false });
        gpuOp.matmulBackwardBias(enc, dbSet, f32Buffer(gpu, dy), { ...d, accumulateDw: false });
      });
      const dwr = Float64Array.from(dw0), dbr = Float64Array.from(db0);
      ref.matmulBackwardWeight(dwr, dy, x, { ...d, dwOffset: off });
      ref.matmulBackwardBias(dbr, dy, { ...d, dwOffset: off });
      expectClose(await readF32(gpu, dw), dwr, ATOL, RTOL, 'dW (accumulated)');
      expectClose(await readF32(gpu, db), dbr, ATOL, RTOL, 'dbias (accumulated)');
      expectClose(await readF32(gpu, dwSet), dwr.subarray(off).map((v, i) => v - dw0[off + i]!), ATOL, RTOL, 'dW');
      expectClose(await readF32(gpu, dbSet), dbr.subarray(off).map((v, i) => v - db0[off + i]!), ATOL, RTOL, 'dbias');
    });
  }

  it('oracle backward agrees with finite differences', () => {
    const M = 3, N = 4, K = 5, wo = 2;
    const d = { M, N, K, wDtype: 'f32' as const, wOffset: wo };
    const x = Float64Array.from(randn(M * K, 11));
    const w = Float64Array.from(randn(wo + N * K, 12));
    const b = Float64Array.from(randn(N, 13));
    const g = Float64Array.from(randn(M * N, 14));
    const loss = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => {
      const y = new Float64Array(M * N);
      ref.matmulForward(y, xx, ww, bb, d);
      return y.reduce((a, v, i) => a + v * g[i]!, 0);
    };
    const dx = new Float64Array(M * K), dw = new Float64Array(N * K), db = new Float64Array(N);
    ref.matmulBackwardInput(dx, g, w, d);
    ref.matmulBackwardWeight(dw, g, x, { M, N, K });
    ref.matmulBackwardBias(db, g, { M, N, K });
    for (let i = 0; i < M * K; i += 2) expectClose([dx[i]!], [finiteDiff((v) => loss(v, w, b), x, i)], 1e-6, 1e-6, `dx[${i}]`);
    for (let i = 0; i < N * K; i += 3) expectClose([dw[i]!], [finiteDiff((v) => loss(x, v, b), w, wo + i)], 1e-6, 1e-6, `dW[${i}]`);
    for (let i = 0; i < N; i++) expectClose([db[i]!], [finiteDiff((v) => loss(x, w, v), b, i)], 1e-6, 1e-6, `dbias[${i}]`);
  });
});
