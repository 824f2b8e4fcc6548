// 4-bit dequantization launcher (quant/FORMAT.md): f32 weights out of the nibbles and f16 (scale, zero) pairs.
// Same signature as ref/dequant.ts. One thread per u32 of nibbles.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { quantLayout, type DequantDims } from '../quant/format.ts';
import { grid2d } from '../quant/dispatch.ts';
import src from '../../../shaders/dequant.wgsl?raw';
import srcAt from '../../../shaders/dequant_at.wgsl?raw';

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

/** Rows and row length of a 4-bit matrix and its group size: the part of QuantDims dequantizeAt reads. */
export interface DequantAtDims { rows: number; K: number; G: number }

/** out [n] f32 <- element idx[j] (= row · K + k, j < n) of the [rows, K] matrix q [rows, K/8], sz [rows, ceil(K/G)] */
export function dequantizeAt(enc: Encoder, out: Binding, q: Binding, sz: Binding, idx: Binding, n: number, dims: DequantAtDims): void {
  if (n === 0) return;
  const L = quantLayout(dims.rows, dims.K, dims.G);
  const k = kernel(enc.gpu, { name: 'dequant_at', code: srcAt, entryPoint: 'main', constants: { WG } });
  // per element: an index, a code word and a (scale, zero) word read, one f32 written
  const cost = { flops: 2 * n, bytes: 16 * n };
  k.dispatch(enc, [q, sz, idx, out], grid2d(n, WG, enc.gpu.device.limits.maxComputeWorkgroupsPerDimension), new Uint32Array([n, L.K, L.G, L.groupsPerRow]).buffer, cost);
}
