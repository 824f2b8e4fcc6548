// Contract: documents → one token stream (EOS after each text document, HF labels, label shift fixed, instruction
// records rendered with the chat template and their answers scored, chat.ts) and its train / eval split by document.
// The counts it reports are what the UI and the CLI show.

import { labelConvention, labelStats, unshiftLabels } from './labels.ts';
import { DatasetError, parseFiles, type ChatDoc, type CompletionDoc, type Doc, type IdsDoc, type SourceFile } from './parse.ts';
import { chatTemplateOf, previewPieces, renderCompletion, renderConversation, type PreviewPiece, type RenderedRecord } from './chat.ts';
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
  /** The model's name for messages (default: the tokenizer's folder name). */
  modelName?: string;
  onProgress?: (p: { documentsDone: number; documentsTotal: number; tokens: number }) => void;
}

/** How a dataset was read: 'chat' = {"messages"} or Alpaca records, rendered with the chat template. */
export type DatasetFormat = 'jsonl-ids' | 'jsonl-text' | 'text-files' | 'chat' | 'prompt-completion';

/** Formats trained record by record (each record its own samples; setup.ts sampleRuleOf's `pretokenized`). */
export const byRecord = (format: DatasetFormat): boolean => format !== 'jsonl-text' && format !== 'text-files';

/** The first record as rendered, its scored and unscored tokens apart (instruction data). */
export interface SamplePreview {
  /** Where it came from, e.g. "alpaca.json record 1". */
  record: string;
  pieces: PreviewPiece[];
  tokens: number;
  scored: number;
}

export interface BuiltDataset {
  format: DatasetFormat;
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
  /** Instruction data: the first record rendered (null for other formats). */
  preview: SamplePreview | null;
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

type Located = { ids: readonly number[]; labels: readonly number[] | null; file: string; line: number; unit?: 'line' | 'record' };

function checkVocab(docs: readonly Located[], vocab: number | null): void {
  if (vocab === null) return;
  for (const d of docs) {
    const bad = d.ids.find((x) => x >= vocab) ?? d.labels?.find((x) => x >= vocab);
    if (bad !== undefined) throw new DatasetError(d.file, d.line, `token id ${bad} is outside the model's vocabulary (${vocab} ids)`, d.unit);
  }
}

/** Records one after another as a stream (labels null when no record has any: identical to the ids). */
function concatRecords(docs: readonly Located[]): TokenStream {
  const hasLabels = docs.some((d) => d.labels);
  let total = 0;
  for (const d of docs) total += d.ids.length;
  const ids = new Int32Array(total);
  const labels = hasLabels ? new Int32Array(total) : null;
  const docStarts = new Int32Array(docs.length);
  let at = 0;
  docs.forEach((d, k) => {
    docStarts[k] = at;
    ids.set(d.ids, at);
    labels?.set(d.labels ?? d.ids, at);
    at += d.ids.length;
  });
  return { ids, labels, docStarts };
}

function assembleIds(docs: IdsDoc[], vocab: number | null, notes: string[]): { stream: TokenStream; fixed: boolean } {
  checkVocab(docs, vocab);
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
  const records = docs.map((d) => {
    if (d.labels && d.labels.length !== d.ids.length && !fixed) {
      throw new DatasetError(d.file, d.line, `"labels" has ${d.labels.length} entries for ${d.ids.length} input_ids, and the file's labels are not shifted by one`);
    }
    return { ...d, labels: d.labels && fixed ? unshiftLabels(d.ids, d.labels) : d.labels };
  });
  return { stream: concatRecords(records), fixed };
}

/** Instruction records rendered (chat template, scored answers), in order, with the first one's preview. */
async function renderRecords(docs: (ChatDoc | CompletionDoc)[], tokenizer: TextTokenizer, o: BuildOptions, notes: string[]): Promise<{ stream: TokenStream; preview: SamplePreview | null }> {
  const tok = o.modelName ? { ...tokenizer, name: o.modelName } : tokenizer;
  const chats = docs.filter((d): d is ChatDoc => d.kind === 'chat');
  const chat = chats.length ? chatTemplateOf(tok, chats[0]!.file, chats[0]!.shape === 'alpaca' ? 'Alpaca records (instruction/input/output)' : 'Conversations ({"messages": …})') : tok.chat ?? null;
  const out: (RenderedRecord & Located)[] = [];
  let last = performance.now();
  let tokens = 0;
  for (let i = 0; i < docs.length; i++) {
    const d = docs[i]!;
    const r = d.kind === 'chat' ? renderConversation(tok, chat!, d.messages, d) : renderCompletion(tok, d);
    out.push({ ...r, file: d.file, line: d.line, unit: d.unit });
    tokens += r.ids.length;
    if (performance.now() - last > 50) {
      o.onProgress?.({ documentsDone: i + 1, documentsTotal: docs.length, tokens });
      await yieldNow();
      last = performance.now();
    }
  }
  checkVocab(out, o.vocabSize ?? tok.vocabSize);
  const stream = concatRecords(out);
  const shapes = [...new Set(docs.map((d) => (d.kind === 'chat' ? (d.shape === 'alpaca' ? 'Alpaca instruction/input/output' : 'chat messages') : 'prompt/completion')))];
  notes.push(chat
    ? `${docs.length} records (${shapes.join(', ')}) rendered with the chat template of ${tok.name ?? 'the model'} (${chat.source}); the loss scores each answer and its end-of-turn token.`
    : `${docs.length} prompt/completion records: ${tok.name ?? 'the model'} has no chat template, so each is the prompt followed by the completion and the end-of-sequence token; the loss scores the completion and that token.`);
  const first = out[0]!;
  const pieces = previewPieces(tok, first);
  const preview = pieces && {
    record: `${first.file} ${first.unit ?? 'line'} ${first.line}`, pieces, tokens: first.ids.length,
    scored: first.labels.filter((l) => l !== IGNORE).length,
  };
  return { stream, preview };
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
  let preview: SamplePreview | null = null;
  const kind = docs[0]!.kind;
  if (kind === 'ids') {
    format = 'jsonl-ids';
    const r = assembleIds(docs as IdsDoc[], opts.vocabSize ?? tok?.vocabSize ?? null, notes);
    all = r.stream;
    fixed = r.fixed;
  } else if (kind === 'chat' || kind === 'completion') {
    if (!tok) throw new DatasetError(parsed.used[0] ?? '(files)', null, 'instruction records need the model\'s tokenizer, and this model has none');
    format = kind === 'chat' ? 'chat' : 'prompt-completion';
    ({ stream: all, preview } = await renderRecords(docs as (ChatDoc | CompletionDoc)[], tok, opts, notes));
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
    labelShiftFixed: fixed, labeledTokens: labeledCount(all), notes, preview,
  };
}

export { IGNORE };
