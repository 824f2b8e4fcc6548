// CPU float64 oracle of RoPE (tests only), in place like ops/rope.ts: same signature, same layout conventions.
// forward: y_i = a c - b s, y_{i+h} = b c + a s with (a, b) = (x_i, x_{i+h}) or, interleaved, (x_{2i}, x_{2i+1}); backward: the transpose.

import type { RopeDims } from '../ops/rope.ts';

function eachHead(d: RopeDims, fn: (base: number, t: number) => void): void {
  const stride = d.tokenStride ?? d.nHeads * d.headDim;
  for (let t = 0; t < d.tokens; t++) {
    for (let h = 0; h < d.nHeads; h++) fn((d.offset ?? 0) + t * stride + h * d.headDim + (d.rotStart ?? 0), t);
  }
}

/** In place: x [T, nHeads, headDim] <- rope(x) at positions [T]; cos/sin [maxPos, rotDim/2]. */
export function ropeForward(x: Float64Array, positions: ArrayLike<number>, cos: ArrayLike<number>, sin: ArrayLike<number>, d: RopeDims): void {
  const half = d.rotDim / 2;
  eachHead(d, (base, t) => {
    const src = x.slice(base, base + d.rotDim);
    const pos = positions[t]!;
    for (let i = 0; i < half; i++) {
      const c = cos[pos * half + i]!;
      const s = sin[pos * half + i]!;
      const a = d.interleave ? src[2 * i]! : src[i]!;
      const b = d.interleave ? src[2 * i + 1]! : src[i + half]!;
      x[base + i] = a * c - b * s;
      x[base + i + half] = b * c + a * s;
    }
  });
}

/** In place: g holds dL/dy [T, nHeads, headDim] on entry, dL/dx on exit. */
export function ropeBackward(g: Float64Array, positions: ArrayLike<number>, cos: ArrayLike<number>, sin: ArrayLike<number>, d: RopeDims): void {
  const half = d.rotDim / 2;
  eachHead(d, (base, t) => {
    const src = g.slice(base, base + d.rotDim);
    const pos = positions[t]!;
    for (let i = 0; i < half; i++) {
      const c = cos[pos * half + i]!;
      const s = sin[pos * half + i]!;
      const a = src[i]!;
      const b = src[i + half]!;
      g[base + (d.interleave ? 2 * i : i)] = a * c + b * s;
      g[base + (d.interleave ? 2 * i + 1 : i + half)] = b * c - a * s;
    }
  });
}
