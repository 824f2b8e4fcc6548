// CPU float64 oracle of attention over a KV cache (tests only). Same signature and layouts as ops/attention_decode.ts.

import type { DecodeAttentionDims } from '../ops/attention_decode.ts';

type Arr = ArrayLike<number>;

/** o [T, NH, dV] <- q [T, NH, dQK] over the cached k [P, NKV, dQK], v [P, NKV, dV] (positions 0..pos0+T-1). */
export function decodeAttention(o: Float64Array, q: Arr, k: Arr, v: Arr, d: DecodeAttentionDims): void {
  const { tokens: T, pos0, nHeads: NH, nKvHeads: NKV, dQK, dV } = d;
  for (let i = 0; i < T; i++) {
    const pos = pos0 + i;
    const j0 = d.window === null ? 0 : Math.max(0, pos - d.window + 1);
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / (NH / NKV));
      const s = new Float64Array(pos + 1 - j0);
      for (let j = j0; j <= pos; j++) {
        let dot = 0;
        for (let x = 0; x < dQK; x++) dot += q[(i * NH + h) * dQK + x]! * k[(j * NKV + g) * dQK + x]!;
        s[j - j0] = d.scale * dot;
      }
      const m = Math.max(...s);
      let l = 0;
      for (const x of s) l += Math.exp(x - m);
      const ob = (i * NH + h) * dV;
      o.fill(0, ob, ob + dV);
      for (let j = j0; j <= pos; j++) {
        const pj = Math.exp(s[j - j0]! - m) / l;
        for (let x = 0; x < dV; x++) o[ob + x] += pj * v[(j * NKV + g) * dV + x]!;
      }
    }
  }
}
