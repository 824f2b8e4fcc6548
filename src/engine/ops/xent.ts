// Fused lm_head + cross-entropy launchers, the vocabulary in chunks of VC so [T, V] logits never exist (only [T, VC] in `work`).
// Same signatures as ref/xent.ts plus a trailing `work` scratch buffer (xentWorkElements). Targets u32, XENT_IGNORE = no loss.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { flatGrid } from './elementwise.ts';
import { matmulBackwardInput, matmulForward, type WDtype } from './matmul.ts';
import fwdSrc from '../../../shaders/xent.wgsl?raw';
import bwdSrc from '../../../shaders/xent_backward.wgsl?raw';

/** Target value that contributes no loss and no gradient (the last position, label -100). */
export const XENT_IGNORE = 0xffffffff;

export interface LogitsDims {
  T: number; // tokens
  H: number; // hidden
  V: number; // vocabulary
  wDtype: WDtype;
  /** Element offset of the lm_head weight W [V, H] inside its buffer. */
  wOffset?: number;
}

export interface XentDims extends LogitsDims {
  /** Vocabulary chunk (columns of logits held at once), e.g. 8192. */
  VC: number;
}

export interface XentBackwardDims extends XentDims {
  /** dlogits multiplier, usually 1 / (number of non-ignored targets). */
  scale: number;
  /** dh += instead of =. Default false. */
  accumulate?: boolean;
}

const WG = 256;

/** f32 elements `work` must hold: the logits chunk [T, VC] then the running (max, sum) [T, 2]. */
export function xentWorkElements(d: XentDims): number {
  return d.T * Math.min(d.VC, d.V) + 2 * d.T;
}

/** The `params` uniform of shaders/xent.wgsl. */
export function xentParams(rows: number, cols: number, col0: number, vocab: number, statsOff: number, first: boolean): ArrayBuffer {
  const b = new ArrayBuffer(24);
  new Uint32Array(b).set([rows, cols, col0, vocab, statsOff, first ? 1 : 0]);
  return b;
}

/** The `params` uniform of shaders/xent_backward.wgsl. */
export function xentBackwardParams(rows: number, cols: number, col0: number, vocab: number, scale: number): ArrayBuffer {
  const b = new ArrayBuffer(20);
  new Uint32Array(b, 0, 4).set([rows, cols, col0, vocab]);
  new Float32Array(b, 16, 1)[0] = scale;
  return b;
}

function checkWork(work: GPUBuffer, elements: number): void {
  if (work.size < elements * 4) throw new RangeError(`xent: work holds ${work.size} bytes, needs ${elements * 4}`);
}

/** For each chunk [c0, c0 + cols): logits [T, cols] = h W[c0 : c0 + cols]^T into work, then `after`. */
function eachChunk(enc: Encoder, work: GPUBuffer, h: GPUBuffer, w: GPUBuffer, d: XentDims, after: (c0: number, cols: number) => void): void {
  const vc = Math.min(d.VC, d.V);
  for (let c0 = 0; c0 < d.V; c0 += vc) {
    const cols = Math.min(vc, d.V - c0);
    matmulForward(enc, work, h, w, null, { M: d.T, N: cols, K: d.H, wDtype: d.wDtype, wOffset: (d.wOffset ?? 0) + c0 * d.H });
    after(c0, cols);
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers

/** logits [T, V] = h [T, H] . W [V, H]^T   (small vocabularies, parity checks) */
export function logitsForward(enc: Encoder, logits: GPUBuffer, h: GPUBuffer, w: GPUBuffer, d: LogitsDims): void {
  matmulForward(enc, logits, h, w, null, { M: d.T, N: d.V, K: d.H, wDtype: d.wDtype, wOffset: d.wOffset });
}

/** loss [T] = lse - logit[tgt] (0 where ignored, NaN where tgt >= V), lse [T] <- h [T, H], W [V, H], tgt [T] u32 */
export function xentForward(enc: Encoder, loss: GPUBuffer, lse: GPUBuffer, h: GPUBuffer, w: GPUBuffer, tgt: GPUBuffer, d: XentDims, work: GPUBuffer): void {
  checkWork(work, xentWorkElements(d));
  const statsOff = d.T * Math.min(d.VC, d.V);
  const stats = kernel(enc.gpu, { name: 'xent.chunk_stats', code: fwdSrc, entryPoint: 'chunk_stats', constants: { WG } });
  eachChunk(enc, work, h, w, d, (c0, cols) => {
    // the chunk's logits read; running max and sum (read and) written: max, exp, add ~4 FLOPs a logit
    stats.dispatch(enc, [tgt, work, loss], flatGrid(d.T), xentParams(d.T, cols, c0, d.V, statsOff, c0 === 0), { flops: 4 * d.T * cols, bytes: 4 * d.T * cols + 24 * d.T });
  });
  const fin = kernel(enc.gpu, { name: 'xent.finalize', code: fwdSrc, entryPoint: 'finalize', constants: { WG } });
  fin.dispatch(enc, [tgt, work, lse, loss], flatGrid(Math.ceil(d.T / WG)), xentParams(d.T, 0, 0, d.V, statsOff, false), { flops: 4 * d.T, bytes: 24 * d.T });
}

/** dh [T, H] (=|+=) sum over chunks of (softmax - onehot(tgt)) * scale . W_chunk, from the forward's lse [T] (logits recomputed) */
export function xentBackward(
  enc: Encoder,
  dh: GPUBuffer,
  h: GPUBuffer,
  w: GPUBuffer,
  tgt: GPUBuffer,
  lse: GPUBuffer,
  d: XentBackwardDims,
  work: GPUBuffer,
): void {
  checkWork(work, d.T * Math.min(d.VC, d.V));
  const grad = kernel(enc.gpu, { name: 'xent.chunk_grad', code: bwdSrc, entryPoint: 'chunk_grad', constants: { WG } });
  eachChunk(enc, work, h, w, d, (c0, cols) => {
    // logits read, (softmax - onehot) * scale written in place: exp, sub, mul ~4 FLOPs a logit
    grad.dispatch(enc, [tgt, lse, work], flatGrid(Math.ceil((d.T * cols) / WG)), xentBackwardParams(d.T, cols, c0, d.V, d.scale), { flops: 4 * d.T * cols, bytes: 8 * d.T * cols + 8 * d.T });
    matmulBackwardInput(enc, dh, work, w, {
      M: d.T, N: cols, K: d.H, wDtype: d.wDtype, wOffset: (d.wOffset ?? 0) + c0 * d.H, accumulate: c0 > 0 || (d.accumulate ?? false),
    });
  });
}
