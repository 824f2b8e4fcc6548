// Top-k over parts (train/chunked-topk.ts) vs topkSelect over the whole tensor: random values with many ties (few
// distinct magnitudes, both signs), parts smaller and larger than k, two running sets appended (gate then up): the
// selected indices must be equal, ties included (lowest indices first).
import { describe, expect, it } from 'vitest';
import { topkSelect, TOPK_WORKSPACE_WORDS } from '../../src/engine/ops/topk.ts';
import { RunningTopk, TopkMerger } from '../../src/engine/train/chunked-topk.ts';
import { createBuffer, readU32 } from '../../src/engine/gpu/buffers.ts';
import { rng } from '../helpers/random.ts';
import { f32Buffer, poisoned, run, testGpu } from '../helpers/gpu.ts';

function tiedValues(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * Math.floor(r() * 40) / 8);
}

describe('top-k over parts', () => {
  for (const { n, k, parts, seed } of [
    { n: 5000, k: 97, parts: [40, 1200, 60, 1700, 2000], seed: 1 },
    { n: 4096, k: 300, parts: [1024, 1024, 1024, 1024], seed: 2 },
    { n: 777, k: 777, parts: [100, 677], seed: 3 },
  ]) {
    it(`n ${n}, k ${k}, parts ${parts.join('+')}: equals the whole tensor's top-k`, async () => {
      const gpu = await testGpu();
      const x = tiedValues(n, seed);
      const work = createBuffer(gpu, { label: 'work', size: TOPK_WORKSPACE_WORDS * 4 });
      const want = poisoned(gpu, k), got = poisoned(gpu, k), split = poisoned(gpu, k);
      const merger = new TopkMerger(gpu, k, work);
      const one = new RunningTopk(gpu, k, 'one');
      // the same parts, the first half of them into a second running set that is appended (gate | up)
      const half = Math.ceil(parts.length / 2);
      const lo = new RunningTopk(gpu, k, 'lo'), hi = new RunningTopk(gpu, k, 'hi');
      await run(gpu, (enc) => {
        topkSelect(enc, want, f32Buffer(gpu, x), work, n, k);
        let base = 0;
        parts.forEach((m, i) => {
          const part = f32Buffer(gpu, x.subarray(base, base + m));
          merger.offer(enc, one, part, m, base);
          merger.offer(enc, i < half ? lo : hi, part, m, base);
          base += m;
        });
        merger.finish(enc, got, one);
        merger.append(enc, lo, hi);
        merger.finish(enc, split, lo);
      });
      const w = Array.from(await readU32(gpu, want));
      // ties across the threshold: entries left out with the smallest selected magnitude (so the tie order matters)
      const threshold = Math.min(...w.map((i) => Math.abs(x[i]!)));
      const chosen = new Set(w);
      if (k < n) expect(Array.from(x).filter((v, i) => !chosen.has(i) && Math.abs(v) === threshold).length).toBeGreaterThan(0);
      expect(Array.from(await readU32(gpu, got))).toEqual(w);
      expect(Array.from(await readU32(gpu, split))).toEqual(w);
    });
  }
});
