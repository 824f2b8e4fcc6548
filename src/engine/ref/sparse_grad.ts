// CPU float64 oracle of the sparse expert weight gradients (tests only). Same signatures as ops/sparse_grad.ts.
// grad[j] (+)= sum over the rows of expert e of left[row, r] * right[src(row), c] for active flat index idx[j] = (e, r, c).

import type { SparseGradDims, SparseRouting } from '../ops/sparse_grad.ts';

type Arr = ArrayLike<number>;

function sparse(
  grad: Float64Array, idx: Arr, left: [Arr, Arr], right: Arr, route: SparseRouting<Arr>,
  n: number, M: number, N: number, K: number, gather: boolean, accumulate: boolean,
): void {
  const part = (route.offsets.length - 1) * M * N;
  for (let j = 0; j < n; j++) {
    let f = idx[j]!;
    const l = left[f >= part ? 1 : 0];
    f %= part;
    const e = Math.floor(f / (M * N)), r = Math.floor(f / N) % M, c = f % N;
    let acc = 0;
    for (let s = route.offsets[e]!; s < route.offsets[e + 1]!; s++) {
      const src = gather ? Math.floor(route.rowPair[s]! / K) : s;
      acc += l[s * M + r]! * right[src * N + c]!;
    }
    grad[j] = (accumulate ? grad[j]! : 0) + acc;
  }
}

/** G = [gate; up] of all experts: grad [n] (+)= sum_rows (part ? dU : dG)[s, i] * x[token(s), h]. */
export function sparseGradGateUp(grad: Float64Array, idx: Arr, dG: Arr, dU: Arr, x: Arr, route: SparseRouting<Arr>, n: number, d: SparseGradDims, accumulate = false): void {
  sparse(grad, idx, [dG, dU], x, route, n, d.IE, d.H, d.K, true, accumulate);
}

/** D = down of all experts: grad [n] (+)= sum_rows dY[s, h] * A[s, i]. */
export function sparseGradDown(grad: Float64Array, idx: Arr, dY: Arr, A: Arr, route: SparseRouting<Arr>, n: number, d: SparseGradDims, accumulate = false): void {
  sparse(grad, idx, [dY, dY], A, route, n, d.H, d.IE, d.K, false, accumulate);
}
