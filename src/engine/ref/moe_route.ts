// CPU oracle of the MoE routing layout (tests only). Same signature as ops/moe_route.ts.
// Rows sorted by expert, then token, then k; tiles of tileM rows never straddle two experts.

import { moeRouteMaxTiles, NO_EXPERT, type MoeRouteDims } from '../ops/moe_route.ts';

/**
 * counts [E], offsets [E+1], slot [T*K] (sorted row of pair t*K+k), rowPair [R=T*K] (pair t*K+k of each row),
 * tiles [maxTiles, 4] (expert or NO_EXPERT, first row, end row, 0) <- topIdx [T, K].
 */
export function moeRoute(
  counts: Uint32Array,
  offsets: Uint32Array,
  slot: Uint32Array,
  rowPair: Uint32Array,
  tiles: Uint32Array,
  topIdx: ArrayLike<number>,
  d: MoeRouteDims,
): void {
  const R = d.T * d.K;
  counts.fill(0);
  for (let i = 0; i < R; i++) counts[topIdx[i]!]!++;
  offsets[0] = 0;
  for (let e = 0; e < d.E; e++) offsets[e + 1] = offsets[e]! + counts[e]!;
  const next = offsets.slice(0, d.E);
  for (let i = 0; i < R; i++) {
    const s = next[topIdx[i]!]!++;
    slot[i] = s;
    rowPair[s] = i;
  }
  const maxTiles = moeRouteMaxTiles(d);
  let n = 0;
  for (let e = 0; e < d.E; e++)
    for (let r = offsets[e]!; r < offsets[e + 1]!; r += d.tileM) {
      tiles.set([e, r, Math.min(r + d.tileM, offsets[e + 1]!), 0], 4 * n);
      n++;
    }
  for (; n < maxTiles; n++) {
    tiles.set([NO_EXPERT, 0, 0, 0], 4 * n);
  }
}
