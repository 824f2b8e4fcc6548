// Test data for the MoE ops (moe_route, experts, sparse_grad, adam): routings with distinct experts per token,
// bf16 rounding/packing of weights (via io/dtype), and the CPU routing layout of moe_route's oracle.
import { rng } from './random.ts';
import { decodeBf16, encodeBf16, packBf16Pairs } from '../../src/engine/io/dtype.ts';
import { moeRouteMaxTiles, type MoeRouteDims } from '../../src/engine/ops/moe_route.ts';
import * as routeRef from '../../src/engine/ref/moe_route.ts';
import { dequantize } from '../../src/engine/ref/dequant.ts';
import { quantizeCpu } from '../../src/engine/quant/hqq.ts';
import { quantLayout } from '../../src/engine/quant/format.ts';
import { randn } from './random.ts';

/** topIdx [T, K]: K distinct experts per token, skewed (some experts hot); `avoid` is never used (-1: none). */
export function randomRouting(T: number, K: number, E: number, seed: number, avoid = -1): Uint32Array {
  const r = rng(seed);
  const out = new Uint32Array(T * K);
  for (let t = 0; t < T; t++) {
    const used = new Set<number>();
    for (let k = 0; k < K; k++) {
      let e: number;
      do e = Math.floor(r() ** 2 * E);
      while (used.has(e) || e === avoid);
      used.add(e);
      out[t * K + k] = e;
    }
  }
  return out;
}

/** Every value rounded to bf16 (nearest even), as f32. */
export function roundBf16(a: Float32Array): Float32Array {
  return decodeBf16(encodeBf16(a));
}

/** bf16-exact values packed two per u32 (even element in the low half), as the kernels read them. */
export function packBf16(a: Float32Array): Uint32Array {
  return packBf16Pairs(encodeBf16(a));
}

/** moe_route's oracle outputs for topIdx. */
export function cpuRoute(topIdx: Uint32Array, d: MoeRouteDims) {
  const R = d.T * d.K;
  const o = {
    counts: new Uint32Array(d.E), offsets: new Uint32Array(d.E + 1), slot: new Uint32Array(R),
    rowPair: new Uint32Array(R), tiles: new Uint32Array(4 * moeRouteMaxTiles(d)),
  };
  routeRef.moeRoute(o.counts, o.offsets, o.slot, o.rowPair, o.tiles, topIdx, d);
  return o;
}

/**
 * rows [rows, L] of N(0, 0.15) weights quantized in groups of G: the words as a kernel binds them (codes, `gap` words,
 * then the (scale, zero) table at word szAt) and the dequantized values.
 */
export function q4Tensor(rows: number, L: number, seed: number, gap: number, G: number) {
  const lay = quantLayout(rows, L, G);
  const q = new Uint32Array(lay.qWords), sz = new Uint32Array(lay.groups);
  quantizeCpu(q, sz, randn(rows * L, seed, 0.15), { rows, K: L, G });
  const words = new Uint32Array(lay.qWords + gap + lay.groups);
  words.set(q);
  words.set(sz, lay.qWords + gap);
  const values = new Float64Array(rows * L);
  dequantize(values, q, sz, { rows, K: L, G });
  return { words, values, szAt: lay.qWords + gap };
}
