// CPU float64 oracle of RMSNorm (tests only). Same signature as ops/rmsnorm.ts.

/** y [rows, dim], rstd [rows] <- x [rows, dim], w [dim] */
export function rmsnormForward(y: Float64Array, rstd: Float64Array, x: ArrayLike<number>, w: ArrayLike<number>, rows: number, dim: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i]! ** 2;
    const s = 1 / Math.sqrt(ss / dim + eps);
    rstd[r] = s;
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i]! * s * w[i]!;
  }
}

/** dx [rows, dim] = dL/dx; dw [dim] += dL/dw (if given). */
export function rmsnormBackward(
  dx: Float64Array,
  dw: Float64Array | null,
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rstd: ArrayLike<number>,
  rows: number,
  dim: number,
): void {
  for (let r = 0; r < rows; r++) {
    const s = rstd[r]!;
    let m = 0;
    for (let i = 0; i < dim; i++) m += x[r * dim + i]! * s * w[i]! * dy[r * dim + i]!;
    m /= dim;
    for (let i = 0; i < dim; i++) {
      const xh = x[r * dim + i]! * s;
      dx[r * dim + i] = s * (w[i]! * dy[r * dim + i]! - xh * m);
      if (dw) dw[i] += dy[r * dim + i]! * xh;
    }
  }
}
