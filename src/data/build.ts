// Contract: documents → one token stream (EOS after each text document, HF labels, label shift fixed) and its
// train / eval split by document. The counts it reports are what the UI and the CLI show.

import { labelConvention, labelStats, unshiftLabels } from './labels.ts';
import { DatasetError, parseFiles, type Doc, type IdsDoc, type SourceFile } from './parse.ts';
import { IGNORE, labeledCount, selectDocuments, type TokenStream } from '../engine/train/token-stream.ts';
import type { TextTokenizer } from './tokenizer.ts';

export interface BuildOptions {
  /** Extensions to include from folders (empty = all text files). */
  extensions?: readonly string[];
  /** Fraction of documents held apart for in-domain evaluation (0 = none). */
  evalFraction?: number;
  seed?: number;
  /** Pre-tokenized ids must be below this (the model's vocabulary); default: the tokenizer's. */
  vocabSize?: number;
  onProgress?: (p: { documentsDone: number; documentsTotal: number; tokens: number }) => void;
}

export interface BuiltDataset {
  format: 'jsonl-ids' | 'jsonl-text' | 'text-files';
  /** Every document. */
  all: TokenStream;
  train: TokenStream;
  /** Held apart for in-domain evaluation; null when evalFraction is 0. */
  eval: TokenStream | null;
  documents: number;
  files: string[];
  skipped: { path: string; why: string }[];
  labelShiftFixed: boolean;
  labeledTokens: number;
  notes: string[];
}

/** A small seeded generator (mulberry32) for the document shuffle. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Document indices of the eval part: round(fraction · n), at least 1 when fraction > 0 and n ≥ 2, never all. */
export function evalDocuments(n: number, fraction: number, seed: number): number[] {
  if (!(fraction > 0) || n < 2) return [];
  const k = Math.min(n - 1, Math.max(1, Math.round(fraction * n)));
  const order = Array.from({ length: n }, (_, i) => i);
  const rand = rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order.slice(0, k).sort((a, b) => a - b);
}

const yieldNow = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

async function tokenizeTexts(docs: Doc[], tok: TextTokenizer, onProgress: BuildOptions['onProgress']): Promise<{ ids: Int32Array; starts: Int32Array }> {
  const parts: number[][] = [];
  const starts = new Int32Array(docs.length);
  let total = 0;
  let last = performance.now();
  for (let i = 0; i < docs.length; i++) {
    const d = docs[i] as Extract<Doc, { kind: 'text' }>;
    const ids = tok.encode(d.text);
    ids.push(tok.eosId);
    starts[i] = total;
    total += ids.length;
    parts.push(ids);
    if (performance.now() - last > 50) {
      onProgress?.({ documentsDone: i + 1, documentsTotal: docs.length, tokens: total });
      await yieldNow(); // lets the worker answer messages (progress, cancel) between documents
      last = performance.now();
    }
  }
  const ids = new Int32Array(total);
  let at = 0;
  for (const p of parts) {
    ids.set(p, at);
    at += p.length;
  }
  return { ids, starts };
}

function assembleIds(docs: IdsDoc[], vocab: number | null, notes: string[]): { stream: TokenStream; fixed: boolean } {
  if (vocab !== null) {
    for (const d of docs) {
      const bad = d.ids.find((x) => x >= vocab) ?? d.labels?.find((x) => x >= vocab);
      if (bad !== undefined) throw new DatasetError(d.file, d.line, `token id ${bad} is outside the model's vocabulary (${vocab} ids)`);
    }
  }
  const stats = labelStats(docs);
  const convention = labelConvention(stats);
  const fixed = convention === 'shifted';
  if (fixed) {
    notes.push(`The labels were input_ids shifted by one (labels[i] = input_ids[i+1], as the seed's README recipe writes them); ` +
      `they were shifted back to the Hugging Face convention (labels = input_ids, the model shifts), with the first label of each record ignored. ` +
      `${stats.shifted} of ${stats.compared} labels matched the next token.`);
  } else if (convention === 'custom') {
    notes.push(`The labels differ from input_ids at ${stats.compared - stats.same} of ${stats.compared} labelled positions; they are used as given (Hugging Face convention: the model shifts).`);
  }
  const hasLabels = docs.some((d) => d.labels);
  let total = 0;
  for (const d of docs) total += d.ids.length;
  const ids = new Int32Array(total);
  const labels = hasLabels ? new Int32Array(total) : null;
  const docStarts = new Int32Array(docs.length);
  let at = 0;
  docs.forEach((d, k) => {
    if (d.labels && d.labels.length !== d.ids.length && !fixed) {
      throw new DatasetError(d.file, d.line, `"labels" has ${d.labels.length} entries for ${d.ids.length} input_ids, and the file's labels are not shifted by one`);
    }
    docStarts[k] = at;
    ids.set(d.ids, at);
    if (labels) labels.set(d.labels ? (fixed ? unshiftLabels(d.ids, d.labels) : d.labels) : d.ids, at);
    at += d.ids.length;
  });
  return { stream: { ids, labels, docStarts }, fixed };
}

/** Files → the dataset (tokenized with `tok` unless every file is pre-tokenized). */
export async function buildDataset(files: readonly SourceFile[], tok: TextTokenizer | null, opts: BuildOptions = {}): Promise<BuiltDataset> {
  if (files.length === 0) throw new DatasetError('(no files)', null, 'nothing to read');
  const parsed = parseFiles(files, opts.extensions ?? []);
  const { docs } = parsed;
  if (docs.length === 0) {
    throw new DatasetError(files.length === 1 ? files[0]!.path : `${files.length} files`, null,
      `no documents found${parsed.skipped.length ? ` (${parsed.skipped.length} file(s) skipped: ${parsed.skipped.slice(0, 3).map((s) => `${s.path}: ${s.why}`).join('; ')})` : ''}`);
  }
  const notes: string[] = [];
  let all: TokenStream;
  let fixed = false;
  let format: BuiltDataset['format'];
  if (docs[0]!.kind === 'ids') {
    format = 'jsonl-ids';
    const r = assembleIds(docs as IdsDoc[], opts.vocabSize ?? tok?.vocabSize ?? null, notes);
    all = r.stream;
    fixed = r.fixed;
  } else {
    if (!tok) throw new DatasetError(parsed.used[0] ?? '(files)', null, 'text needs the model\'s tokenizer, and this model has none');
    format = parsed.used.every((p) => /\.(jsonl|ndjson)$/i.test(p)) ? 'jsonl-text' : 'text-files';
    const { ids, starts } = await tokenizeTexts(docs, tok, opts.onProgress);
    all = { ids, labels: null, docStarts: starts };
  }
  opts.onProgress?.({ documentsDone: docs.length, documentsTotal: docs.length, tokens: all.ids.length });
  if (parsed.skipped.length) notes.push(`${parsed.skipped.length} file(s) skipped (${[...new Set(parsed.skipped.map((s) => s.why))].join(', ')}).`);

  const evalDocs = evalDocuments(docs.length, opts.evalFraction ?? 0, opts.seed ?? 0);
  let train = all;
  let evalStream: TokenStream | null = null;
  if (evalDocs.length) {
    const isEval = new Set(evalDocs);
    train = selectDocuments(all, docs.map((_, i) => i).filter((i) => !isEval.has(i)));
    evalStream = selectDocuments(all, evalDocs);
  }
  return {
    format, all, train, eval: evalStream, documents: docs.length, files: parsed.used, skipped: parsed.skipped,
    labelShiftFixed: fixed, labeledTokens: labeledCount(all), notes,
  };
}

export { IGNORE };
