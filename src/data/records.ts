// Contract: one dataset record (a JSONL line or an element of a .json array) → a document, its shape told by its keys:
// {"text"}, {"input_ids", "labels"?}, {"messages": [{"role", "content"}…]} (chat), Alpaca {"instruction", "input"?,
// "output"} (a chat of one user and one assistant message) or {"prompt", "completion"}. A record with the keys of two
// shapes, and every bad value, is refused naming where it is (line or record number) and what is wrong.

import { IGNORE } from '../engine/train/token-stream.ts';
import type { ChatMessage } from './tokenizer.ts';

export class DatasetError extends Error {
  /** `line`: the line of a JSONL file, or the record number (from 1) of a .json array when `unit` is 'record'. */
  constructor(readonly file: string, readonly line: number | null, detail: string, readonly unit: 'line' | 'record' = 'line') {
    super(line === null ? `${file}: ${detail}` : `${file} ${unit} ${line}: ${detail}`);
    this.name = 'DatasetError';
  }
}

/** Where a record is: its file and its line (JSONL) or record number (.json array). */
export interface Where {
  file: string;
  line: number;
  unit: 'line' | 'record';
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

/** A conversation to render with the model's chat template; the loss on the assistant's answers. */
export interface ChatDoc extends Where {
  kind: 'chat';
  shape: 'messages' | 'alpaca';
  messages: ChatMessage[];
}

/** A prompt and its completion; the loss on the completion. */
export interface CompletionDoc extends Where {
  kind: 'completion';
  prompt: string;
  completion: string;
}

export type Doc = TextDoc | IdsDoc | ChatDoc | CompletionDoc;

export type Shape = 'text' | 'ids' | 'messages' | 'alpaca' | 'completion';

/** The keys that tell each shape, as messages name them. */
const SHAPES: readonly { shape: Shape; keys: readonly string[]; named: string }[] = [
  { shape: 'text', keys: ['text'], named: '"text"' },
  { shape: 'ids', keys: ['input_ids'], named: '"input_ids"' },
  { shape: 'messages', keys: ['messages'], named: '"messages"' },
  { shape: 'alpaca', keys: ['instruction', 'output'], named: '"instruction"/"output" (Alpaca)' },
  { shape: 'completion', keys: ['prompt', 'completion'], named: '"prompt"/"completion"' },
];

export const shapeName = (s: Shape): string => SHAPES.find((x) => x.shape === s)!.named;

export const EXPECTED_SHAPES = 'expected an object with "text" (a string), "input_ids" (a list of token ids), '
  + '"messages" (a list of {"role", "content"}), "instruction" and "output" (Alpaca) or "prompt" and "completion"';

const ROLES: readonly ChatMessage['role'][] = ['system', 'user', 'assistant'];
const MAX_ID = 0x7fffffff;

const own = (rec: object, k: string): boolean => Object.prototype.hasOwnProperty.call(rec, k);

/** The shape of a record by its keys; refused when it has none or the keys of two. */
export function shapeOf(rec: Record<string, unknown>, at: Where): Shape {
  const found = SHAPES.filter((s) => s.keys.some((k) => own(rec, k)));
  if (found.length === 0) throw new DatasetError(at.file, at.line, EXPECTED_SHAPES, at.unit);
  if (found.length > 1) {
    throw new DatasetError(at.file, at.line, `this record mixes shapes: it has ${found.map((s) => s.named).join(' and ')}; one record, one shape`, at.unit);
  }
  return found[0]!.shape;
}

function isIntArray(v: unknown, allowIgnore: boolean): v is number[] {
  if (!Array.isArray(v)) return false;
  for (const x of v) {
    if (typeof x !== 'number' || !Number.isInteger(x) || x > MAX_ID) return false;
    if (x < 0 && !(allowIgnore && x === IGNORE)) return false;
  }
  return true;
}

/** A required, non-blank string field. */
function text(rec: Record<string, unknown>, key: string, at: Where, what = `"${key}"`): string {
  const v = rec[key];
  const fail = (why: string): never => {
    throw new DatasetError(at.file, at.line, `${what} ${why}`, at.unit);
  };
  if (v === undefined || v === null) fail('is missing');
  if (typeof v !== 'string') fail(`must be a string, got ${Array.isArray(v) ? 'a list' : typeof v}`);
  if ((v as string).trim() === '') fail('is empty');
  return v as string;
}

function messagesOf(rec: Record<string, unknown>, at: Where): ChatMessage[] {
  const fail = (why: string): never => {
    throw new DatasetError(at.file, at.line, why, at.unit);
  };
  const list = rec.messages;
  if (!Array.isArray(list) || list.length === 0) fail('"messages" must be a non-empty list of {"role", "content"}');
  const out: ChatMessage[] = [];
  (list as unknown[]).forEach((m, i) => {
    const n = `message ${i + 1}`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) fail(`${n} is not an object {"role", "content"}`);
    const msg = m as Record<string, unknown>;
    if (!own(msg, 'role') || msg.role === null) fail(`${n} has no "role"`);
    if (!ROLES.includes(msg.role as ChatMessage['role'])) fail(`${n} has an unknown role ${JSON.stringify(msg.role)} (expected ${ROLES.join(', ')})`);
    const role = msg.role as ChatMessage['role'];
    out.push({ role, content: text(msg, 'content', at, `${n} (${role}): "content"`) });
  });
  if (!out.some((m) => m.role === 'assistant')) fail('no assistant message: the loss is on the assistant\'s answers, and this conversation has none');
  return out;
}

function idsDoc(rec: Record<string, unknown>, at: Where): IdsDoc {
  const fail = (why: string): never => {
    throw new DatasetError(at.file, at.line, why, at.unit);
  };
  const ids = rec.input_ids;
  if (!isIntArray(ids, false)) return fail('"input_ids" must be a list of non-negative whole numbers');
  if (ids.length === 0) fail('"input_ids" is empty');
  let labels: number[] | null = null;
  if (own(rec, 'labels') && rec.labels !== null) {
    if (!isIntArray(rec.labels, true)) fail('"labels" must be a list of token ids or -100');
    const n = (rec.labels as number[]).length;
    if (n !== ids.length && n !== ids.length - 1) fail(`"labels" has ${n} entries for ${ids.length} input_ids (expected ${ids.length})`);
    labels = rec.labels as number[];
  }
  let keepIds = ids;
  if (own(rec, 'attention_mask') && Array.isArray(rec.attention_mask)) {
    const mask = rec.attention_mask as unknown[];
    if (mask.length !== ids.length) fail(`"attention_mask" has ${mask.length} entries for ${ids.length} input_ids`);
    if (mask.some((m) => m === 0)) {
      // Padding positions are dropped; labels (same length) are cut alike.
      const keep = mask.map((m) => m !== 0);
      keepIds = ids.filter((_, j) => keep[j]);
      if (labels && labels.length === ids.length) labels = labels.filter((_, j) => keep[j]);
      else if (labels) fail('padded records (attention_mask with zeros) need labels of the same length as input_ids');
    }
  }
  return { kind: 'ids', ids: keepIds, labels, file: at.file, line: at.line };
}

/** One record (a parsed JSON value) → its document; `shape` is what shapeOf said of it. */
export function recordDoc(rec: Record<string, unknown>, shape: Shape, at: Where): Doc {
  switch (shape) {
    case 'text':
      if (typeof rec.text !== 'string') throw new DatasetError(at.file, at.line, `"text" must be a string, got ${typeof rec.text}`, at.unit);
      return { kind: 'text', text: rec.text, file: at.file };
    case 'ids':
      return idsDoc(rec, at);
    case 'messages':
      return { kind: 'chat', shape, messages: messagesOf(rec, at), ...at };
    case 'alpaca': {
      const instruction = text(rec, 'instruction', at);
      const input = rec.input;
      if (input !== undefined && input !== null && typeof input !== 'string') {
        throw new DatasetError(at.file, at.line, `"input" must be a string, got ${typeof input}`, at.unit);
      }
      // Alpaca's own layout: the instruction, then the input (when there is one) after a blank line
      const user = typeof input === 'string' && input.trim() !== '' ? `${instruction}\n\n${input}` : instruction;
      return { kind: 'chat', shape, messages: [{ role: 'user', content: user }, { role: 'assistant', content: text(rec, 'output', at) }], ...at };
    }
    case 'completion':
      return { kind: 'completion', prompt: text(rec, 'prompt', at), completion: text(rec, 'completion', at), ...at };
  }
}

/** A parsed JSON value as a record object, or refused naming where it is. */
export function asRecord(value: unknown, at: Where): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DatasetError(at.file, at.line, `expected a JSON object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`, at.unit);
  }
  return value as Record<string, unknown>;
}
