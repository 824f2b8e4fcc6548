// CPU float64 oracle of causal grouped-query attention (tests only). Same signature and layouts as ops/attention.ts.
// Materializes each row's scores; backward uses the saved o and lse exactly as the GPU does (delta_i = dO_i . o_i).

import type { AttentionDims } from '../ops/attention.ts';

type Arr = ArrayLike<number>;

function visible(d: AttentionDims, i: number, j: number): boolean {
  return j <= i && (d.window === null || i - j < d.window);
}

function dot(a: Arr, ia: number, b: Arr, ib: number, n: number): number {
  let s = 0;
  for (let x = 0; x < n; x++) s += a[ia + x]! * b[ib + x]!;
  return s;
}

/** o [T, NH, dV], lse [T, NH] <- q [T, NH, dQK], k [T, NKV, dQK], v [T, NKV, dV] */
export function attentionForward(o: Float64Array, lse: Float64Array, q: Arr, k: Arr, v: Arr, d: AttentionDims): void {
  const { batch, seq, nHeads: NH, nKvHeads: NKV, dQK, dV } = d;
  const rep = NH / NKV;
  const s = new Float64Array(seq);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / rep);
      for (let i = 0; i < seq; i++) {
        const ti = b * seq + i;
        let m = -Infinity;
        for (let j = 0; j <= i; j++) {
          if (!visible(d, i, j)) continue;
          s[j] = d.scale * dot(q, (ti * NH + h) * dQK, k, ((b * seq + j) * NKV + g) * dQK, dQK);
          m = Math.max(m, s[j]!);
        }
        let l = 0;
        for (let j = 0; j <= i; j++) if (visible(d, i, j)) l += Math.exp(s[j]! - m);
        const L = m + Math.log(l);
        lse[ti * NH + h] = L;
        const ob = (ti * NH + h) * dV;
        o.fill(0, ob, ob + dV);
        for (let j = 0; j <= i; j++) {
          if (!visible(d, i, j)) continue;
          const pij = Math.exp(s[j]! - L);
          const vb = ((b * seq + j) * NKV + g) * dV;
          for (let x = 0; x < dV; x++) o[ob + x] += pij * v[vb + x]!;
        }
      }
    }
  }
}

/**
 * dq [T, NH, dQK], dk [T, NKV, dQK], dv [T, NKV, dV] (all =), delta [T, NH] (= rowsum(dO * o)) <- dO [T, NH, dV] and the
 * forward's q, k, v, o, lse. dk/dv sum over the NH/NKV query heads sharing a kv head.
 */
export function attentionBackward(
  dq: Float64Array,
  dk: Float64Array,
  dv: Float64Array,
  delta: Float64Array,
  dO: Arr,
  q: Arr,
  k: Arr,
  v: Arr,
  o: Arr,
  lse: Arr,
  d: AttentionDims,
): void {
  const { batch, seq, nHeads: NH, nKvHeads: NKV, dQK, dV } = d;
  const rep = NH / NKV;
  dq.fill(0);
  dk.fill(0);
  dv.fill(0);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / rep);
      for (let i = 0; i < seq; i++) {
        const ti = b * seq + i;
        const qb = (ti * NH + h) * dQK, ob = (ti * NH + h) * dV;
        const D = dot(dO, ob, o, ob, dV);
        delta[ti * NH + h] = D;
        for (let j = 0; j <= i; j++) {
          if (!visible(d, i, j)) continue;
          const kb = ((b * seq + j) * NKV + g) * dQK, vb = ((b * seq + j) * NKV + g) * dV;
          const pij = Math.exp(d.scale * dot(q, qb, k, kb, dQK) - lse[ti * NH + h]!);
          const ds = pij * (dot(dO, ob, v, vb, dV) - D);
          for (let x = 0; x < dV; x++) dv[vb + x] += pij * dO[ob + x]!;
          for (let x = 0; x < dQK; x++) {
            dq[qb + x] += d.scale * ds * k[kb + x]!;
            dk[kb + x] += d.scale * ds * q[qb + x]!;
          }
        }
      }
    }
  }
}
