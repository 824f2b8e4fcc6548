// RMSNorm forward/backward launchers. Same signature as ref/rmsnorm.ts: outputs, inputs, then dimensions.
// Buffers are f32. Forward saves rstd [rows] for backward.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import fwdSrc from '../../../shaders/rmsnorm.wgsl?raw';
import bwdSrc from '../../../shaders/rmsnorm_backward.wgsl?raw';
import bwdWSrc from '../../../shaders/rmsnorm_backward_weight.wgsl?raw';

function params(rows: number, dim: number, eps: number, accumulate = false): ArrayBuffer {
  const b = new ArrayBuffer(16);
  const u = new Uint32Array(b);
  u[0] = rows;
  u[1] = dim;
  new Float32Array(b)[2] = eps;
  u[3] = accumulate ? 1 : 0;
  return b;
}

/** y [rows, dim], rstd [rows] <- x [rows, dim], w [dim] */
export function rmsnormForward(enc: Encoder, y: GPUBuffer, rstd: GPUBuffer, x: GPUBuffer, w: GPUBuffer, rows: number, dim: number, eps: number): void {
  const k = kernel(enc.gpu, { name: 'rmsnorm.forward', code: fwdSrc, entryPoint: 'forward' });
  k.dispatch(enc, [x, w, y, rstd], [rows], params(rows, dim, eps), { flops: 4 * rows * dim, bytes: 8 * rows * dim + 4 * dim + 4 * rows });
}

/** dx [rows, dim] = d/dx; (optionally) dw [dim] (+)= d/dw. */
export function rmsnormBackward(
  enc: Encoder,
  dx: GPUBuffer,
  dw: GPUBuffer | null,
  dy: GPUBuffer,
  x: GPUBuffer,
  w: GPUBuffer,
  rstd: GPUBuffer,
  rows: number,
  dim: number,
  accumulateDw = true,
): void {
  const k = kernel(enc.gpu, { name: 'rmsnorm.backward_input', code: bwdSrc, entryPoint: 'backward_input' });
  k.dispatch(enc, [x, w, rstd, dy, dx], [rows], params(rows, dim, 0), { flops: 7 * rows * dim, bytes: 12 * rows * dim + 4 * dim + 4 * rows });
  if (dw) {
    const kw = kernel(enc.gpu, { name: 'rmsnorm.backward_weight', code: bwdWSrc, entryPoint: 'backward_weight' });
    kw.dispatch(enc, [x, rstd, dy, dw], [Math.ceil(dim / 64)], params(rows, dim, 0, accumulateDw), { flops: 3 * rows * dim, bytes: 8 * rows * dim + 4 * rows + 4 * dim * (accumulateDw ? 2 : 1) });
  }
}
