// CPU quantizer (quant/hqq.ts, also the GPU oracle): exact on a 16-level grid, HQQ's steps and stop rule,
// HQQ never worse than min-max per group, degenerate groups, offsets, and the per-group error.
import { describe, expect, it } from 'vitest';
import { code, f16Bits, f16Value, groupSpan, nibble, quantLayout, unpackScaleZero } from '../../../src/engine/quant/format.ts';
import { groupScale, hqqZero, HQQ_DEFAULTS, quantErrorCpu, quantizeCpu, shrinkLp, shrinkThreshold, type QuantizeDims } from '../../../src/engine/quant/hqq.ts';
import { dequantize } from '../../../src/engine/ref/dequant.ts';
import { randn, rng } from '../../helpers/random.ts';

function quant(w: ArrayLike<number>, dims: QuantizeDims) {
  const L = quantLayout((dims.rowOffset ?? 0) + dims.rows, dims.K, dims.G);
  const q = new Uint32Array(L.qWords), sz = new Uint32Array(L.groups);
  quantizeCpu(q, sz, w, dims);
  const err2 = new Float64Array(quantLayout(dims.rows, dims.K, dims.G).groups);
  quantErrorCpu(err2, w, q, sz, dims);
  return { q, sz, err2 };
}

/** Gaussian weights with a few outliers, like real expert rows (at scale 0.02 the shrink zeroes every residual; at 2 not). */
function weights(n: number, seed: number, scale = 0.02): Float32Array {
  const w = randn(n, seed, scale);
  const r = rng(seed + 100);
  for (let i = 0; i < n; i++) if (r() < 0.01) w[i] *= 6;
  return w;
}

describe('quantizeCpu', () => {
  it('reproduces weights on a 16-level grid exactly (min-max and HQQ)', () => {
    const s = 0.0625, lo = -0.5; // z = 8
    const r = rng(1);
    const levels = Array.from({ length: 3 * 64 }, (_, i) => (i % 64 < 2 ? [0, 15][i % 64]! : Math.floor(r() * 16)));
    const w = levels.map((c) => lo + c * s);
    for (const method of ['minmax', 'hqq'] as const) {
      const { q, sz, err2 } = quant(w, { rows: 3, K: 64, G: 64, method });
      expect(Array.from(err2)).toEqual([0, 0, 0]);
      expect(unpackScaleZero(sz[1]!)).toEqual({ s, z: 8 });
      expect(Array.from({ length: w.length }, (_, i) => nibble(q, i))).toEqual(levels);
    }
  });

  it('min-max is HQQ stopped after its first error evaluation', () => {
    const w = weights(4 * 128, 2);
    const mm = quant(w, { rows: 4, K: 128, G: 64, method: 'minmax' });
    expect(quant(w, { rows: 4, K: 128, G: 64, hqq: { iters: 1 } })).toEqual(mm);
    expect(quant(w, { rows: 4, K: 128, G: 64, hqq: { iters: 0 } })).toEqual(mm);
    const { s, z } = unpackScaleZero(mm.sz[0]!);
    let lo = Infinity, hi = -Infinity;
    for (let j = 0; j < 64; j++) { lo = Math.min(lo, w[j]!); hi = Math.max(hi, w[j]!); }
    expect(s).toBe(f16Value(f16Bits((hi - lo) / 15)));
    expect(z).toBe(f16Value(f16Bits(-lo / s)));
  });

  it('follows the HQQ steps: a z update is kept only while the squared error falls', () => {
    const w = Array.from(weights(24, 3, 2));
    let lo = Infinity, hi = -Infinity;
    for (const v of w) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const s = groupScale(lo, hi);
    const err = (z: number) => w.reduce((a, v) => a + (v - (code(v, s, z) - z) * s) ** 2, 0);
    // One step by hand: beta = 10, p = 0.7.
    const z0 = -lo / s;
    const e0 = w.map((v) => shrinkLp(v - (code(v, s, z0) - z0) * s, 10, 0.7));
    expect(e0.filter((e) => e !== 0).length).toBeGreaterThan(3);
    const z1 = w.reduce((a, v, i) => a + code(v, s, z0) - (v - e0[i]!) / s, 0) / w.length;
    const o = { ...HQQ_DEFAULTS, iters: 2 };
    expect(err(z1)).toBeLessThan(err(z0));
    expect(hqqZero(w, 0, w.length, s, lo, o)).toBeCloseTo(z1, 12);
    // Full run: the result is never worse than the start, and more iterations never hurt.
    let prev = err(z0);
    for (const iters of [1, 2, 5, 20]) {
      const e = err(hqqZero(w, 0, w.length, s, lo, { ...HQQ_DEFAULTS, iters }));
      expect(e).toBeLessThanOrEqual(prev);
      prev = e;
    }
  });

  it('shrinks with the lp proximal step', () => {
    expect(shrinkLp(0, 10, 0.7)).toBe(0);
    expect(shrinkLp(0.01, 10, 0.7)).toBe(0);
    expect(shrinkLp(10, 10, 0.7)).toBeCloseTo(10 - 10 ** -0.3 / 10, 12);
    expect(shrinkLp(-10, 20, 0.7)).toBeCloseTo(-(10 - 10 ** -0.3 / 20), 12);
    const t = shrinkThreshold(10, 0.7); // the quantizer skips the power at or below it
    expect(shrinkLp(t * (1 - 1e-9), 10, 0.7)).toBe(0);
    expect(shrinkLp(-t * (1 + 1e-6), 10, 0.7)).toBeLessThan(0);
  });

  it('HQQ has lower error than min-max: in total, and in (almost) every group', () => {
    const rows = 24, K = 200, G = 64; // 4 groups a row, the last one of 8
    const w = weights(rows * K, 4);
    const mm = quant(w, { rows, K, G, method: 'minmax' }).err2;
    const hq = quant(w, { rows, K, G }).err2;
    const sum = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
    expect(Math.sqrt(sum(hq) / sum(mm))).toBeLessThan(0.985);
    // The best z is rounded to f16 at the end, so a group may lose a hair against its min-max start; never more.
    let worse = 0;
    for (let g = 0; g < mm.length; g++) {
      expect(hq[g]!).toBeLessThanOrEqual(mm[g]! * 1.01 + 1e-12);
      if (hq[g]! > mm[g]!) worse++;
    }
    expect(worse).toBeLessThan(mm.length * 0.05);
  });

  it('handles constant and all-zero groups', () => {
    const w = [...new Array(16).fill(0), ...new Array(16).fill(0.3), ...new Array(16).fill(-1e-7)];
    for (const method of ['minmax', 'hqq'] as const) {
      const { sz, err2 } = quant(w, { rows: 3, K: 16, G: 16, method });
      expect(err2[0]).toBe(0);
      expect(unpackScaleZero(sz[0]!).s).toBeGreaterThan(0);
      expect(Math.sqrt(err2[1]! / 16)).toBeLessThanOrEqual(0.3 * 2 ** -10);
      expect(Math.sqrt(err2[2]! / 16)).toBeLessThanOrEqual(1e-7 * 2 ** -10);
    }
  });

  it('reads at wOffset and writes only rows rowOffset..', () => {
    const rows = 3, K = 48, G = 16;
    const w = weights(2 * rows * K, 5);
    const all = quant(w, { rows: 2 * rows, K, G });
    const L = quantLayout(2 * rows, K, G);
    const q = new Uint32Array(L.qWords).fill(0xdeadbeef), sz = new Uint32Array(L.groups).fill(0xdeadbeef);
    quantizeCpu(q, sz, w, { rows, K, G, wOffset: rows * K, rowOffset: rows });
    expect(Array.from(q.subarray(0, L.qWords / 2))).toEqual(new Array(L.qWords / 2).fill(0xdeadbeef));
    expect(q.subarray(L.qWords / 2)).toEqual(all.q.subarray(L.qWords / 2));
    expect(sz.subarray(L.groups / 2)).toEqual(all.sz.subarray(L.groups / 2));
    expect(() => quantizeCpu(new Uint32Array(4), sz, w, { rows, K, G })).toThrow(/q has 4 words/);
  });

  it('reports the per-group squared error of the dequantized weights', () => {
    const rows = 5, K = 40, G = 16;
    const w = weights(rows * K, 6);
    const { q, sz, err2 } = quant(w, { rows, K, G });
    const d = new Float64Array(rows * K);
    dequantize(d, q, sz, { rows, K, G });
    const L = quantLayout(rows, K, G);
    for (let g = 0; g < L.groups; g++) {
      const { start, len } = groupSpan(L, g);
      let e = 0;
      for (let j = start; j < start + len; j++) e += (w[j]! - d[j]!) ** 2;
      expect(err2[g]).toBeCloseTo(e, 15);
    }
  });
});
