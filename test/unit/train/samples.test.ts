// Training samples: the seed's random positions (every sample a full SEQ-token slice of the stream at a start drawn from
// SEED, next-token targets inside it) and the consecutive windows evaluation scores; trainSamples picks by the setting.
import { describe, expect, it } from 'vitest';
import { randomPositionSamples, recordSamples, trainSamples, windowSamples } from '../../../src/engine/train/samples.ts';
import { IGNORE } from '../../../src/engine/train/forward.ts';
import type { SampleSet } from '../../../src/engine/train/types.ts';
import type { TokenStream } from '../../../src/engine/train/token-stream.ts';

const LEN = 1000;
const stream: TokenStream = { ids: Int32Array.from({ length: LEN }, (_, i) => 5 + i), labels: null, docStarts: Int32Array.of(0) };

function sample(set: SampleSet, i: number): { ids: number[]; targets: number[] } {
  const ids = new Uint32Array(set.seq), targets = new Uint32Array(set.seq);
  set.fill(i, ids, targets, 0);
  return { ids: [...ids], targets: [...targets] };
}

describe('training samples', () => {
  it('random positions: full slices at starts spread over 0..len-seq, targets the next token, the last position unscored', () => {
    const seq = 64, n = 400;
    const set = randomPositionSamples(stream, seq, 0, n, 3);
    expect([set.count, set.seq]).toEqual([n, seq]);
    const starts: number[] = [];
    for (let i = 0; i < n; i++) {
      const { ids, targets } = sample(set, i);
      const s0 = ids[0]! - 5;
      starts.push(s0);
      expect(s0 >= 0 && s0 <= LEN - seq).toBe(true);
      expect(ids).toEqual(Array.from({ length: seq }, (_, j) => 5 + s0 + j));
      expect(targets).toEqual([...ids.slice(1), IGNORE]);
    }
    // uniform over 937 positions: most are not multiples of seq, every decile is hit
    expect(starts.filter((s) => s % seq !== 0).length).toBeGreaterThan(n * 0.9);
    const deciles = new Set(starts.map((s) => Math.floor((s / (LEN - seq + 1)) * 10)));
    expect(deciles.size).toBe(10);
  });

  it('random positions: the same seed draws the same samples whatever the count; another seed others', () => {
    const a = randomPositionSamples(stream, 32, 0, 50, 7), b = randomPositionSamples(stream, 32, 0, 20, 7), c = randomPositionSamples(stream, 32, 0, 20, 8);
    for (let i = 0; i < 20; i++) expect(sample(b, i)).toEqual(sample(a, i));
    expect(Array.from({ length: 20 }, (_, i) => sample(c, i).ids[0]).filter((x, i) => x === sample(a, i).ids[0]).length).toBeLessThan(3);
  });

  it('random positions on a stream shorter than SEQ: one padded window at 0, padding unscored', () => {
    const short: TokenStream = { ids: Int32Array.of(9, 8, 7), labels: null, docStarts: Int32Array.of(0) };
    const { ids, targets } = sample(randomPositionSamples(short, 5, 1, 3, 0), 2);
    expect(ids).toEqual([9, 8, 7, 1, 1]);
    expect(targets).toEqual([8, 7, IGNORE, IGNORE, IGNORE]);
  });

  it('trainSamples: random → STEPS·MICROBATCH·ACCUM samples; windows (or absent, as old checkpoints) → the windows', () => {
    const s = { seq: 100, steps: 7, microbatch: 2, accum: 3, seed: 1 };
    expect(trainSamples(stream, { ...s, sampling: 'random' }, 0).count).toBe(42);
    const w = trainSamples(stream, { ...s, sampling: 'windows' }, 0);
    expect(w.count).toBe(10);
    expect(sample(w, 3)).toEqual(sample(windowSamples(stream, 100, 0), 3));
    expect(trainSamples(stream, s, 0).count).toBe(10);
  });

  it('records: each record its own samples, cut into SEQ windows when longer, padded when shorter, never straddling two records', () => {
    // records of 3, 10, 1 and 7 tokens; ids 100+i, labels = ids except position 5 (IGNORE, e.g. a prompt token)
    const lens = [3, 10, 1, 7];
    const starts = lens.map((_, d) => lens.slice(0, d).reduce((a, b) => a + b, 0));
    const ids = Int32Array.from({ length: 21 }, (_, i) => 100 + i);
    const labels = ids.map((x, i) => (i === 5 ? -100 : x));
    const recs: TokenStream = { ids, labels, docStarts: Int32Array.from(starts) };
    const set = recordSamples(recs, 4, 7);
    // 1 + 3 + 1 + 2 windows
    expect([set.count, set.seq]).toEqual([7, 4]);
    const P = 7, X = IGNORE;
    expect(Array.from({ length: 7 }, (_, i) => sample(set, i))).toEqual([
      { ids: [100, 101, 102, P], targets: [101, 102, X, X] }, // record 0, padded: its last token predicts nothing
      { ids: [103, 104, 105, 106], targets: [104, X, 106, X] }, // record 1 cut into 4 + 4 + 2; label IGNORE kept
      { ids: [107, 108, 109, 110], targets: [108, 109, 110, X] },
      { ids: [111, 112, P, P], targets: [112, X, X, X] },
      { ids: [113, P, P, P], targets: [X, X, X, X] }, // a 1-token record scores nothing
      { ids: [114, 115, 116, 117], targets: [115, 116, 117, X] },
      { ids: [118, 119, 120, P], targets: [119, 120, X, X] },
    ]);
    // the consecutive windows of the same stream straddle records (window 0 holds record 0's end and record 1's start)
    expect(sample(windowSamples(recs, 4, 7), 0).targets).toEqual([101, 102, 103, X]);
    expect(trainSamples(recs, { seq: 4, steps: 7, microbatch: 2, accum: 3, seed: 1, sampling: 'records' }, 7).count).toBe(7);
  });
});
