// CPU float64 oracle of the linear layer (tests only). Same signatures as ops/matmul.ts.
// W is given as plain numbers (bf16 already decoded); wDtype is ignored, offsets index the same arrays.

import type { MatmulDims, MatmulWeightGradDims } from '../ops/matmul.ts';

type Num = ArrayLike<number>;

/** y [M, N] (=|+=) x [M, K] . W [N, K]^T (+ bias [N]) */
export function matmulForward(y: Float64Array, x: Num, w: Num, bias: Num | null, d: MatmulDims): void {
  const { M, N, K } = d;
  const wo = d.wOffset ?? 0, bo = d.biasOffset ?? 0, xo = d.xOffset ?? 0, yo = d.yOffset ?? 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[bo + j]! : 0;
      for (let r = 0; r < K; r++) s += x[xo + i * K + r]! * w[wo + j * K + r]!;
      const o = yo + i * N + j;
      y[o] = (d.accumulate ? y[o]! : 0) + s;
    }
  }
}

/** dx [M, K] (=|+=) dy [M, N] . W [N, K] */
export function matmulBackwardInput(dx: Float64Array, dy: Num, w: Num, d: MatmulDims): void {
  const { M, N, K } = d;
  const wo = d.wOffset ?? 0, xo = d.xOffset ?? 0, yo = d.yOffset ?? 0;
  for (let i = 0; i < M; i++) {
    for (let r = 0; r < K; r++) {
      let s = 0;
      for (let j = 0; j < N; j++) s += dy[yo + i * N + j]! * w[wo + j * K + r]!;
      const o = xo + i * K + r;
      dx[o] = (d.accumulate ? dx[o]! : 0) + s;
    }
  }
}

/** dW [N, K] (+=|=) dy [M, N]^T . x [M, K] */
export function matmulBackwardWeight(dw: Float64Array, dy: Num, x: Num, d: MatmulWeightGradDims): void {
  const { M, N, K } = d;
  const o = d.dwOffset ?? 0, xo = d.xOffset ?? 0, yo = d.yOffset ?? 0;
  for (let j = 0; j < N; j++) {
    for (let r = 0; r < K; r++) {
      let s = 0;
      for (let i = 0; i < M; i++) s += dy[yo + i * N + j]! * x[xo + i * K + r]!;
      dw[o + j * K + r] = ((d.accumulateDw ?? true) ? dw[o + j * K + r]! : 0) + s;
    }
  }
}

/** dbias [N] (+=|=) sum over rows of dy [M, N] */
export function matmulBackwardBias(dbias: Float64Array, dy: Num, d: MatmulWeightGradDims): void {
  const { M, N } = d;
  const o = d.dwOffset ?? 0, yo = d.yOffset ?? 0;
  for (let j = 0; j < N; j++) {
    let s = 0;
    for (let i = 0; i < M; i++) s += dy[yo + i * N + j]!;
    dbias[o + j] = ((d.accumulateDw ?? true) ? dbias[o + j]! : 0) + s;
  }
}
