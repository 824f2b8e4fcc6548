// CPU float64 oracle of lm_head + cross-entropy (tests only): full [T, V] logits, no chunking. Same signatures as ops/xent.ts
// minus the GPU scratch buffer (dh a Float64Array); W given as plain numbers (bf16 already decoded), wOffset indexing the same array.

import { XENT_IGNORE, type LogitsDims } from '../ops/xent.ts';

type Num = ArrayLike<number>;

export interface XentGrad {
  dh: Float64Array;
  scale: number;
  accumulate?: boolean;
}

/** logits [T, V] = h [T, H] . W [V, H]^T */
export function logitsForward(logits: Float64Array, h: Num, w: Num, d: LogitsDims): void {
  const { T, H, V } = d;
  const wo = d.wOffset ?? 0;
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let k = 0; k < H; k++) s += h[t * H + k]! * w[wo + v * H + k]!;
      logits[t * V + v] = s;
    }
  }
}

/** loss [T] = lse - logit[tgt] (0 where ignored, NaN where tgt >= V), lse [T] */
export function xentForward(loss: Float64Array, lse: Float64Array, h: Num, w: Num, tgt: ArrayLike<number>, d: LogitsDims): void {
  const { T, V } = d;
  const logits = new Float64Array(T * V);
  logitsForward(logits, h, w, d);
  for (let t = 0; t < T; t++) {
    const row = logits.subarray(t * V, (t + 1) * V);
    const m = row.reduce((a, v) => Math.max(a, v), -Infinity);
    const l = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    lse[t] = l;
    const y = tgt[t]!;
    loss[t] = y === XENT_IGNORE ? 0 : y < V ? l - row[y]! : NaN;
  }
}

/** dh [T, H] (=|+=) (softmax - onehot(tgt)) * scale . W, from the forward's lse */
export function xentBackward(dh: Float64Array, h: Num, w: Num, tgt: ArrayLike<number>, lse: Num, d: LogitsDims & Omit<XentGrad, 'dh'>): void {
  const { T, H, V } = d;
  const wo = d.wOffset ?? 0;
  const logits = new Float64Array(T * V);
  logitsForward(logits, h, w, d);
  for (let t = 0; t < T; t++) {
    const y = tgt[t]!;
    const row = new Float64Array(H);
    if (y !== XENT_IGNORE) {
      for (let v = 0; v < V; v++) {
        const g = y < V ? (Math.exp(logits[t * V + v]! - lse[t]!) - (v === y ? 1 : 0)) * d.scale : NaN;
        for (let k = 0; k < H; k++) row[k] += g * w[wo + v * H + k]!;
      }
    }
    for (let k = 0; k < H; k++) dh[t * H + k] = (d.accumulate ? dh[t * H + k]! : 0) + row[k]!;
  }
}

/** ops/xent.ts xentHead: loss and lse, and with `grad` dh (= xentBackward from that lse). */
export function xentHead(loss: Float64Array, lse: Float64Array, h: Num, w: Num, tgt: ArrayLike<number>, d: LogitsDims, grad: XentGrad | null = null): void {
  xentForward(loss, lse, h, w, tgt, d);
  if (grad) xentBackward(grad.dh, h, w, tgt, lse, { ...d, scale: grad.scale, accumulate: grad.accumulate });
}
