// Contract: raw dataset files → documents. JSONL of {"text"} or of {"input_ids", "labels"?}, plain text files and
// folders of source files (extension filter). Every error names the file and, for JSONL, the line.

import { IGNORE } from '../engine/train/token-stream.ts';

export class DatasetError extends Error {
  constructor(readonly file: string, readonly line: number | null, detail: string) {
    super(line === null ? `${file}: ${detail}` : `${file} line ${line}: ${detail}`);
    this.name = 'DatasetError';
  }
}

/** A file as read from disk, a picker or a URL; `path` is relative to what the user chose. */
export interface SourceFile {
  path: string;
  bytes: Uint8Array;
}

/** A document still to be tokenized. */
export interface TextDoc {
  kind: 'text';
  text: string;
  file: string;
}

/** A pre-tokenized record (labels as given: maybe shifted, fixed later by labels.ts). */
export interface IdsDoc {
  kind: 'ids';
  ids: number[];
  labels: number[] | null;
  file: string;
  line: number;
}

export type Doc = TextDoc | IdsDoc;

export interface Parsed {
  docs: Doc[];
  /** Files used and files left out (with why). */
  used: string[];
  skipped: { path: string; why: string }[];
}

const JSONL_EXT = /\.(jsonl|ndjson)$/i;
const MAX_ID = 0x7fffffff;

function extOf(path: string): string {
  const base = path.split('/').pop() ?? '';
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
}

function isHidden(path: string): boolean {
  return path.split('/').some((p) => p.startsWith('.') || p === 'node_modules' || p === '__pycache__');
}

function looksBinary(bytes: Uint8Array): boolean {
  const n = Math.min(bytes.length, 8192);
  for (let i = 0; i < n; i++) if (bytes[i] === 0) return true;
  return false;
}

function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// JSONL

function isIntArray(v: unknown, allowIgnore: boolean): v is number[] {
  if (!Array.isArray(v)) return false;
  for (const x of v) {
    if (typeof x !== 'number' || !Number.isInteger(x) || x > MAX_ID) return false;
    if (x < 0 && !(allowIgnore && x === IGNORE)) return false;
  }
  return true;
}

/** One JSONL file → documents. All lines must share one format ({"text"} or {"input_ids"}). */
export function parseJsonl(file: string, text: string): Doc[] {
  const docs: Doc[] = [];
  let format: 'text' | 'ids' | null = null;
  let formatLine = 0;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new DatasetError(file, lineNo, `not valid JSON (${(e as Error).message})`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new DatasetError(file, lineNo, `expected a JSON object, got ${Array.isArray(value) ? 'an array' : typeof value}`);
    }
    const rec = value as Record<string, unknown>;
    const has = (k: string) => Object.prototype.hasOwnProperty.call(rec, k);
    const kind = has('input_ids') ? 'ids' : has('text') ? 'text' : null;
    if (!kind) throw new DatasetError(file, lineNo, 'expected an object with "text" (a string) or "input_ids" (a list of token ids)');
    if (format === null) {
      format = kind;
      formatLine = lineNo;
    } else if (kind !== format) {
      throw new DatasetError(file, lineNo, `this line has "${kind === 'ids' ? 'input_ids' : 'text'}" but line ${formatLine} has "${format === 'ids' ? 'input_ids' : 'text'}": one file, one format`);
    }
    if (kind === 'text') {
      if (typeof rec.text !== 'string') throw new DatasetError(file, lineNo, `"text" must be a string, got ${typeof rec.text}`);
      docs.push({ kind: 'text', text: rec.text, file });
      continue;
    }
    const ids = rec.input_ids;
    if (!isIntArray(ids, false)) throw new DatasetError(file, lineNo, '"input_ids" must be a list of non-negative whole numbers');
    if (ids.length === 0) throw new DatasetError(file, lineNo, '"input_ids" is empty');
    let labels: number[] | null = null;
    if (has('labels') && rec.labels !== null) {
      if (!isIntArray(rec.labels, true)) throw new DatasetError(file, lineNo, '"labels" must be a list of token ids or -100');
      const n = rec.labels.length;
      if (n !== ids.length && n !== ids.length - 1) {
        throw new DatasetError(file, lineNo, `"labels" has ${n} entries for ${ids.length} input_ids (expected ${ids.length})`);
      }
      labels = rec.labels;
    }
    let keepIds = ids;
    if (has('attention_mask') && Array.isArray(rec.attention_mask)) {
      const mask = rec.attention_mask;
      if (mask.length !== ids.length) throw new DatasetError(file, lineNo, `"attention_mask" has ${mask.length} entries for ${ids.length} input_ids`);
      if (mask.some((m) => m === 0)) {
        // Padding positions are dropped; labels (same length) are cut alike.
        const keep = mask.map((m) => m !== 0);
        keepIds = ids.filter((_, j) => keep[j]);
        if (labels && labels.length === ids.length) labels = labels.filter((_, j) => keep[j]);
        else if (labels) throw new DatasetError(file, lineNo, 'padded records (attention_mask with zeros) need labels of the same length as input_ids');
      }
    }
    docs.push({ kind: 'ids', ids: keepIds, labels, file, line: lineNo });
  }
  return docs;
}

// ---------------------------------------------------------------------------------------------
// Files and folders

/**
 * Files → documents. JSONL files by line; any other text file is one document. With `extensions` non-empty,
 * only files with those extensions (and JSONL files when "jsonl" is listed, or when a single file was chosen) are used.
 * Hidden files, node_modules, binary and non-UTF-8 files are skipped and reported.
 */
export function parseFiles(files: readonly SourceFile[], extensions: readonly string[]): Parsed {
  const exts = new Set(extensions.map((e) => e.replace(/^\./, '').toLowerCase()).filter(Boolean));
  const single = files.length === 1;
  const docs: Doc[] = [];
  const used: string[] = [];
  const skipped: Parsed['skipped'] = [];
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const f of sorted) {
    if (!single) {
      if (isHidden(f.path)) {
        skipped.push({ path: f.path, why: 'hidden or dependency folder' });
        continue;
      }
      if (exts.size && !exts.has(extOf(f.path))) {
        skipped.push({ path: f.path, why: `extension not included (.${extOf(f.path) || 'none'})` });
        continue;
      }
    }
    if (looksBinary(f.bytes)) {
      if (single) throw new DatasetError(f.path, null, 'this is a binary file, not text');
      skipped.push({ path: f.path, why: 'binary' });
      continue;
    }
    const text = decodeUtf8(f.bytes);
    if (text === null) {
      if (single || JSONL_EXT.test(f.path)) throw new DatasetError(f.path, null, 'not valid UTF-8 text');
      skipped.push({ path: f.path, why: 'not UTF-8 text' });
      continue;
    }
    if (JSONL_EXT.test(f.path)) docs.push(...parseJsonl(f.path, text));
    else if (text.length) docs.push({ kind: 'text', text, file: f.path });
    else {
      skipped.push({ path: f.path, why: 'empty' });
      continue;
    }
    used.push(f.path);
  }
  const kinds = new Set(docs.map((d) => d.kind));
  if (kinds.size > 1) {
    throw new DatasetError(used.join(', '), null, 'mixes pre-tokenized records ("input_ids") with text; use one kind per dataset');
  }
  return { docs, used, skipped };
}
