// Sorted index-set helpers of the trainer (turnover, grown entries, touched set) and Adam-state carry-over,
// against brute force on random sets.
import { describe, expect, it } from 'vitest';
import { carryMoments, countNotIn, setMinus, union } from '../../../src/engine/train/sorted-sets.ts';
import { rng } from '../../helpers/random.ts';

function randomSet(n: number, max: number, seed: number): Uint32Array {
  const r = rng(seed);
  const s = new Set<number>();
  while (s.size < n) s.add(Math.floor(r() * max));
  return Uint32Array.from([...s].sort((a, b) => a - b));
}

describe('sorted index sets', () => {
  for (const seed of [1, 2, 3]) {
    const a = randomSet(200, 1000, seed), b = randomSet(300, 1000, seed + 10);
    const sb = new Set(b), sa = new Set(a);
    it(`difference, count and union (seed ${seed})`, () => {
      const want = [...a].filter((x) => !sb.has(x));
      expect([...setMinus(a, b)]).toEqual(want);
      expect(countNotIn(a, b)).toBe(want.length);
      expect([...union(a, b)]).toEqual([...new Set([...a, ...b])].sort((x, y) => x - y));
      expect([...union(a, new Uint32Array(0))]).toEqual([...a]);
    });
    it(`Adam moments follow kept entries, zero for grown ones (seed ${seed})`, () => {
      const m = Float32Array.from(a, (x) => x + 0.5), v = Float32Array.from(a, (x) => 2 * x + 1);
      const [nm, nv] = carryMoments(a, m, v, b);
      b.forEach((x, i) => {
        expect(nm[i]).toBe(sa.has(x) ? x + 0.5 : 0);
        expect(nv[i]).toBe(sa.has(x) ? 2 * x + 1 : 0);
      });
    });
  }
});
