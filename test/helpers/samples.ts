// Training samples for GPU tests: `count` windows of `seq` random token ids below V (seeded), each window's targets its
// ids shifted by one with the last position ignored; `ids` holds all windows' ids, window after window.
import type { SampleSet } from '../../src/engine/train/types.ts';
import { rng } from './random.ts';

export function randomSamples(count: number, seq: number, V: number, seed: number): SampleSet & { ids: Uint32Array } {
  const r = rng(seed);
  const all = Uint32Array.from({ length: count * seq }, () => Math.floor(r() * V));
  return {
    ids: all,
    count,
    seq,
    fill(i, ids, targets, off) {
      for (let j = 0; j < seq; j++) ids[off + j] = all[i * seq + j]!;
      for (let j = 0; j < seq; j++) targets[off + j] = j + 1 < seq ? all[i * seq + j + 1]! : 0xffffffff;
    },
  };
}
