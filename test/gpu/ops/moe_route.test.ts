// moe_route: GPU sorted layout (counts, offsets, slot, rowPair, tile table) equals the CPU oracle exactly,
// with empty experts, experts spanning several tiles and more pairs than one workgroup scans at once.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/moe_route.ts';
import * as ref from '../../../src/engine/ref/moe_route.ts';
import type { MoeRouteDims } from '../../../src/engine/ops/moe_route.ts';
import { readU32 } from '../../../src/engine/gpu/buffers.ts';
import { randomRouting } from '../../helpers/experts-data.ts';
import { poisoned, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';

describe('moe_route', () => {
  const cases: [string, MoeRouteDims][] = [
    ['T=13 K=3 E=6 tile 32', { T: 13, K: 3, E: 6, tileM: 32 }],
    ['T=13 K=3 E=6 tile 4', { T: 13, K: 3, E: 6, tileM: 4 }],
    ['T=301 K=3 E=7 tile 8', { T: 301, K: 3, E: 7, tileM: 8 }],
    ['T=50 K=4 E=300 tile 3', { T: 50, K: 4, E: 300, tileM: 3 }],
  ];
  for (const [name, d] of cases) {
    it(`matches the oracle (${name})`, async () => {
      const gpu = await testGpu();
      const R = d.T * d.K, maxTiles = gpuOp.moeRouteMaxTiles(d);
      const topIdx = randomRouting(d.T, d.K, d.E, 7 + d.E, 2);
      const b = {
        counts: poisoned(gpu, d.E), offsets: poisoned(gpu, d.E + 1), slot: poisoned(gpu, R),
        rowPair: poisoned(gpu, R), tiles: poisoned(gpu, 4 * maxTiles),
      };
      await run(gpu, (enc) => gpuOp.moeRoute(enc, b.counts, b.offsets, b.slot, b.rowPair, b.tiles, u32Buffer(gpu, topIdx), d));
      const w = {
        counts: new Uint32Array(d.E), offsets: new Uint32Array(d.E + 1), slot: new Uint32Array(R),
        rowPair: new Uint32Array(R), tiles: new Uint32Array(4 * maxTiles),
      };
      ref.moeRoute(w.counts, w.offsets, w.slot, w.rowPair, w.tiles, topIdx, d);
      expect(w.counts[2]).toBe(0);
      for (const key of ['counts', 'offsets', 'slot', 'rowPair', 'tiles'] as const) {
        expect(Array.from(await readU32(gpu, b[key])), key).toEqual(Array.from(w[key]));
      }
      // the oracle itself: rows grouped by expert, in pair order inside an expert, slot and rowPair inverse
      for (let s = 0; s < R; s++) expect(w.slot[w.rowPair[s]!]).toBe(s);
      for (let e = 0; e < d.E; e++)
        for (let s = w.offsets[e]!; s < w.offsets[e + 1]!; s++) {
          expect(topIdx[w.rowPair[s]!]).toBe(e);
          if (s > w.offsets[e]!) expect(w.rowPair[s]!).toBeGreaterThan(w.rowPair[s - 1]!);
        }
    });
  }
});
