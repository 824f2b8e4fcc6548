// Sample sets over a token stream: SEQ-token windows with next-token targets (labels shifted by one; the last position
// of a window and IGNORE labels are not scored). Used for training samples and evaluation. Three rules draw a run's
// training samples (SampleRule): 'random' (text: SEQ tokens at random positions of the stream, as the seed), 'windows'
// (the consecutive windows evaluation scores) and 'records' (pre-tokenized data: each record its own samples, cut into
// SEQ windows when longer, padded when shorter, never straddling two records). The Trainer visits them in a seeded
// order, reshuffled each epoch.

import { IGNORE as LABEL_IGNORE, windowCount, windowFrom, type TokenStream, type Window } from './token-stream.ts';
import { IGNORE } from './forward.ts';
import { Rng } from './rng.ts';
import type { SampleSet } from './types.ts';
import type { Sampling, TrainSettings } from './settings.ts';

/** How a run draws its training samples (the Trainer's `sampling` plus the records of pre-tokenized data). */
export type SampleRule = Sampling | 'records';

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

/**
 * Each record (document) of the stream cut into windows of `seq` tokens (the last one of a record padded), record after
 * record: a window never holds tokens of two records, and a record's last token predicts nothing.
 */
export function recordSamples(stream: TokenStream, seq: number, padId: number): SampleSet {
  const docs = stream.docStarts.length;
  const starts: number[] = [];
  const ends: number[] = [];
  for (let d = 0; d < docs; d++) {
    const end = d + 1 < docs ? stream.docStarts[d + 1]! : stream.ids.length;
    for (let a = stream.docStarts[d]!; a < end; a += seq) (starts.push(a), ends.push(Math.min(end, a + seq)));
  }
  const labels = stream.labels ?? stream.ids;
  return {
    count: starts.length,
    seq,
    fill: (i, ids, targets, offset) => {
      const a = starts[i]!;
      const n = ends[i]! - a;
      const w: Window = { ids: new Int32Array(seq).fill(padId), labels: new Int32Array(seq).fill(LABEL_IGNORE), length: n };
      w.ids.set(stream.ids.subarray(a, a + n));
      w.labels.set(labels.subarray(a, a + n));
      put(w, seq, ids, targets, offset);
    },
  };
}

type Drawn = Pick<TrainSettings, 'seq' | 'steps' | 'microbatch' | 'accum'> & { sampling?: SampleRule };

/**
 * How many training samples a run over `tokens` tokens draws (sampling absent = 'windows'). For 'records' this is a
 * lower bound (each record's last window may be a short, padded one): the memory plan's estimate before the data is read.
 */
export function trainSampleCount(s: Drawn, tokens: number): number {
  return s.sampling === 'random' ? s.steps * s.microbatch * s.accum : Math.ceil(tokens / s.seq);
}

/** A run's training samples as its rule draws them (sampling absent = 'windows'). */
export function trainSamples(stream: TokenStream, s: Drawn & Pick<TrainSettings, 'seed'>, padId: number): SampleSet {
  if (s.sampling === 'records') return recordSamples(stream, s.seq, padId);
  return s.sampling === 'random'
    ? randomPositionSamples(stream, s.seq, padId, trainSampleCount(s, stream.ids.length), s.seed)
    : windowSamples(stream, s.seq, padId);
}
