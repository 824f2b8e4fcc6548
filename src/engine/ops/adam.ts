// Optimizer launchers (docs/method.md): SparseAdam over f32 masters of the active entries, scatter/gather of masters into the
// current weights (f32 or bf16), router SGD with momentum, and the non-finite guard. Same signatures as ref/adam.ts.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import adamSrc from '../../../shaders/adam.wgsl?raw';
import adamEntryTSrc from '../../../shaders/adam_entry_t.wgsl?raw';
import scatterSrc from '../../../shaders/adam_scatter.wgsl?raw';
import gatherSrc from '../../../shaders/adam_gather.wgsl?raw';
import sgdSrc from '../../../shaders/adam_sgd.wgsl?raw';
import finiteSrc from '../../../shaders/adam_finite.wgsl?raw';

// Legend: n active entries (or router elements). `guard` = the flag of checkFinite ([1] u32); null = always apply.

export interface AdamStep {
  lr: number;
  /** Step count t >= 1 since the last (re)selection, for bias correction. */
  t: number;
  weightDecay: number;
  beta1?: number; // 0.9
  beta2?: number; // 0.999
  eps?: number; // 1e-8
}

/** SparseAdam with a count per entry: the hyper-parameters without t; counts beyond tMax use tMax's corrections. */
export interface AdamEntryStep {
  lr: number;
  weightDecay: number;
  /** Largest count the bias-correction table holds (its length is 2 * (tMax + 1)). */
  tMax: number;
  beta1?: number; // 0.9
  beta2?: number; // 0.999
  eps?: number; // 1e-8
}

export interface SgdStep {
  lr: number;
  weightDecay: number;
  /** false on the first update of this router: the buffer is initialised to the gradient. */
  hasBuf: boolean;
  momentum?: number; // 0.9
}

/** Where the masters live in the current weight tensor: element offset of flat index 0, and its storage. */
export interface WeightTarget {
  dtype: 'f32' | 'bf16';
  offset?: number;
  /**
   * f32 only: just the entries whose index lies in [lo, hi), at offset + idx - lo (others untouched): one chunk of a
   * tensor held in a smaller buffer (the expert chunks of train/q4-base.ts). Default all, at offset + idx.
   */
  range?: [lo: number, hi: number];
}

const WG = 256;
const groups = (n: number) => Math.max(1, Math.min(65535, Math.ceil(n / WG)));

export function adamParams(n: number, h: AdamStep, useGuard: boolean): ArrayBuffer {
  const b1 = h.beta1 ?? 0.9, b2 = h.beta2 ?? 0.999;
  const buf = new ArrayBuffer(36);
  new Uint32Array(buf, 0, 2).set([n, useGuard ? 1 : 0]);
  new Float32Array(buf, 8, 7).set([h.lr, b1, b2, h.eps ?? 1e-8, h.weightDecay, 1 - b1 ** h.t, 1 - b2 ** h.t]);
  return buf;
}

/** The per-entry kernel's table [2 * (tMax + 1)]: (1 - beta1^t, 1 - beta2^t) for t = 0..tMax, as adamParams rounds them. */
export function adamBiasTable(tMax: number, beta1 = 0.9, beta2 = 0.999): Float32Array {
  const out = new Float32Array(2 * (tMax + 1));
  for (let t = 0; t <= tMax; t++) (out[2 * t] = 1 - beta1 ** t, out[2 * t + 1] = 1 - beta2 ** t);
  return out;
}

export function adamEntryParams(n: number, h: AdamEntryStep, useGuard: boolean): ArrayBuffer {
  const buf = new ArrayBuffer(48);
  new Uint32Array(buf, 0, 4).set([n, useGuard ? 1 : 0, h.tMax, 0]);
  new Float32Array(buf, 16, 5).set([h.lr, h.beta1 ?? 0.9, h.beta2 ?? 0.999, h.eps ?? 1e-8, h.weightDecay]);
  return buf;
}

export function sgdParams(n: number, h: SgdStep, useGuard: boolean): ArrayBuffer {
  const buf = new ArrayBuffer(32);
  new Uint32Array(buf, 0, 4).set([n, useGuard ? 1 : 0, h.hasBuf ? 1 : 0, 0]);
  new Float32Array(buf, 16, 4).set([h.lr, h.momentum ?? 0.9, h.weightDecay, 0]);
  return buf;
}

function targetParams(n: number, w: WeightTarget, useGuard: boolean): Uint32Array {
  if (w.range && w.dtype !== 'f32') throw new Error('scatter/gather masters: an index range needs f32 weights');
  const [lo, hi] = w.range ?? [0, 0xffffffff];
  return Uint32Array.from([n, w.offset ?? 0, useGuard ? 1 : 0, lo, hi, 0, 0, 0]);
}

// ---------------------------------------------------------------------------------------------------------------
// SparseAdam

/** master, m, v [n] updated in place from grad [n] (skipped when guard[0] != 0). */
export function sparseAdam(enc: Encoder, master: GPUBuffer, m: GPUBuffer, v: GPUBuffer, grad: GPUBuffer, guard: GPUBuffer | null, n: number, h: AdamStep): void {
  if (n === 0) return;
  const k = kernel(enc.gpu, { name: 'adam.sparse_adam', code: adamSrc, entryPoint: 'sparse_adam', constants: { WG } });
  // reads grad, master, m, v; writes master, m, v
  k.dispatch(enc, [grad, guard ?? grad, master, m, v], [groups(n)], adamParams(n, h, guard !== null), { flops: 15 * n, bytes: 28 * n });
}

/**
 * As sparseAdam, with entry j's own step count: steps[j] += 1, then bias corrections bc [2 * (tMax + 1)] (adamBiasTable,
 * same betas as h) at that count. master, m, v, steps [n] updated in place (all skipped when guard[0] != 0).
 */
export function sparseAdamEntryT(enc: Encoder, master: GPUBuffer, m: GPUBuffer, v: GPUBuffer, steps: GPUBuffer, grad: GPUBuffer, guard: GPUBuffer | null, bc: GPUBuffer, n: number, h: AdamEntryStep): void {
  if (n === 0) return;
  const k = kernel(enc.gpu, { name: 'adam.sparse_adam_entry_t', code: adamEntryTSrc, entryPoint: 'sparse_adam_entry_t', constants: { WG } });
  // as sparseAdam, plus steps read and written and a (bc1, bc2) pair read per entry
  k.dispatch(enc, [grad, guard ?? grad, bc, master, m, v, steps], [groups(n)], adamEntryParams(n, h, guard !== null), { flops: 15 * n, bytes: 44 * n });
}

/**
 * weights[offset + idx[j] (- lo)] = master[j] for j < n (with w.range: only idx[j] in [lo, hi)) (skipped when guard[0] != 0). bf16 weights: rounded to nearest even,
 * the f32 master keeps the exact value. idx [n] sorted ascending and unique.
 */
export function scatterMasters(enc: Encoder, weights: GPUBuffer, master: GPUBuffer, idx: GPUBuffer, guard: GPUBuffer | null, n: number, w: WeightTarget): void {
  if (n === 0) return;
  const k = kernel(enc.gpu, { name: 'adam.scatter', code: scatterSrc, entryPoint: 'scatter', constants: { WG, W_BF16: w.dtype === 'bf16' ? 1 : 0 } });
  // idx, master read; an f32 weight written, or a bf16 pair's word read and written
  k.dispatch(enc, [idx, master, guard ?? idx, weights], [groups(n)], targetParams(n, w, guard !== null), { flops: 0, bytes: n * (w.dtype === 'bf16' ? 16 : 12) });
}

/** master[j] = weights[offset + idx[j] (- lo)] (with w.range: only idx[j] in [lo, hi), the others untouched) (at selection / reselection, after grown entries were reset to W0). */
export function gatherMasters(enc: Encoder, master: GPUBuffer, weights: GPUBuffer, idx: GPUBuffer, n: number, w: WeightTarget): void {
  if (n === 0) return;
  const k = kernel(enc.gpu, { name: 'adam.gather', code: gatherSrc, entryPoint: 'gather', constants: { WG, W_BF16: w.dtype === 'bf16' ? 1 : 0 } });
  k.dispatch(enc, [weights, idx, master], [groups(n)], targetParams(n, w, false), { flops: 0, bytes: 12 * n });
}

// ---------------------------------------------------------------------------------------------------------------
// router SGD and the non-finite guard

/** Router weights w [n] and momentum buffer buf [n] updated in place from grad [n] (skipped when guard[0] != 0). */
export function routerSgd(enc: Encoder, w: GPUBuffer, buf: GPUBuffer, grad: GPUBuffer, guard: GPUBuffer | null, n: number, h: SgdStep): void {
  if (n === 0) return;
  const k = kernel(enc.gpu, { name: 'adam.sgd', code: sgdSrc, entryPoint: 'sgd', constants: { WG } });
  // reads grad, w, buf; writes w, buf
  k.dispatch(enc, [grad, guard ?? grad, w, buf], [groups(n)], sgdParams(n, h, guard !== null), { flops: 6 * n, bytes: 20 * n });
}

/** flag [1] u32 |= 1 if x [n] holds a NaN or inf. Clear flag (enc.clear) once per step before the first check. */
export function checkFinite(enc: Encoder, flag: GPUBuffer, x: GPUBuffer, n: number): void {
  if (n === 0) return;
  const k = kernel(enc.gpu, { name: 'adam.check_finite', code: finiteSrc, entryPoint: 'check_finite', constants: { WG } });
  k.dispatch(enc, [x, flag], [Math.min(1024, groups(n))], Uint32Array.from([n, 0, 0, 0]), { flops: n, bytes: 4 * n });
}
