// CPU float64 oracle of the fused 4-bit dequantize-matmul (tests only). Same signatures as ops/qmatmul.ts.
// forward y = x · Ŵ^T; backward_input dx (+)= dy · Ŵ, with Ŵ [N, K] rows rowOffset.. of a quantized tensor.

import { quantLayout, type QmatmulDims } from '../quant/format.ts';
import { dequantize } from './dequant.ts';

function weights(q: ArrayLike<number>, sz: ArrayLike<number>, d: QmatmulDims): Float64Array {
  quantLayout(d.N, d.K, d.G);
  const w = new Float64Array(d.N * d.K); // [N, K]
  dequantize(w, q, sz, { rows: d.N, K: d.K, G: d.G, rowOffset: d.rowOffset });
  return w;
}

/** y [M, N] = x [M, K] · Ŵ^T */
export function qmatmulForward(y: Float64Array, x: ArrayLike<number>, q: ArrayLike<number>, sz: ArrayLike<number>, d: QmatmulDims): void {
  const w = weights(q, sz, d);
  const xo = d.xOffset ?? 0, yo = d.yOffset ?? 0;
  for (let m = 0; m < d.M; m++) {
    for (let n = 0; n < d.N; n++) {
      let acc = 0;
      for (let k = 0; k < d.K; k++) acc += x[xo + m * d.K + k]! * w[n * d.K + k]!;
      y[yo + m * d.N + n] = acc;
    }
  }
}

/** dx [M, K] (+)= dy [M, N] · Ŵ */
export function qmatmulBackwardInput(dx: Float64Array, dy: ArrayLike<number>, q: ArrayLike<number>, sz: ArrayLike<number>, d: QmatmulDims): void {
  const w = weights(q, sz, d);
  const xo = d.xOffset ?? 0, yo = d.yOffset ?? 0;
  for (let m = 0; m < d.M; m++) {
    for (let k = 0; k < d.K; k++) {
      let acc = 0;
      for (let n = 0; n < d.N; n++) acc += dy[yo + m * d.N + n]! * w[n * d.K + k]!;
      dx[xo + m * d.K + k] = (d.accumulate ? dx[xo + m * d.K + k]! : 0) + acc;
    }
  }
}
