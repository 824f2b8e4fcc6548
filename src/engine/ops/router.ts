// MoE router launchers: logits = x·Wr^T; probs, top-K choice and weights; backward to dLogits, dWr (+=) and dx (+=).
// Same signatures as ref/router.ts. Router weights and all router math are f32; the selection is non-differentiable.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import fwdSrc from '../../../shaders/router.wgsl?raw';
import bwdSrc from '../../../shaders/router_backward.wgsl?raw';
import mmSrc from '../../../shaders/router_matmul.wgsl?raw';

export interface RouterDims {
  /** tokens */
  T: number;
  /** routed experts */
  E: number;
  /** experts chosen per token */
  K: number;
  scoring: 'softmax' | 'sigmoid';
  /** Group-limited choice (DeepSeek): E experts in nGroup groups (of >= 2), keep the topkGroup best. 1/1 = off. */
  nGroup: number;
  topkGroup: number;
  /** Renormalize the chosen probs to sum 1 (Mixtral: true). */
  normTopkProb: boolean;
  /** Multiplier on the final weights (DeepSeek 2.5, else 1). */
  routedScalingFactor: number;
}

const WG = 64;

export function routerParams(d: RouterDims, hasBias: boolean): ArrayBuffer {
  const b = new ArrayBuffer(36);
  const u = new Uint32Array(b);
  u.set([d.T, d.E, d.K, d.scoring === 'sigmoid' ? 1 : 0, d.nGroup, d.topkGroup, d.normTopkProb ? 1 : 0, hasBias ? 1 : 0]);
  new Float32Array(b)[8] = d.routedScalingFactor;
  return b;
}

function check(d: RouterDims): void {
  if (d.nGroup > 1 && (d.E % d.nGroup !== 0 || d.E / d.nGroup < 2 || d.nGroup > 32 || d.topkGroup < 1 || d.topkGroup > d.nGroup))
    throw new Error(`router: bad grouping E=${d.E} nGroup=${d.nGroup} topkGroup=${d.topkGroup}`);
  if (d.K < 1 || d.K > d.E) throw new Error(`router: K=${d.K} with E=${d.E}`);
}

// ---------------------------------------------------------------------------------------------------------------
// selection

/** topIdx [T, K] u32 (best first), topW [T, K], probs [T, E] <- logits [T, E], bias [E] | null (choice only). */
export function routerForward(enc: Encoder, topIdx: GPUBuffer, topW: GPUBuffer, probs: GPUBuffer, logits: GPUBuffer, bias: GPUBuffer | null, d: RouterDims): void {
  check(d);
  const k = kernel(enc.gpu, { name: 'router.forward', code: fwdSrc, entryPoint: 'forward', constants: { WG } });
  // logits read, probs and the top-K (index, weight) written; softmax/sigmoid and the choice ~6 FLOPs a logit
  const cost = { flops: 6 * d.T * d.E, bytes: 8 * d.T * d.E + 8 * d.T * d.K + (bias ? 4 * d.E : 0) };
  k.dispatch(enc, [logits, bias ?? logits, topIdx, topW, probs], [Math.ceil(d.T / WG)], routerParams(d, bias !== null), cost);
}

/** dLogits [T, E] (=) <- dTopW [T, K], topIdx [T, K], probs [T, E] (saved by forward). */
export function routerBackward(enc: Encoder, dLogits: GPUBuffer, dTopW: GPUBuffer, topIdx: GPUBuffer, probs: GPUBuffer, d: RouterDims): void {
  check(d);
  const k = kernel(enc.gpu, { name: 'router.backward', code: bwdSrc, entryPoint: 'backward', constants: { WG } });
  k.dispatch(enc, [dTopW, topIdx, probs, dLogits], [Math.ceil(d.T / WG)], routerParams(d, false), { flops: 4 * d.T * d.E, bytes: 8 * d.T * d.E + 8 * d.T * d.K });
}

// ---------------------------------------------------------------------------------------------------------------
// projection (a strided tiled matmul)

const TS = 16;

interface Strides {
  M: number;
  N: number;
  K: number;
  sAm: number;
  sAk: number;
  sBk: number;
  sBn: number;
}

export function routerMatmulParams(s: Strides, accumulate: boolean): Uint32Array {
  return Uint32Array.from([s.M, s.N, s.K, s.sAm, s.sAk, s.sBk, s.sBn, accumulate ? 1 : 0]);
}

function matmul(enc: Encoder, c: GPUBuffer, a: GPUBuffer, b: GPUBuffer, s: Strides, accumulate: boolean): void {
  const k = kernel(enc.gpu, { name: 'router.matmul', code: mmSrc, entryPoint: 'matmul', constants: { TS } });
  const bytes = 4 * (s.M * s.K + s.K * s.N + s.M * s.N * (accumulate ? 2 : 1));
  k.dispatch(enc, [a, b, c], [Math.ceil(s.N / TS), Math.ceil(s.M / TS)], routerMatmulParams(s, accumulate), { flops: 2 * s.M * s.N * s.K, bytes });
}

/** logits [T, E] = x [T, H] · Wr [E, H]^T */
export function routerLogits(enc: Encoder, logits: GPUBuffer, x: GPUBuffer, wr: GPUBuffer, T: number, H: number, E: number): void {
  matmul(enc, logits, x, wr, { M: T, N: E, K: H, sAm: H, sAk: 1, sBk: 1, sBn: H }, false);
}

/**
 * dWr [E, H] += dLogits^T · x;  dx [T, H] (+)= dLogits · Wr (accumulateDx: the experts' backward assigns dx first).
 * Either output may be null.
 */
export function routerLogitsBackward(
  enc: Encoder,
  dWr: GPUBuffer | null,
  dx: GPUBuffer | null,
  dLogits: GPUBuffer,
  x: GPUBuffer,
  wr: GPUBuffer,
  T: number,
  H: number,
  E: number,
  accumulateDx = true,
): void {
  if (dWr) matmul(enc, dWr, dLogits, x, { M: E, N: H, K: T, sAm: 1, sAk: E, sBk: H, sBn: 1 }, true);
  if (dx) matmul(enc, dx, dLogits, wr, { M: T, N: H, K: E, sAm: E, sAk: 1, sBk: H, sBn: 1 }, accumulateDx);
}
