// 4-bit quantizer launchers (HQQ or min-max) and the per-group squared error. Same signatures as ref/quantize.ts.
// Format in quant/FORMAT.md; the weights are f32, or bf16 pairs in u32 words with dims.bf16 (element offsets either way).

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { checkGpuGroup, quantLayout } from '../quant/format.ts';
import { hqqSettings, type QuantizeDims } from '../quant/hqq.ts';
import { grid2d } from '../quant/dispatch.ts';
import quantizeSrc from '../../../shaders/quantize.wgsl?raw';
import errorSrc from '../../../shaders/quantize_error.wgsl?raw';
import randomSrc from '../../../shaders/quantize_random.wgsl?raw';

/** A whole buffer or a range of one (e.g. the codes or the table half of a layer's 4-bit buffer). */
type Binding = GPUBuffer | GPUBufferBinding;

const WG = 64;

/** The Params uniform of quantize.wgsl and quantize_error.wgsl. */
export function quantizeParams(dims: QuantizeDims): ArrayBuffer {
  const L = quantLayout(dims.rows, dims.K, dims.G);
  const o = hqqSettings(dims);
  const b = new ArrayBuffer(48);
  const u = new Uint32Array(b);
  const f = new Float32Array(b);
  u.set([L.rows, L.K, L.G, L.groupsPerRow, dims.wOffset ?? 0, dims.rowOffset ?? 0, o.iters, dims.bf16 ? 1 : 0]);
  f.set([o.lpNorm, o.beta, o.kappa], 8);
  return b;
}

/** q [rowOffset + rows, K/8], sz [rowOffset + rows, ceil(K/G)] (rows rowOffset.. written) <- w [rows, K] at wOffset. */
export function quantize(enc: Encoder, q: Binding, sz: Binding, w: Binding, dims: QuantizeDims): void {
  const L = quantLayout(dims.rows, dims.K, dims.G);
  checkGpuGroup(L.G);
  const k = kernel(enc.gpu, { name: 'quantize', code: quantizeSrc, entryPoint: 'main', constants: { WG } });
  // each HQQ iteration rounds, dequantizes and shrinks every weight of a group (~12 FLOPs a weight)
  const wb = dims.bf16 ? 2 : 4, iters = Math.max(1, hqqSettings(dims).iters);
  const cost = { flops: 12 * iters * L.rows * L.K, bytes: wb * L.rows * L.K + 4 * (L.qWords + L.groups) };
  k.dispatch(enc, [w, q, sz], grid2d(L.groups, WG, enc.gpu.device.limits.maxComputeWorkgroupsPerDimension), quantizeParams(dims), cost);
}

/** err2 [rows * ceil(K/G)] f32 = per-group sum of (W - Ŵ)^2, Ŵ from rows rowOffset.. of q/sz, W = w [rows, K] at wOffset. */
export function quantizeError(enc: Encoder, err2: Binding, w: Binding, q: Binding, sz: Binding, dims: QuantizeDims): void {
  const L = quantLayout(dims.rows, dims.K, dims.G);
  const k = kernel(enc.gpu, { name: 'quantize.error', code: errorSrc, entryPoint: 'main', constants: { WG } });
  const cost = { flops: 4 * L.rows * L.K, bytes: (dims.bf16 ? 2 : 4) * L.rows * L.K + 4 * (L.qWords + 2 * L.groups) };
  k.dispatch(enc, [w, q, sz, err2], grid2d(L.groups, WG, enc.gpu.device.limits.maxComputeWorkgroupsPerDimension), quantizeParams(dims), cost);
}

/** q [qWords] random codes, sz [groups] random (scale, zero) words (quantize_random.wgsl): a 4-bit tensor for benchmarks. */
export function quantizeRandom(enc: Encoder, q: Binding, sz: Binding, dims: { qWords: number; groups: number; seed: number }): void {
  const k = kernel(enc.gpu, { name: 'quantize.random', code: randomSrc, entryPoint: 'main', constants: { WG } });
  const grid = grid2d(dims.qWords + dims.groups, WG, enc.gpu.device.limits.maxComputeWorkgroupsPerDimension);
  k.dispatch(enc, [q, sz], grid, Uint32Array.of(dims.qWords, dims.groups, dims.seed >>> 0, 0), { flops: 0, bytes: 4 * (dims.qWords + dims.groups) });
}
