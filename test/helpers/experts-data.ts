// Test data for the MoE ops (router, moe_route, experts, sparse_grad): routings with distinct experts per token,
// bf16 rounding/packing of weights, and the CPU routing layout of moe_route's oracle.
import { rng } from './random.ts';
import { moeRouteMaxTiles, type MoeRouteDims } from '../../src/engine/ops/moe_route.ts';
import * as routeRef from '../../src/engine/ref/moe_route.ts';

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

/** f32 -> nearest bf16 (ties to even), as the upper 16 bits. */
export function bf16Bits(v: number): number {
  const u = new Uint32Array(Float32Array.of(v).buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Round every value to bf16 (returns the f32 values). */
export function roundBf16(a: ArrayLike<number>): Float32Array {
  const out = new Float32Array(a.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < a.length; i++) u[i] = bf16Bits(a[i]!) << 16;
  return out;
}

/** Pack values (already bf16-representable) two per u32, even element in the low half. */
export function packBf16(a: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(Math.ceil(a.length / 2));
  for (let i = 0; i < a.length; i++) out[i >> 1] |= bf16Bits(a[i]!) << (16 * (i & 1));
  return out;
}

/** Decode packed bf16 words back to numbers. */
export function unpackBf16(words: Uint32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) u[i] = (i & 1 ? words[i >> 1]! >>> 16 : words[i >> 1]! & 0xffff) << 16;
  return out;
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
