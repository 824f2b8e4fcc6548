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

const hash = (x: number): number => {
  const state = (Math.imul(x, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
};

/** q [qWords], sz [groups] <- the random 4-bit tensor of shaders/quantize_random.wgsl for `seed`. */
export function quantizeRandom(q: Uint32Array, sz: Uint32Array, dims: { qWords: number; groups: number; seed: number }): void {
  const s = hash(dims.seed >>> 0);
  for (let i = 0; i < dims.qWords + dims.groups; i++) {
    const h = hash((i ^ s) >>> 0);
    if (i < dims.qWords) q[i] = h;
    else sz[i - dims.qWords] = ((0x1800 | (h & 0x3ff)) | ((0x4700 | ((h >>> 10) & 0xff)) << 16)) >>> 0;
  }
}
