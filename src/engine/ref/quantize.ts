// CPU float64 oracle of the 4-bit quantizer (tests only). Same signatures as ops/quantize.ts: outputs, inputs, dims.
// The algorithm is the engine's CPU quantizer (quant/hqq.ts), written once in plain float64 loops; see quant/FORMAT.md.

import { quantErrorCpu, quantizeCpu, type QuantizeDims } from '../quant/hqq.ts';

/** q [rowOffset + rows, K/8], sz [rowOffset + rows, ceil(K/G)] <- w [rows, K] (at dims.wOffset); HQQ or min-max. */
export function quantize(q: Uint32Array, sz: Uint32Array, w: ArrayLike<number>, dims: QuantizeDims): void {
  quantizeCpu(q, sz, w, dims);
}

/** err2 [rows * ceil(K/G)] = per-group sum of squared reconstruction error of rows rowOffset.. against w [rows, K]. */
export function quantizeError(err2: Float64Array, w: ArrayLike<number>, q: ArrayLike<number>, sz: ArrayLike<number>, dims: QuantizeDims): void {
  quantErrorCpu(err2, w, q, sz, dims);
}
