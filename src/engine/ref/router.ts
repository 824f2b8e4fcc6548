// CPU float64 oracle of the MoE router (tests only). Same signatures as ops/router.ts.
// Forward: logits -> probs, top-K choice (group-limited, bias for choice only), weights; backward: dTopW -> dLogits, dWr, dx.

import type { RouterDims } from '../ops/router.ts';

// ---------------------------------------------------------------------------------------------------------------
// forward

/** probs of one token (softmax or sigmoid) written to p [E]. */
function probsRow(p: Float64Array, logits: ArrayLike<number>, base: number, E: number, sigmoid: boolean): void {
  if (sigmoid) {
    for (let e = 0; e < E; e++) p[e] = 1 / (1 + Math.exp(-logits[base + e]!));
    return;
  }
  let mx = -Infinity;
  for (let e = 0; e < E; e++) mx = Math.max(mx, logits[base + e]!);
  let s = 0;
  for (let e = 0; e < E; e++) s += (p[e] = Math.exp(logits[base + e]! - mx));
  for (let e = 0; e < E; e++) p[e]! /= s;
}

/** Indices of the n best entries of `score` (higher first, ties -> lower index). */
function bestOf(score: ArrayLike<number>, n: number): number[] {
  const order = Array.from({ length: score.length }, (_, i) => i);
  order.sort((a, b) => (score[b]! - score[a]!) || a - b);
  return order.slice(0, n);
}

/**
 * topIdx [T, K] (expert ids, best first), topW [T, K], probs [T, E] <- logits [T, E], bias [E] | null.
 * Choice score = prob (+ bias); with nGroup > 1, experts outside the topkGroup best groups (group score = sum of
 * its two best choice scores) get choice score 0 (as transformers does). Weights = probs of the chosen experts,
 * divided by their sum (+1e-20 for sigmoid) when normTopkProb, times routedScalingFactor.
 */
export function routerForward(
  topIdx: Uint32Array,
  topW: Float64Array,
  probs: Float64Array,
  logits: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  d: RouterDims,
): void {
  const { T, E, K } = d;
  const sigmoid = d.scoring === 'sigmoid';
  const p = new Float64Array(E);
  const c = new Float64Array(E);
  for (let t = 0; t < T; t++) {
    probsRow(p, logits, t * E, E, sigmoid);
    probs.set(p, t * E);
    for (let e = 0; e < E; e++) c[e] = p[e]! + (bias ? bias[e]! : 0);
    if (d.nGroup > 1) {
      const gs = E / d.nGroup;
      const groupScore = Array.from({ length: d.nGroup }, (_, g) => {
        const [a, b] = bestOf(c.subarray(g * gs, (g + 1) * gs), 2);
        return c[g * gs + a!]! + c[g * gs + b!]!;
      });
      const keep = new Set(bestOf(groupScore, d.topkGroup));
      for (let e = 0; e < E; e++) if (!keep.has(Math.floor(e / gs))) c[e] = 0;
    }
    const chosen = bestOf(c, K);
    let sum = 0;
    for (const e of chosen) sum += p[e]!;
    const denom = d.normTopkProb ? sum + (sigmoid ? 1e-20 : 0) : 1;
    chosen.forEach((e, k) => {
      topIdx[t * K + k] = e;
      topW[t * K + k] = (p[e]! / denom) * d.routedScalingFactor;
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// backward

/** dLogits [T, E] = d/dlogits of sum(dTopW * topW), the selection topIdx [T, K] held fixed; probs [T, E] from forward. */
export function routerBackward(dLogits: Float64Array, dTopW: ArrayLike<number>, topIdx: ArrayLike<number>, probs: ArrayLike<number>, d: RouterDims): void {
  const { T, E, K } = d;
  const s = d.routedScalingFactor;
  const sigmoid = d.scoring === 'sigmoid';
  const dp = new Float64Array(E);
  for (let t = 0; t < T; t++) {
    dp.fill(0);
    let sum = 0;
    let dot = 0;
    for (let k = 0; k < K; k++) {
      const pk = probs[t * E + topIdx[t * K + k]!]!;
      sum += pk;
      dot += dTopW[t * K + k]! * pk;
    }
    const D = sum + (sigmoid ? 1e-20 : 0);
    for (let k = 0; k < K; k++) {
      const u = dTopW[t * K + k]!;
      dp[topIdx[t * K + k]!]! += d.normTopkProb ? s * (u / D - dot / (D * D)) : s * u;
    }
    let pdp = 0;
    for (let e = 0; e < E; e++) pdp += dp[e]! * probs[t * E + e]!;
    for (let e = 0; e < E; e++) {
      const pe = probs[t * E + e]!;
      dLogits[t * E + e] = sigmoid ? dp[e]! * pe * (1 - pe) : pe * (dp[e]! - pdp);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// router projection

/** logits [T, E] = x [T, H] · Wr [E, H]^T */
export function routerLogits(logits: Float64Array, x: ArrayLike<number>, wr: ArrayLike<number>, T: number, H: number, E: number): void {
  for (let t = 0; t < T; t++)
    for (let e = 0; e < E; e++) {
      let a = 0;
      for (let h = 0; h < H; h++) a += x[t * H + h]! * wr[e * H + h]!;
      logits[t * E + e] = a;
    }
}

/** dWr [E, H] += dLogits^T · x;  dx [T, H] (+)= dLogits · Wr (dx may be null). */
export function routerLogitsBackward(
  dWr: Float64Array | null,
  dx: Float64Array | null,
  dLogits: ArrayLike<number>,
  x: ArrayLike<number>,
  wr: ArrayLike<number>,
  T: number,
  H: number,
  E: number,
  accumulateDx = true,
): void {
  if (dx && !accumulateDx) dx.fill(0);
  for (let t = 0; t < T; t++)
    for (let e = 0; e < E; e++) {
      const g = dLogits[t * E + e]!;
      for (let h = 0; h < H; h++) {
        if (dWr) dWr[e * H + h] += g * x[t * H + h]!;
        if (dx) dx[t * H + h] += g * wr[e * H + h]!;
      }
    }
}
