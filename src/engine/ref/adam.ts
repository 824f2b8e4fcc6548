// CPU float64 oracle of the optimizer steps (tests only). Same signatures as ops/adam.ts; bf16 targets are u32 words.
// SparseAdam and router SGD exactly as docs/method.md; scatter rounds to bf16 (nearest even) when the target is bf16.

import type { AdamEntryStep, AdamStep, SgdStep, WeightTarget } from '../ops/adam.ts';
import { bf16ToF32, f32ToBf16 } from '../io/dtype.ts';

type Arr = ArrayLike<number>;
type Guard = Arr | null;
const skip = (guard: Guard) => guard !== null && guard[0] !== 0;

/** master, m, v [n] updated in place from grad [n]. */
export function sparseAdam(master: Float64Array, m: Float64Array, v: Float64Array, grad: Arr, guard: Guard, n: number, h: AdamStep): void {
  if (skip(guard)) return;
  const b1 = h.beta1 ?? 0.9, b2 = h.beta2 ?? 0.999, eps = h.eps ?? 1e-8;
  for (let j = 0; j < n; j++) {
    const g = grad[j]! + h.weightDecay * master[j]!;
    m[j] = b1 * m[j]! + (1 - b1) * g;
    v[j] = b2 * v[j]! + (1 - b2) * g * g;
    master[j]! -= (h.lr * (m[j]! / (1 - b1 ** h.t))) / (Math.sqrt(v[j]! / (1 - b2 ** h.t)) + eps);
  }
}

/** As sparseAdam with entry j's own count: steps[j] += 1, bias corrections at min(steps[j], tMax) (float64, no table). */
export function sparseAdamEntryT(master: Float64Array, m: Float64Array, v: Float64Array, steps: Uint32Array, grad: Arr, guard: Guard, n: number, h: AdamEntryStep): void {
  if (skip(guard)) return;
  const b1 = h.beta1 ?? 0.9, b2 = h.beta2 ?? 0.999, eps = h.eps ?? 1e-8;
  for (let j = 0; j < n; j++) {
    steps[j]! += 1;
    const t = Math.min(steps[j]!, h.tMax);
    const g = grad[j]! + h.weightDecay * master[j]!;
    m[j] = b1 * m[j]! + (1 - b1) * g;
    v[j] = b2 * v[j]! + (1 - b2) * g * g;
    master[j]! -= (h.lr * (m[j]! / (1 - b1 ** t))) / (Math.sqrt(v[j]! / (1 - b2 ** t)) + eps);
  }
}

/** weights[offset + idx[j] (- lo)] = master[j] (w.range: idx in [lo, hi) only). f32 target: Float64Array of values; bf16 target: Uint32Array of packed words. */
export function scatterMasters(weights: Float64Array | Uint32Array, master: Arr, idx: Arr, guard: Guard, n: number, w: WeightTarget): void {
  if (skip(guard)) return;
  const off = w.offset ?? 0;
  const [lo, hi] = w.range ?? [0, Infinity];
  for (let j = 0; j < n; j++) {
    if (w.range && (idx[j]! < lo || idx[j]! >= hi)) continue;
    const i = off + idx[j]! - lo;
    if (w.dtype === 'f32') weights[i] = master[j]!;
    else {
      const sh = 16 * (i & 1);
      weights[i >> 1] = ((weights[i >> 1]! & ~(0xffff << sh)) | (f32ToBf16(master[j]!) << sh)) >>> 0;
    }
  }
}

/** master[j] = weights[offset + idx[j] (- lo)] (w.range: idx in [lo, hi) only; f32 values, or packed bf16 words). */
export function gatherMasters(master: Float64Array, weights: Float64Array | Uint32Array, idx: Arr, n: number, w: WeightTarget): void {
  const off = w.offset ?? 0;
  const [lo, hi] = w.range ?? [0, Infinity];
  for (let j = 0; j < n; j++) {
    if (w.range && (idx[j]! < lo || idx[j]! >= hi)) continue;
    const i = off + idx[j]! - lo;
    if (w.dtype === 'f32') master[j] = weights[i]!;
    else master[j] = bf16ToF32(weights[i >> 1]! >>> (16 * (i & 1)));
  }
}

/** Router w, buf [n] updated in place from grad [n]: SGD, momentum, no dampening, L2 decay in the gradient. */
export function routerSgd(w: Float64Array, buf: Float64Array, grad: Arr, guard: Guard, n: number, h: SgdStep): void {
  if (skip(guard)) return;
  const mu = h.momentum ?? 0.9;
  for (let j = 0; j < n; j++) {
    const d = grad[j]! + h.weightDecay * w[j]!;
    buf[j] = h.hasBuf ? mu * buf[j]! + d : d;
    w[j]! -= h.lr * buf[j]!;
  }
}

/** flag[0] |= 1 if x [n] holds a NaN or inf. */
export function checkFinite(flag: Uint32Array, x: Arr, n: number): void {
  for (let j = 0; j < n; j++) if (!Number.isFinite(x[j]!)) flag[0] = 1;
}
