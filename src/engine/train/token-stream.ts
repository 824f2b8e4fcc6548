// A tokenized dataset as one token stream (EOS after each document) with Hugging Face labels, and its cut into
// SEQ-token windows: what training consumes. The data module (src/data) builds streams; the worker and the CLI pass them on.

/** Label value the loss ignores (Hugging Face / PyTorch convention). */
export const IGNORE = -100;

export interface TokenStream {
  /** Token ids, documents one after another, EOS after each text document. // [tokens] */
  ids: Int32Array;
  /** labels[i] = ids[i] or IGNORE (the model shifts: position i predicts labels[i + 1]); null = identical to ids. // [tokens] */
  labels: Int32Array | null;
  /** Offset in `ids` where each document starts. // [documents] */
  docStarts: Int32Array;
}

export interface Window {
  ids: Int32Array; // [seq]
  labels: Int32Array; // [seq]
  /** Real tokens (the rest is padding with label IGNORE). */
  length: number;
}

/** Number of consecutive SEQ-token windows; the last, shorter one counts (it is padded). */
export function windowCount(stream: TokenStream, seq: number): number {
  return windowsIn(stream.ids.length, seq);
}

/** windowCount of a stream of `tokens` tokens. */
export function windowsIn(tokens: number, seq: number): number {
  return Math.ceil(tokens / seq);
}

/**
 * The i-th consecutive window of `seq` tokens (ids[i·seq, (i+1)·seq)). A short last window is padded with `padId`
 * and label IGNORE, so padding never counts in the loss.
 */
export function windowAt(stream: TokenStream, i: number, seq: number, padId: number): Window {
  return windowFrom(stream, i * seq, seq, padId);
}

/** `seq` tokens starting at `start` (random-position sampling, as the reference fine-tunes draw microbatches). */
export function windowFrom(stream: TokenStream, start: number, seq: number, padId: number): Window {
  if (!Number.isInteger(start) || start < 0 || start >= stream.ids.length) throw new RangeError(`window start ${start} outside 0..${stream.ids.length - 1}`);
  const end = Math.min(stream.ids.length, start + seq);
  const ids = new Int32Array(seq).fill(padId);
  const labels = new Int32Array(seq).fill(IGNORE);
  ids.set(stream.ids.subarray(start, end));
  labels.set((stream.labels ?? stream.ids).subarray(start, end));
  return { ids, labels, length: end - start };
}

/** Tokens whose label is not IGNORE. */
export function labeledCount(stream: TokenStream): number {
  if (!stream.labels) return stream.ids.length;
  let n = 0;
  for (const l of stream.labels) if (l !== IGNORE) n++;
  return n;
}

/** The listed documents of a stream, in that order, as a new stream (used for the train / eval split). */
export function selectDocuments(stream: TokenStream, docs: readonly number[]): TokenStream {
  const n = stream.docStarts.length;
  const bounds = (d: number): [number, number] => [stream.docStarts[d]!, d + 1 < n ? stream.docStarts[d + 1]! : stream.ids.length];
  let total = 0;
  for (const d of docs) {
    const [a, b] = bounds(d);
    total += b - a;
  }
  const ids = new Int32Array(total);
  const labels = stream.labels ? new Int32Array(total) : null;
  const docStarts = new Int32Array(docs.length);
  let at = 0;
  docs.forEach((d, k) => {
    const [a, b] = bounds(d);
    docStarts[k] = at;
    ids.set(stream.ids.subarray(a, b), at);
    labels?.set(stream.labels!.subarray(a, b), at);
    at += b - a;
  });
  return { ids, labels, docStarts };
}
