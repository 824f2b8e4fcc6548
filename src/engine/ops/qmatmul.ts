// Fused 4-bit dequantize-matmul launchers: y = x · Ŵ^T and dx (+)= dy · Ŵ, Ŵ [N, K] never written to memory.
// Same signatures as ref/qmatmul.ts; x, y, dx, dy f32; Ŵ = rows rowOffset.. of a quantized tensor (quant/FORMAT.md).

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { quantLayout, type QmatmulDims } from '../quant/format.ts';
import src from '../../../shaders/qmatmul.wgsl?raw';

/** Tile sizes (override constants): TM x TC outputs per workgroup of (TM/4)(TC/4) threads, TR deep; 16 KiB of workgroup memory. */
const TILE = { TM: 64, TC: 64, TR: 32 };

/** Bytes of Ŵ: nibbles and (scale, zero) words. */
function qBytes(d: QmatmulDims): number {
  const L = quantLayout(d.N, d.K, d.G);
  return 4 * (L.qWords + L.groups);
}

export function qmatmulParams(d: QmatmulDims): ArrayBuffer {
  const L = quantLayout(d.N, d.K, d.G);
  if (!Number.isInteger(d.M) || d.M < 0) throw new RangeError(`qmatmul: M = ${d.M} is not a non-negative integer`);
  return new Uint32Array([d.M, d.N, d.K, d.G, L.groupsPerRow, d.rowOffset ?? 0, d.xOffset ?? 0, d.yOffset ?? 0, d.accumulate ? 1 : 0]).buffer;
}

/** y [M, N] = x [M, K] · Ŵ^T; q [rowOffset + N, K/8], sz [rowOffset + N, ceil(K/G)] */
export function qmatmulForward(enc: Encoder, y: GPUBuffer, x: GPUBuffer, q: GPUBuffer, sz: GPUBuffer, d: QmatmulDims): void {
  const params = qmatmulParams({ ...d, accumulate: false });
  const k = kernel(enc.gpu, { name: 'qmatmul.forward', code: src, entryPoint: 'forward', constants: TILE });
  k.dispatch(enc, [x, q, sz, y], [Math.ceil(d.N / TILE.TC), Math.ceil(d.M / TILE.TM)], params, { flops: 2 * d.M * d.N * d.K, bytes: 4 * d.M * d.K + qBytes(d) + 4 * d.M * d.N });
}

/** dx [M, K] = (or += with d.accumulate) dy [M, N] · Ŵ */
export function qmatmulBackwardInput(enc: Encoder, dx: GPUBuffer, dy: GPUBuffer, q: GPUBuffer, sz: GPUBuffer, d: QmatmulDims): void {
  const params = qmatmulParams(d);
  const k = kernel(enc.gpu, { name: 'qmatmul.backward_input', code: src, entryPoint: 'backward_input', constants: TILE });
  const bytes = 4 * d.M * d.N + qBytes(d) + 4 * d.M * d.K * (d.accumulate ? 2 : 1);
  k.dispatch(enc, [dy, q, sz, dx], [Math.ceil(d.K / TILE.TC), Math.ceil(d.M / TILE.TM)], params, { flops: 2 * d.M * d.N * d.K, bytes });
}
