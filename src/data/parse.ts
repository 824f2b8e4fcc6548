// Contract: raw dataset files → documents. JSONL (one record a line) and .json arrays of records (records.ts: text,
// input_ids/labels, chat messages, Alpaca, prompt/completion), plain text files and folders of source files (extension
// filter). Every error names the file and, for records, the line (JSONL) or the record number (.json).

import { jsonErrorOffset, lineAt } from './json-error.ts';
import { asRecord, DatasetError, EXPECTED_SHAPES, recordDoc, shapeName, shapeOf, type Doc, type Shape, type Where } from './records.ts';

export { DatasetError, type ChatDoc, type CompletionDoc, type Doc, type IdsDoc, type TextDoc } from './records.ts';

/** A file as read from disk, a picker or a URL; `path` is relative to what the user chose. */
export interface SourceFile {
  path: string;
  bytes: Uint8Array;
}

export interface Parsed {
  docs: Doc[];
  /** Files used and files left out (with why). */
  used: string[];
  skipped: { path: string; why: string }[];
}

const JSONL_EXT = /\.(jsonl|ndjson)$/i;
const JSON_EXT = /\.json$/i;

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
// Records

/** One shape per file: the first record's, named with its place in a refusal of another. */
function oneShape(): (rec: Record<string, unknown>, at: Where) => Shape {
  let first: { shape: Shape; at: number } | null = null;
  return (rec, at) => {
    const shape = shapeOf(rec, at);
    if (!first) first = { shape, at: at.line };
    else if (shape !== first.shape) {
      throw new DatasetError(at.file, at.line, `this ${at.unit} has ${shapeName(shape)} but ${at.unit} ${first.at} has ${shapeName(first.shape)}: one file, one format`, at.unit);
    }
    return shape;
  };
}

/** One JSONL file → documents. All lines must share one shape (records.ts). */
export function parseJsonl(file: string, text: string): Doc[] {
  const docs: Doc[] = [];
  const check = oneShape();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const at: Where = { file, line: i + 1, unit: 'line' };
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new DatasetError(file, at.line, `not valid JSON (${(e as Error).message})`);
    }
    const rec = asRecord(value, at);
    docs.push(recordDoc(rec, check(rec, at), at));
  }
  return docs;
}

/** A list whose first element is an object of a known shape (a folder's .json file read as records). */
function looksLikeRecords(list: unknown[]): boolean {
  const first = list[0];
  if (typeof first !== 'object' || first === null || Array.isArray(first)) return false;
  try {
    shapeOf(first as Record<string, unknown>, { file: '', line: 1, unit: 'record' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A .json file → documents when it is a list of records (Alpaca's own files are); null when it is not and `strict` is
 * off (a folder's other .json files stay plain text). Strict (a single chosen file): anything else is refused.
 */
export function parseJsonArray(file: string, text: string, strict: boolean): Doc[] | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    if (!strict) return null;
    const at = jsonErrorOffset(text);
    throw new DatasetError(file, at === null ? null : lineAt(text, at), `not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(value) || (!strict && !looksLikeRecords(value))) {
    if (!strict) return null;
    throw new DatasetError(file, null, `a .json dataset is a list of records, [{…}, {…}], each one ${EXPECTED_SHAPES.replace(/^expected /, '')}; this file holds ${Array.isArray(value) ? 'an empty list' : value === null ? 'null' : `a JSON ${typeof value}`}`);
  }
  const check = oneShape();
  return value.map((v, i) => {
    const at: Where = { file, line: i + 1, unit: 'record' };
    const rec = asRecord(v, at);
    return recordDoc(rec, check(rec, at), at);
  });
}

// ---------------------------------------------------------------------------------------------
// Files and folders

const KIND_TEXT: Record<Doc['kind'], string> = {
  text: 'text', ids: 'pre-tokenized records ("input_ids")', chat: 'conversations ("messages" or Alpaca)', completion: 'prompt/completion records',
};

/**
 * Files → documents. JSONL files by line, .json lists of records by record; any other text file is one document. With `extensions` non-empty,
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
    const records = JSONL_EXT.test(f.path) ? parseJsonl(f.path, text) : JSON_EXT.test(f.path) ? parseJsonArray(f.path, text, single) : null;
    if (records) docs.push(...records);
    else if (text.length) docs.push({ kind: 'text', text, file: f.path });
    else {
      skipped.push({ path: f.path, why: 'empty' });
      continue;
    }
    used.push(f.path);
  }
  const kinds = [...new Set(docs.map((d) => d.kind))];
  if (kinds.length > 1) {
    throw new DatasetError(used.join(', '), null, `mixes ${kinds.map((k) => KIND_TEXT[k]).join(' with ')}; use one kind per dataset`);
  }
  return { docs, used, skipped };
}
