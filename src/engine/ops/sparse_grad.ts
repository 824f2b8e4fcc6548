// Sparse expert weight gradients: grad[j] (+)= dLoss/dW at active flat index idx[j] of a selection tensor, from the
// per-row grads of experts backward. Same signatures as ref/sparse_grad.ts. Never builds a dense gradient.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import src from '../../../shaders/sparse_grad.wgsl?raw';

// Legend: T tokens, H hidden, E experts, K experts per token, IE expert width, R = T*K sorted rows, n active entries.

export interface SparseGradDims {
  T: number;
  H: number;
  E: number;
  K: number;
  IE: number;
}

/** From moe_route: offsets [E+1], rowPair [R]. */
export interface SparseRouting<B> {
  offsets: B;
  rowPair: B;
}

const WG = 64; // entries per workgroup; they share the staged row sources when they lie in one expert

function dispatch(
  enc: Encoder,
  grad: GPUBuffer,
  idx: GPUBuffer,
  left0: GPUBuffer,
  left1: GPUBuffer,
  right: GPUBuffer,
  route: SparseRouting<GPUBuffer>,
  p: { n: number; M: number; N: number; partSize: number; gather: boolean; accumulate: boolean },
  d: SparseGradDims,
): void {
  if (p.n === 0) return;
  const k = kernel(enc.gpu, { name: 'sparse_grad', code: src, entryPoint: 'sparse_grad', constants: { WG } });
  const params = Uint32Array.from([p.n, p.M, p.N, p.partSize, d.K, p.gather ? 1 : 0, p.accumulate ? 1 : 0, d.E]);
  // entry j sums over the R/E rows of its expert (expected, uniform routing) a product of a left and a right value;
  // idx and grad per entry, and the row sources (both left parts for gate/up) read once
  const R = d.T * d.K, parts = p.gather ? 2 : 1;
  const cost = { flops: (2 * p.n * R) / d.E, bytes: 4 * p.n * (p.accumulate ? 3 : 2) + 4 * R * (parts * p.M + p.N) + 4 * R };
  k.dispatch(enc, [idx, left0, left1, right, route.rowPair, route.offsets, grad], [Math.min(65535, Math.ceil(p.n / WG))], params, cost);
}

/**
 * G (gate then up of all experts, [2, E, IE, H] flattened): grad [n] (+)= for flat index f = part*E*IE*H + (e*IE + i)*H + h:
 * sum over the rows s of expert e of (part ? dU : dG)[s, i] * x[token(s), h].  idx [n] sorted ascending.
 */
export function sparseGradGateUp(
  enc: Encoder,
  grad: GPUBuffer,
  idx: GPUBuffer,
  dG: GPUBuffer,
  dU: GPUBuffer,
  x: GPUBuffer,
  route: SparseRouting<GPUBuffer>,
  n: number,
  d: SparseGradDims,
  accumulate = false,
): void {
  dispatch(enc, grad, idx, dG, dU, x, route, { n, M: d.IE, N: d.H, partSize: d.E * d.IE * d.H, gather: true, accumulate }, d);
}

/** D (down of all experts, [E, H, IE]): grad [n] (+)= for f = (e*H + h)*IE + i: sum over rows s of e of dY[s, h] * A[s, i]. */
export function sparseGradDown(
  enc: Encoder,
  grad: GPUBuffer,
  idx: GPUBuffer,
  dY: GPUBuffer,
  A: GPUBuffer,
  route: SparseRouting<GPUBuffer>,
  n: number,
  d: SparseGradDims,
  accumulate = false,
): void {
  dispatch(enc, grad, idx, dY, dY, A, route, { n, M: d.H, N: d.IE, partSize: d.E * d.H * d.IE, gather: false, accumulate }, d);
}
