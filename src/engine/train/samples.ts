// Sample sets over a token stream: consecutive SEQ-token windows with next-token targets (labels shifted by one;
// the last position of a window and IGNORE labels are not scored). Used for training samples and evaluation.

import { IGNORE as LABEL_IGNORE, windowAt, windowCount, type TokenStream } from '../../data/stream.ts';
import { IGNORE } from './forward.ts';
import type { SampleSet } from './trainer.ts';

export function windowSamples(stream: TokenStream, seq: number, padId: number): SampleSet {
  return {
    count: windowCount(stream, seq),
    seq,
    fill(i, ids, targets, offset) {
      const w = windowAt(stream, i, seq, padId);
      for (let j = 0; j < seq; j++) {
        ids[offset + j] = w.ids[j]!;
        const next = j + 1 < seq ? w.labels[j + 1]! : LABEL_IGNORE;
        targets[offset + j] = next === LABEL_IGNORE ? IGNORE : next;
      }
    },
  };
}
