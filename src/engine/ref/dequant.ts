// CPU float64 oracle of 4-bit dequantization (tests only). Same signature as ops/dequant.ts: outputs, inputs, dims.
// Ŵ[r, k] = (code - z) * s, with (s, z) of group floor(k / G) of row rowOffset + r (quant/FORMAT.md).

import { nibble, quantLayout, unpackScaleZero, type DequantDims } from '../quant/format.ts';

/** out [rows, K] <- q [rowOffset + rows, K/8], sz [rowOffset + rows, ceil(K/G)] */
export function dequantize(out: Float64Array, q: ArrayLike<number>, sz: ArrayLike<number>, dims: DequantDims): void {
  const L = quantLayout(dims.rows, dims.K, dims.G);
  const row0 = dims.rowOffset ?? 0;
  const o = dims.outOffset ?? 0;
  for (let r = 0; r < L.rows; r++) {
    for (let k = 0; k < L.K; k++) {
      const { s, z } = unpackScaleZero(sz[(row0 + r) * L.groupsPerRow + Math.floor(k / L.G)]!);
      out[o + r * L.K + k] = (nibble(q, (row0 + r) * L.K + k) - z) * s;
    }
  }
}

/** out [n] <- element idx[j] (= row · K + k) of the [rows, K] matrix q [rows, K/8], sz [rows, ceil(K/G)] */
export function dequantizeAt(out: Float64Array, q: ArrayLike<number>, sz: ArrayLike<number>, idx: ArrayLike<number>, n: number, dims: { rows: number; K: number; G: number }): void {
  const L = quantLayout(dims.rows, dims.K, dims.G);
  for (let j = 0; j < n; j++) {
    const i = idx[j]!, r = Math.floor(i / L.K), k = i - r * L.K;
    if (r >= L.rows) throw new RangeError(`dequantizeAt: element ${i} outside [${L.rows}, ${L.K}]`);
    const { s, z } = unpackScaleZero(sz[r * L.groupsPerRow + Math.floor(k / L.G)]!);
    out[j] = (nibble(q, i) - z) * s;
  }
}
