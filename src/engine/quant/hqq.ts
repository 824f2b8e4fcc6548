// CPU 4-bit quantizer in float64: min-max rounding, and HQQ (half-quadratic optimization of the zero point), per group.
// It is also the oracle of shaders/quantize.wgsl (ref/quantize.ts re-exports it), so both follow the same steps in the same order.

import { code, groupSpan, packScaleZero, quantLayout, f16Bits, f16Value, nibble, unpackScaleZero, type QuantDims, type QuantLayout } from './format.ts';

export type QuantMethod = 'hqq' | 'minmax';

export interface HqqOptions {
  /** Most error evaluations per group (HQQ's default 20). */
  iters: number;
  /** p of the lp-norm proximal step (HQQ's 0.7). */
  lpNorm: number;
  /** Starting beta (10) and its growth per iteration (1.01). */
  beta: number;
  kappa: number;
}

export const HQQ_DEFAULTS: Readonly<HqqOptions> = { iters: 20, lpNorm: 0.7, beta: 10, kappa: 1.01 };

export interface QuantizeDims extends QuantDims {
  /** 'hqq' (default) or 'minmax' (the starting point of HQQ, without the iterations). */
  method?: QuantMethod;
  hqq?: Partial<HqqOptions>;
  /** Element offset of the first weight in `w` (default 0). */
  wOffset?: number;
  /** GPU only: `w` holds bf16 pairs in u32 words instead of f32. */
  bf16?: boolean;
}

/** Resolved iteration settings: min-max is HQQ with no iterations. */
export function hqqSettings(dims: QuantizeDims): HqqOptions {
  const o = { ...HQQ_DEFAULTS, ...dims.hqq };
  if ((dims.method ?? 'hqq') === 'minmax') o.iters = 0;
  if (!Number.isInteger(o.iters) || o.iters < 0) throw new RangeError(`quant: iters ${o.iters} is not a non-negative integer`);
  return o;
}

/**
 * The scale of a group: (max - min) / 15, floored so that it is a positive f16 and the zero point stays small
 * (|z| <= 1024 + 15) for groups whose spread is tiny next to their magnitude; rounded to f16 (it is stored so, and fixed).
 */
export function groupScale(lo: number, hi: number): number {
  const amax = Math.max(Math.abs(lo), Math.abs(hi));
  return f16Value(f16Bits(Math.max((hi - lo) / 15, amax / 1024, 2 ** -24)));
}

/** lp shrinkage (proximal step of |e|^p): sign(e) * relu(|e| - |e|^(p-1) / beta); 0 stays 0. */
export function shrinkLp(e: number, beta: number, p: number): number {
  const a = Math.abs(e);
  if (a === 0) return 0;
  return Math.sign(e) * Math.max(a - a ** (p - 1) / beta, 0);
}

/** |e| at or below which the shrink gives 0 (|e|^(2-p) <= 1/beta): lets the loop skip the power for most residuals. */
export function shrinkThreshold(beta: number, p: number): number {
  return (1 / beta) ** (1 / (2 - p));
}

/**
 * Best zero point (unrounded) of one group w[start..start+len) with scale s: starts at min-max z = -min/s; each
 * iteration evaluates the squared error of the current z, stops as soon as it does not fall, else updates
 *   q = clamp(round(W/s + z)), e = shrink(W - (q - z)s), z = mean(q - (W - e)/s), beta *= kappa.
 */
export function hqqZero(w: ArrayLike<number>, start: number, len: number, s: number, lo: number, o: HqqOptions): number {
  let z = -lo / s;
  let bestZ = z;
  let best = Infinity;
  let beta = o.beta;
  for (let it = 0; it < o.iters; it++) {
    const dead = shrinkThreshold(beta, o.lpNorm);
    let err = 0;
    let acc = 0;
    for (let j = 0; j < len; j++) {
      const v = w[start + j]!;
      const q = code(v, s, z);
      const r = v - (q - z) * s;
      err += r * r;
      acc += q - (Math.abs(r) <= dead ? v : v - shrinkLp(r, beta, o.lpNorm)) / s;
    }
    if (!(err < best)) break;
    best = err;
    bestZ = z;
    z = acc / len;
    beta *= o.kappa;
  }
  return bestZ;
}

/** q [rowOffset + rows, K/8], sz [rowOffset + rows, ceil(K/G)] (rows rowOffset.. written) <- w [rows, K] at wOffset. */
export function quantizeCpu(q: Uint32Array, sz: Uint32Array, w: ArrayLike<number>, dims: QuantizeDims): void {
  const L = quantLayout(dims.rows, dims.K, dims.G);
  const o = hqqSettings(dims);
  const w0 = dims.wOffset ?? 0;
  const row0 = dims.rowOffset ?? 0;
  checkSizes(L, q, sz, row0);
  for (let g = 0; g < L.groups; g++) {
    const { start, len } = groupSpan(L, g);
    let lo = Infinity, hi = -Infinity;
    for (let j = 0; j < len; j++) {
      const v = w[w0 + start + j]!;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const sBits = f16Bits(groupScale(lo, hi));
    const s = f16Value(sBits);
    const zBits = f16Bits(hqqZero(w, w0 + start, len, s, lo, o));
    const z = f16Value(zBits);
    sz[row0 * L.groupsPerRow + g] = packScaleZero(sBits, zBits);
    const word0 = row0 * (L.K / 8) + start / 8;
    for (let i = 0; i < len / 8; i++) {
      let word = 0;
      for (let j = 0; j < 8; j++) word |= code(w[w0 + start + i * 8 + j]!, s, z) << (j * 4);
      q[word0 + i] = word >>> 0;
    }
  }
}

/** err2 [rows * ceil(K/G)] = per-group sum of (W - (q - z)s)^2 of the rows rowOffset.. against w [rows, K] at wOffset. */
export function quantErrorCpu(err2: Float64Array, w: ArrayLike<number>, q: ArrayLike<number>, sz: ArrayLike<number>, dims: QuantizeDims): void {
  const L = quantLayout(dims.rows, dims.K, dims.G);
  const w0 = dims.wOffset ?? 0;
  const row0 = dims.rowOffset ?? 0;
  for (let g = 0; g < L.groups; g++) {
    const { start, len } = groupSpan(L, g);
    const { s, z } = unpackScaleZero(sz[row0 * L.groupsPerRow + g]!);
    let e = 0;
    for (let j = 0; j < len; j++) {
      const d = w[w0 + start + j]! - (nibble(q, row0 * L.K + start + j) - z) * s;
      e += d * d;
    }
    err2[g] = e;
  }
}

function checkSizes(L: QuantLayout, q: ArrayLike<number>, sz: ArrayLike<number>, row0: number): void {
  const rows = row0 + L.rows;
  if (q.length < (rows * L.K) / 8) throw new RangeError(`quant: q has ${q.length} words, needs ${(rows * L.K) / 8}`);
  if (sz.length < rows * L.groupsPerRow) throw new RangeError(`quant: sz has ${sz.length} words, needs ${rows * L.groupsPerRow}`);
}
