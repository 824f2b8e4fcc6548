// Contract: instruction records → token ids and Hugging Face labels (labels[i] = ids[i] where the loss scores the token,
// IGNORE elsewhere). Conversations are rendered with the model's own chat template (tokenizer.ts ChatTemplate); the
// scored tokens are each assistant answer and the end-of-turn special token that closes it. Prompt/completion records
// are a user and an assistant message when the model has a chat template, else the prompt followed by the completion
// and EOS (the completion and EOS scored).
//
// Which tokens are scored, and how they are found: the model must learn to write the answer and to end its turn; the
// role headers, the system and user messages, and scaffolding the template adds around an answer (Qwen3's empty
// <think>\n\n</think>\n\n block before the last answer) are the template's, so they are not scored. An answer's place
// in the rendered text is found by rendering the conversation again with that answer replaced by a marker character:
// the two texts differ exactly where the template put the answer (however it strips or moves it). The special token
// that follows it (after white space at most) is its end of turn (<|im_end|> for Qwen, <|eot_id|> for Llama 3, </s>
// for Mistral). Character spans become token spans on the tokenized full text: a token is scored when it overlaps the
// span (a token that straddles the edge, where the tokenizer merged template text with the answer, is scored).

import { IGNORE } from '../engine/train/token-stream.ts';
import { DatasetError, type ChatDoc, type CompletionDoc } from './records.ts';
import type { ChatMessage, ChatTemplate, TextTokenizer } from './tokenizer.ts';

/** A record as token ids and HF labels (IGNORE = not scored). */
export interface RenderedRecord {
  ids: number[];
  labels: number[];
}

/** Private-use characters no answer is expected to hold; the second one when an answer holds the first. */
const MARKERS = ['\uE000', '\uE001'];

/** Tokens of `ids` (the tokens of `full`) that lie wholly before character `c`: the ids `full`'s first c characters share with it. */
function tokensBefore(tok: TextTokenizer, full: string, ids: readonly number[], c: number): { n: number; clean: boolean } {
  const head = tok.encode(full.slice(0, c));
  let n = 0;
  while (n < head.length && n < ids.length && head[n] === ids[n]) n++;
  return { n, clean: n === head.length };
}

/** Labels scoring the tokens that overlap characters [c0, c1) of `full`. */
function scoreSpan(tok: TextTokenizer, full: string, ids: readonly number[], labels: number[], c0: number, c1: number): void {
  if (c1 <= c0) return;
  const a = tokensBefore(tok, full, ids, c0).n;
  const end = tokensBefore(tok, full, ids, c1);
  const b = end.clean ? end.n : Math.min(ids.length, end.n + 1);
  for (let i = a; i < b; i++) labels[i] = ids[i]!;
}

/** Characters [start, end) of `full` where answer `k` sits: where `full` and the render with a marker in its place differ. */
function answerSpan(chat: ChatTemplate, messages: readonly ChatMessage[], k: number, full: string): [number, number] | null {
  const content = messages[k]!.content;
  const marker = MARKERS.find((m) => !content.includes(m))!;
  const other = chat.render(messages.map((m, i) => (i === k ? { role: m.role, content: marker } : m)));
  let p = 0;
  while (p < full.length && p < other.length && full[p] === other[p]) p++;
  let s = 0;
  while (s < full.length - p && s < other.length - p && full[full.length - 1 - s] === other[other.length - 1 - s]) s++;
  return p === full.length && p === other.length ? null : [p, full.length - s];
}

/** The end-of-turn special token right after character `at` (white space before it allowed): where it ends, or `at`. */
function endOfTurn(full: string, at: number, specials: readonly string[]): number {
  const ws = /^\s*/.exec(full.slice(at))![0].length;
  const t = specials.filter((x) => full.startsWith(x, at + ws)).sort((x, y) => y.length - x.length)[0];
  return t ? at + ws + t.length : at;
}

/** `tok`'s chat template, or a refusal naming the model and what is missing. */
export function chatTemplateOf(tok: TextTokenizer, file: string, what: string): ChatTemplate {
  if (tok.chat) return tok.chat;
  throw new DatasetError(file, null,
    `${what} must be rendered with the model's chat template, and ${tok.name ?? 'this model'} has none (no "chat_template" in its tokenizer_config.json, ` +
    'no chat_template.jinja): choose a chat (instruct) model, or give the data as {"text"} or {"prompt", "completion"} records');
}

/** A conversation rendered with the chat template; the answers and their end-of-turn tokens scored. */
export function renderConversation(tok: TextTokenizer, chat: ChatTemplate, messages: readonly ChatMessage[], where: Pick<ChatDoc, 'file' | 'line' | 'unit'>): RenderedRecord {
  const fail = (why: string): never => {
    throw new DatasetError(where.file, where.line, why, where.unit);
  };
  let full: string;
  try {
    full = chat.render(messages);
  } catch (e) {
    return fail(`the chat template of ${tok.name ?? 'the model'} refused this conversation: ${(e as Error).message}`);
  }
  const ids = tok.encode(full);
  const labels = new Array<number>(ids.length).fill(IGNORE);
  const specials = tok.specialTokens ?? (tok.eosToken ? [tok.eosToken] : []);
  messages.forEach((m, k) => {
    if (m.role !== 'assistant') return;
    const span = answerSpan(chat, messages, k, full);
    if (!span) fail(`the chat template of ${tok.name ?? 'the model'} leaves out message ${k + 1} (assistant): there is nothing to score`);
    scoreSpan(tok, full, ids, labels, span![0], endOfTurn(full, span![1], specials));
  });
  return { ids, labels };
}

/** Prompt/completion: a chat of two messages with a template, else prompt + completion + EOS (completion and EOS scored). */
export function renderCompletion(tok: TextTokenizer, doc: CompletionDoc): RenderedRecord {
  if (tok.chat) return renderConversation(tok, tok.chat, [{ role: 'user', content: doc.prompt }, { role: 'assistant', content: doc.completion }], doc);
  const full = doc.prompt + doc.completion;
  const ids = tok.encode(full);
  const labels = new Array<number>(ids.length).fill(IGNORE);
  scoreSpan(tok, full, ids, labels, doc.prompt.length, full.length);
  ids.push(tok.eosId);
  labels.push(tok.eosId);
  return { ids, labels };
}

/** Runs of scored and unscored tokens of a record as text (the Datasets screen's preview). */
export interface PreviewPiece {
  text: string;
  scored: boolean;
}

export function previewPieces(tok: TextTokenizer, r: RenderedRecord): PreviewPiece[] | null {
  if (!tok.decode) return null;
  const out: PreviewPiece[] = [];
  let a = 0;
  for (let i = 1; i <= r.ids.length; i++) {
    const scored = r.labels[a] !== IGNORE;
    if (i < r.ids.length && (r.labels[i] !== IGNORE) === scored) continue;
    out.push({ text: tok.decode(r.ids.slice(a, i)), scored });
    a = i;
  }
  return out;
}
