// Sample sets over a token stream: consecutive SEQ-token windows with next-token targets (labels shifted by one;
// the last position of a window and IGNORE labels are not scored). Used for training samples and evaluation.

import { IGNORE as LABEL_IGNORE, windowCount, windowFrom, type TokenStream, type Window } from './token-stream.ts';
import { IGNORE } from './forward.ts';
import { Rng } from './rng.ts';
import type { SampleSet } from './types.ts';
import type { TrainSettings } from './settings.ts';

function put(w: Window, seq: number, ids: Uint32Array, targets: Uint32Array, offset: number): void {
  for (let j = 0; j < seq; j++) {
    ids[offset + j] = w.ids[j]!;
    const next = j + 1 < seq ? w.labels[j + 1]! : LABEL_IGNORE;
    targets[offset + j] = next === LABEL_IGNORE ? IGNORE : next;
  }
}

/** The consecutive SEQ-token windows of the stream (the last one padded): what evaluation scores. */
export function windowSamples(stream: TokenStream, seq: number, padId: number): SampleSet {
  return {
    count: windowCount(stream, seq),
    seq,
    fill: (i, ids, targets, offset) => put(windowFrom(stream, i * seq, seq, padId), seq, ids, targets, offset),
  };
}

/**
 * `count` windows of `seq` tokens at uniformly random start positions 0..len-seq of the stream (the seed's sampling),
 * drawn in order from `seed`: sample i is the same whatever `count` is. A stream shorter than `seq` gives padded windows at 0.
 */
export function randomPositionSamples(stream: TokenStream, seq: number, padId: number, count: number, seed: number): SampleSet {
  const rng = new Rng((seed ^ 0x2545f491) >>> 0);
  const positions = Math.max(0, stream.ids.length - seq) + 1;
  const starts = Uint32Array.from({ length: count }, () => Math.floor(rng.next() * positions));
  return { count, seq, fill: (i, ids, targets, offset) => put(windowFrom(stream, starts[i]!, seq, padId), seq, ids, targets, offset) };
}

type Drawn = Pick<TrainSettings, 'sampling' | 'seq' | 'steps' | 'microbatch' | 'accum'>;

/** How many training samples a run over `tokens` tokens draws (TrainSettings.sampling; absent = 'windows'). */
export function trainSampleCount(s: Drawn, tokens: number): number {
  return s.sampling === 'random' ? s.steps * s.microbatch * s.accum : Math.ceil(tokens / s.seq);
}

/** A run's training samples as its settings draw them (TrainSettings.sampling; absent = 'windows'). */
export function trainSamples(stream: TokenStream, s: Drawn & Pick<TrainSettings, 'seed'>, padId: number): SampleSet {
  return s.sampling === 'random'
    ? randomPositionSamples(stream, s.seq, padId, trainSampleCount(s, stream.ids.length), s.seed)
    : windowSamples(stream, s.seq, padId);
}
