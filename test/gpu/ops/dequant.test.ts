// dequant: GPU vs the float64 oracle on random nibbles and (scale, zero) pairs, with row and output offsets,
// short last groups, and NaN-poisoned output outside the written range left alone.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/dequant.ts';
import * as ref from '../../../src/engine/ref/dequant.ts';
import { f16Bits, packScaleZero, quantLayout, type DequantDims } from '../../../src/engine/quant/format.ts';
import { rng } from '../../helpers/random.ts';
import { expectClose } from '../../helpers/compare.ts';
import { f32Buffer, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';

/** Random codes and (scale, zero) pairs for totalRows rows: scales 1e-4..0.05, zeros -2..17 (fractional). */
function randomQuant(totalRows: number, K: number, G: number, seed: number) {
  const L = quantLayout(totalRows, K, G);
  const r = rng(seed);
  const q = Uint32Array.from({ length: L.qWords }, () => Math.floor(r() * 2 ** 32));
  const sz = Uint32Array.from({ length: L.groups }, () => packScaleZero(f16Bits(1e-4 + r() * 0.05), f16Bits(-2 + r() * 19)));
  return { q, sz };
}

describe('dequant', () => {
  it('matches the oracle', async () => {
    const gpu = await testGpu();
    // [total rows, rows, rowOffset, K, G, outOffset]
    const cases: [number, number, number, number, number, number][] = [[40, 40, 0, 128, 64, 0], [39, 13, 13, 200, 64, 5], [9, 3, 6, 24, 128, 0], [5, 5, 0, 256, 128, 0]];
    for (const [total, rows, rowOffset, K, G, outOffset] of cases) {
      const { q, sz } = randomQuant(total, K, G, total + K);
      const dims: DequantDims = { rows, K, G, rowOffset, outOffset };
      const n = outOffset + rows * K + 3;
      const out = f32Buffer(gpu, new Float32Array(n).fill(NaN));
      await run(gpu, (enc) => gpuOp.dequantize(enc, out, u32Buffer(gpu, q), u32Buffer(gpu, sz), dims));
      const want = new Float64Array(n).fill(NaN);
      ref.dequantize(want, q, sz, dims);
      const got = await readF32(gpu, out);
      const what = `[${rows} of ${total}, ${K}] G ${G}`;
      expect(Array.from(got.subarray(0, outOffset)).every(Number.isNaN), `${what}: before outOffset`).toBe(true);
      expect(Array.from(got.subarray(outOffset + rows * K)).every(Number.isNaN), `${what}: past the end`).toBe(true);
      expectClose(got.subarray(outOffset, outOffset + rows * K), want.subarray(outOffset, outOffset + rows * K), 1e-12, 1e-6, what);
    }
  });

  it('at listed elements matches the oracle and the dense dequantization', async () => {
    const gpu = await testGpu();
    // [rows, K, G, n]: short last groups (K not a multiple of G), first and last elements, repeats, unsorted
    const cases: [number, number, number, number][] = [[40, 128, 64, 300], [13, 200, 64, 97], [7, 24, 128, 5], [64, 256, 128, 2049]];
    for (const [rows, K, G, n] of cases) {
      const { q, sz } = randomQuant(rows, K, G, rows * K + n);
      const r = rng(n);
      const idx = Uint32Array.from({ length: n }, (_, j) => (j === 0 ? 0 : j === 1 ? rows * K - 1 : Math.floor(r() * rows * K)));
      idx[n - 1] = idx[2 % n]!;
      const out = f32Buffer(gpu, new Float32Array(n + 3).fill(NaN));
      await run(gpu, (enc) => gpuOp.dequantizeAt(enc, out, u32Buffer(gpu, q), u32Buffer(gpu, sz), u32Buffer(gpu, idx), n, { rows, K, G }));
      const want = new Float64Array(n);
      ref.dequantizeAt(want, q, sz, idx, n, { rows, K, G });
      const dense = new Float64Array(rows * K);
      ref.dequantize(dense, q, sz, { rows, K, G });
      const got = await readF32(gpu, out);
      const what = `[${rows}, ${K}] G ${G}, ${n} elements`;
      expect(Array.from(got.subarray(n)).every(Number.isNaN), `${what}: past n`).toBe(true);
      expectClose(got.subarray(0, n), want, 1e-12, 1e-6, what);
      expectClose(want, Float64Array.from(idx, (i) => dense[i]!), 0, 0, `${what}: oracle vs dense`);
    }
  });
});

