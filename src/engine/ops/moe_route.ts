// MoE routing layout on the GPU (no readback): rows sorted by expert (then token, then k), offsets, and a table of
// row tiles for the grouped expert GEMMs. Same signature as ref/moe_route.ts. Deterministic (scans, no atomics).

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import rankSrc from '../../../shaders/moe_route.wgsl?raw';
import offSrc from '../../../shaders/moe_route_offsets.wgsl?raw';
import scatterSrc from '../../../shaders/moe_route_scatter.wgsl?raw';

export interface MoeRouteDims {
  T: number;
  K: number;
  E: number;
  /** Rows per tile of the grouped GEMM that will consume the table (experts.ts: EXPERT_TILE_M). */
  tileM: number;
}

export const NO_EXPERT = 0xffffffff;

/** Upper bound on the number of row tiles: sum_e ceil(c_e / tileM) <= ceil((R + E*(tileM-1)) / tileM). */
export function moeRouteMaxTiles(d: MoeRouteDims): number {
  return Math.ceil((d.T * d.K + d.E * (d.tileM - 1)) / d.tileM);
}

export function moeRouteParams(d: MoeRouteDims): Uint32Array {
  return Uint32Array.from([d.T * d.K, d.E, d.tileM, moeRouteMaxTiles(d)]);
}

const WG = 256;

/**
 * counts [E], offsets [E+1], slot [T*K] (sorted row of pair t*K+k), rowPair [R=T*K] (pair t*K+k of each sorted row),
 * tiles [maxTiles, 4] u32 (expert or NO_EXPERT, first row, end row, 0; rows [first, end) all belong to the expert)
 * <- topIdx [T, K]. All u32.
 */
export function moeRoute(
  enc: Encoder,
  counts: GPUBuffer,
  offsets: GPUBuffer,
  slot: GPUBuffer,
  rowPair: GPUBuffer,
  tiles: GPUBuffer,
  topIdx: GPUBuffer,
  d: MoeRouteDims,
): void {
  const params = moeRouteParams(d);
  const gpu = enc.gpu;
  const rank = kernel(gpu, { name: 'moe_route.rank', code: rankSrc, entryPoint: 'rank', constants: { WG } });
  const R = d.T * d.K;
  rank.dispatch(enc, [topIdx, slot, counts], [d.E], params, { flops: 0, bytes: 8 * R + 4 * d.E });
  const off = kernel(gpu, { name: 'moe_route.offsets', code: offSrc, entryPoint: 'offsets_main', constants: { WG } });
  off.dispatch(enc, [counts, offsets, tiles], [1], params, { flops: 0, bytes: 8 * d.E + 16 * moeRouteMaxTiles(d) });
  const sc = kernel(gpu, { name: 'moe_route.scatter', code: scatterSrc, entryPoint: 'scatter', constants: { WG } });
  sc.dispatch(enc, [topIdx, offsets, slot, rowPair], [Math.ceil((d.T * d.K) / WG)], params, { flops: 0, bytes: 12 * R + 4 * d.E });
}
