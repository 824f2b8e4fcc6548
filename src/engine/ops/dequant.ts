// 4-bit dequantization launcher (quant/FORMAT.md): f32 weights out of the nibbles and f16 (scale, zero) pairs.
// Same signature as ref/dequant.ts. One thread per u32 of nibbles.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { quantLayout, type DequantDims } from '../quant/format.ts';
import { grid2d } from '../quant/dispatch.ts';
import src from '../../../shaders/dequant.wgsl?raw';

/** A whole buffer or a range of one (e.g. the codes or the table half of a layer's 4-bit buffer). */
type Binding = GPUBuffer | GPUBufferBinding;

const WG = 64;

export function dequantParams(dims: DequantDims): ArrayBuffer {
  const L = quantLayout(dims.rows, dims.K, dims.G);
  return new Uint32Array([L.rows, L.K, L.G, L.groupsPerRow, dims.rowOffset ?? 0, dims.outOffset ?? 0, 0, 0]).buffer;
}

/** out [rows, K] f32 (at outOffset) <- q [rowOffset + rows, K/8], sz [rowOffset + rows, ceil(K/G)] */
export function dequantize(enc: Encoder, out: Binding, q: Binding, sz: Binding, dims: DequantDims): void {
  const L = quantLayout(dims.rows, dims.K, dims.G);
  const k = kernel(enc.gpu, { name: 'dequant', code: src, entryPoint: 'main', constants: { WG } });
  // codes and (scale, zero) words read, f32 written; (q - zero) * scale per weight
  const cost = { flops: 2 * L.rows * L.K, bytes: 4 * (L.qWords + L.groups) + 4 * L.rows * L.K };
  k.dispatch(enc, [q, sz, out], grid2d(L.qWords, WG, enc.gpu.device.limits.maxComputeWorkgroupsPerDimension), dequantParams(dims), cost);
}
