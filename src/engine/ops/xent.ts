// Fused lm_head + cross-entropy launchers, the tokens in chunks of TC rows so [T, V] logits never exist (only [TC, V] in
// `work`): each chunk's logits are computed once and their loss taken; for training, each row's shift (lse - log scale)
// lets the dh GEMM load dlogits' softmax part as exp(logit - shift) straight from the logits, and the one-hot part is
// subtracted after it. Same signatures as ref/xent.ts plus the `work` scratch. Targets u32, XENT_IGNORE = no loss.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { flatGrid } from './elementwise.ts';
import { matmulBackwardInput, matmulForward, type WDtype } from './matmul.ts';
import src from '../../../shaders/xent.wgsl?raw';
import onehotSrc from '../../../shaders/xent_onehot.wgsl?raw';

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
  /** Token chunk (rows of logits held at once in `work`), e.g. xentTokenChunk(T, V). */
  TC: number;
}

/** The training head's gradient: dh [T, H] (=|+=) dlogits . W with dlogits = (softmax - onehot(tgt)) * scale. */
export interface XentGrad {
  dh: GPUBuffer;
  /** dlogits multiplier, usually 1 / (number of non-ignored targets). */
  scale: number;
  /** dh += instead of =. Default false. */
  accumulate?: boolean;
}

const WG = 256;
/**
 * f32 logits one token chunk holds by default (64 MiB), within the memory plans of the built-in presets (twice this left
 * the Qwen3-30B-A3B 12 GiB preset under 1 GiB of headroom). A run with room for more passes its own chunk (plan/head.ts):
 * each chunk reads all of W [V, H] twice.
 */
const XENT_BUDGET = 1 << 24;
/** Bytes of the largest binding the logits may take (2 GiB), below the adapter's maxStorageBufferBindingSize too. */
const MAX_BINDING = 2 ** 31;

/** The default most rows of logits [rows, V] a chunk holds: 110 at Qwen3's 151,936 (~67 MB). */
export function xentDefaultRows(V: number): number {
  return Math.max(1, Math.floor(XENT_BUDGET / V));
}

/** The most rows of logits [rows, V] and their shifts one binding of at most min(2 GiB, maxBinding) bytes holds. */
export function xentMaxRows(V: number, maxBinding = MAX_BINDING): number {
  return Math.max(1, Math.floor(Math.min(MAX_BINDING, maxBinding) / (4 * (V + 1))));
}

/**
 * Tokens per chunk for T tokens, chunks of at most `rows` (default xentDefaultRows): the fewest chunks, of equal size
 * (1024 × 151,936 by default: 10 of 103).
 */
export function xentTokenChunk(T: number, V: number, rows = xentDefaultRows(V)): number {
  return Math.ceil(T / Math.ceil(T / Math.min(rows, xentMaxRows(V))));
}

/** f32 elements `work` must hold for any T' <= T tokens in chunks of at most `rows`: logits [n, V] and shifts [n], n = min(T, rows). */
export function xentWorkElements(T: number, V: number, rows = xentDefaultRows(V)): number {
  return Math.min(T, rows, xentMaxRows(V)) * (V + 1);
}

/** The `params` uniform of shaders/xent.wgsl. */
export function xentParams(rows: number, vocab: number, row0: number, grad: boolean, scale: number): ArrayBuffer {
  const b = new ArrayBuffer(20);
  new Uint32Array(b, 0, 4).set([rows, vocab, row0, grad ? 1 : 0]);
  new Float32Array(b, 16, 1)[0] = scale;
  return b;
}

/** The `params` uniform of shaders/xent_onehot.wgsl. */
function onehotParams(rows: number, hidden: number, row0: number, vocab: number, wOff: number, scale: number): ArrayBuffer {
  const b = new ArrayBuffer(24);
  new Uint32Array(b, 0, 5).set([rows, hidden, row0, vocab, wOff]);
  new Float32Array(b, 20, 1)[0] = scale;
  return b;
}

// ---------------------------------------------------------------------------------------------
// Launchers

/** logits [T, V] = h [T, H] . W [V, H]^T   (small vocabularies, parity checks) */
export function logitsForward(enc: Encoder, logits: GPUBuffer, h: GPUBuffer, w: GPUBuffer, d: LogitsDims): void {
  matmulForward(enc, logits, h, w, null, { M: d.T, N: d.V, K: d.H, wDtype: d.wDtype, wOffset: d.wOffset });
}

/**
 * loss [T] = lse - logit[tgt] (0 where ignored, NaN where tgt >= V), lse [T] <- h [T, H], W [V, H], tgt [T] u32; with
 * `grad`, also dh (see XentGrad; ignored rows 0, rows with tgt >= V NaN) from the same logits.
 */
export function xentHead(
  enc: Encoder,
  loss: GPUBuffer,
  lse: GPUBuffer,
  h: GPUBuffer,
  w: GPUBuffer,
  tgt: GPUBuffer,
  d: XentDims,
  work: GPUBuffer,
  grad: XentGrad | null = null,
): void {
  const { T, H, V } = d;
  if (!(d.TC >= 1)) throw new RangeError(`xent: token chunk ${d.TC} must be at least 1`);
  const need = Math.min(d.TC, T) * (V + 1) * 4;
  const most = xentMaxRows(V, enc.gpu.device.limits.maxStorageBufferBindingSize);
  if (Math.min(d.TC, T) > most) throw new RangeError(`xent: a chunk of ${Math.min(d.TC, T)} rows of ${V} logits exceeds the largest binding (${most} rows)`);
  if (work.size < need) throw new RangeError(`xent: work holds ${work.size} bytes, needs ${need} (${Math.min(d.TC, T)} rows of ${V} logits and their shifts)`);
  if (grad && !(Number.isFinite(grad.scale) && grad.scale >= 0)) throw new RangeError(`xent: dlogits scale ${grad.scale} must be a finite number >= 0`);
  const rows = kernel(enc.gpu, { name: 'xent.rows', code: src, entryPoint: 'rows', constants: { WG } });
  const onehot = kernel(enc.gpu, { name: 'xent.onehot', code: onehotSrc, entryPoint: 'onehot', constants: { WG, W_BF16: d.wDtype === 'bf16' ? 1 : 0 } });
  const w0 = d.wOffset ?? 0;
  for (let r0 = 0; r0 < T; r0 += d.TC) {
    const n = Math.min(d.TC, T - r0);
    matmulForward(enc, work, h, w, null, { M: n, N: V, K: H, wDtype: d.wDtype, wOffset: w0, xOffset: r0 * H });
    // running max and exp-sum ~4 FLOPs a logit; the logits read once, loss and lse (and the shift) written
    const cost = { flops: 4 * n * V, bytes: 4 * n * V + (grad ? 16 : 12) * n };
    rows.dispatch(enc, [tgt, work, lse, loss], flatGrid(n), xentParams(n, V, r0, grad !== null, grad?.scale ?? 0), cost);
    if (grad) {
      // dh (=|+=) softmax·scale . W (exp of the logits less their shift, taken as the GEMM loads them), then -= scale·W[tgt]
      const mm = { M: n, N: V, K: H, wDtype: d.wDtype, wOffset: w0, xOffset: r0 * H, accumulate: grad.accumulate ?? false };
      matmulBackwardInput(enc, grad.dh, work, w, mm, { buf: work, offset: n * V });
      const wb = d.wDtype === 'bf16' ? 2 : 4;
      onehot.dispatch(enc, [tgt, w, grad.dh], flatGrid(n), onehotParams(n, H, r0, V, w0, grad.scale), { flops: 2 * n * H, bytes: n * H * (wb + 8) + 4 * n });
    }
  }
}
