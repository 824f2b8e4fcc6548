// Contract: a model's own tokenizer through @huggingface/transformers' AutoTokenizer, fed only from the model's files
// (tokenizer.json, tokenizer_config.json, chat_template.jinja / chat_template.json) — remote loading is off, nothing is
// fetched. Works in the worker and in Node.

import type { FileSet } from '../engine/io/folder.ts';

/** One message of a conversation, as chat templates take it. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The model's chat template and what renders with it. */
export interface ChatTemplate {
  /** Where it came from, e.g. "tokenizer_config.json chat_template". */
  source: string;
  /** The conversation as text, through @huggingface/transformers' apply_chat_template (not tokenized). */
  render(messages: readonly ChatMessage[], addGenerationPrompt?: boolean): string;
}

export interface TextTokenizer {
  /** Token ids of `text`, without special tokens added (EOS is added by the dataset builder); special tokens written in the text are recognised. */
  encode(text: string): number[];
  /** Text of token ids, special tokens included as text (the inverse of encode, up to normalization). */
  decode?: (ids: readonly number[]) => string;
  /** End-of-sequence id (appended after each document; also used as padding). */
  eosId: number;
  eosToken: string | null;
  /** Size of the tokenizer's vocabulary (ids are below it). */
  vocabSize: number;
  /** The model's name, for messages. */
  name?: string;
  /** The texts of the special tokens (e.g. "<|im_end|>"). */
  specialTokens?: readonly string[];
  /** The chat template; null when the model has none. */
  chat?: ChatTemplate | null;
  /**
   * The conversation rendered with tokenizer_config.json's `chat_template` and tokenized, the assistant's turn opened
   * after it (`add_generation_prompt`); null when the tokenizer has no chat template.
   */
  chatPrompt?: ((messages: readonly ChatTurn[]) => number[]) | null;
}

/** One message of a conversation (the Try screen's name for it). */
export type ChatTurn = ChatMessage;

const REQUIRED = 'tokenizer.json';
const CONFIG = 'tokenizer_config.json';

async function readBytes(folder: FileSet, path: string): Promise<Uint8Array | null> {
  const src = await folder.open(path);
  if (!src) return null;
  try {
    return await src.read(0, await src.size());
  } finally {
    await src.close?.();
  }
}

function parseJson(name: string, bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new Error(`${name} is not valid JSON: ${(e as Error).message}`);
  }
}

/** An EOS id from config.json / generation_config.json (`eos_token_id`, a number or a list). */
function eosFromModelConfig(json: unknown): number | null {
  const v = (json as { eos_token_id?: unknown } | null)?.eos_token_id;
  const first = Array.isArray(v) ? v[0] : v;
  return typeof first === 'number' && Number.isInteger(first) && first >= 0 ? first : null;
}

// transformers.js reads files through its cache interface: each load registers its files under a unique key.
const registered = new Map<string, Map<string, Uint8Array>>();
let loads = 0;
let configured = false;

type TransformersModule = typeof import('@huggingface/transformers');

async function transformers(): Promise<TransformersModule> {
  const mod = await import('@huggingface/transformers');
  if (!configured) {
    const env = mod.env;
    env.allowRemoteModels = false;
    env.allowLocalModels = true; // required by local_files_only; every file is answered by the cache below first
    env.useBrowserCache = false;
    env.useFSCache = false;
    env.useCustomCache = true;
    env.customCache = {
      match: async (request: string | Request) => {
        const key = typeof request === 'string' ? request : request.url;
        for (const [id, files] of registered) {
          const at = key.indexOf(`/${id}/`);
          if (at < 0) continue;
          const name = key.slice(at + id.length + 2);
          const bytes = files.get(name);
          if (bytes) return new Response(bytes.slice(), { headers: { 'content-length': String(bytes.byteLength) } });
        }
        return undefined;
      },
      put: async () => {},
    };
    configured = true;
  }
  return mod;
}

/**
 * Loads the tokenizer of the model in `folder`. tokenizer.json is required; tokenizer_config.json is optional
 * (EOS then comes from config.json or generation_config.json).
 */
export async function loadTokenizer(folder: FileSet): Promise<TextTokenizer> {
  const tokJson = await readBytes(folder, REQUIRED);
  if (!tokJson) throw new Error(`${folder.name} has no ${REQUIRED}: text cannot be tokenized with this model's tokenizer`);
  parseJson(REQUIRED, tokJson);
  let cfgBytes = (await readBytes(folder, CONFIG)) ?? new TextEncoder().encode('{}');
  const cfg = parseJson(CONFIG, cfgBytes);
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new Error(`${CONFIG} must be a JSON object`);
  let templateSource = `${CONFIG} chat_template`;
  if ((cfg as { chat_template?: unknown }).chat_template === undefined) {
    // newer exports keep the template beside tokenizer_config.json
    const template = await separateTemplate(folder);
    if (template) {
      templateSource = template.source;
      cfgBytes = new TextEncoder().encode(JSON.stringify({ ...cfg, chat_template: template.text }));
    }
  }

  const { AutoTokenizer } = await transformers();
  const id = `usaf-local/tokenizer-${++loads}`;
  registered.set(id, new Map([[REQUIRED, tokJson], [CONFIG, cfgBytes]]));
  let tok: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;
  try {
    tok = await AutoTokenizer.from_pretrained(id, { local_files_only: true });
  } finally {
    registered.delete(id);
  }

  let eosId: number | null = typeof tok.eos_token_id === 'number' ? tok.eos_token_id : null;
  for (const f of ['config.json', 'generation_config.json']) {
    if (eosId !== null) break;
    const b = await readBytes(folder, f);
    if (b) eosId = eosFromModelConfig(parseJson(f, b));
  }
  if (eosId === null) throw new Error(`${folder.name}: no end-of-sequence token (eos_token in ${CONFIG}, or eos_token_id in config.json)`);
  const vocabSize = tok.get_vocab().size;
  const hasTemplate = typeof tok.chat_template === 'string' ? tok.chat_template.trim() !== '' : !!tok.chat_template;
  return {
    encode: (text) => tok.encode(text, { add_special_tokens: false }),
    decode: (ids) => tok.decode([...ids], { skip_special_tokens: false }),
    eosId,
    eosToken: typeof tok.eos_token === 'string' ? tok.eos_token : null,
    vocabSize,
    name: folder.name,
    specialTokens: tok.all_special_tokens.filter((t) => typeof t === 'string' && t !== ''),
    chat: hasTemplate
      ? {
        source: templateSource,
        render: (messages, addGenerationPrompt = false) =>
          tok.apply_chat_template(messages.map((m) => ({ role: m.role, content: m.content })), { tokenize: false, add_generation_prompt: addGenerationPrompt }) as string,
      }
      : null,
    chatPrompt: hasTemplate
      ? (messages) => tok.apply_chat_template(messages.map((m) => ({ role: m.role, content: m.content })), { tokenize: true, add_generation_prompt: true, return_tensor: false, return_dict: false }) as number[]
      : null,
  };
}

/** A chat template kept beside tokenizer_config.json: chat_template.jinja, or chat_template.json's "chat_template". */
async function separateTemplate(folder: FileSet): Promise<{ text: string; source: string } | null> {
  const jinja = await readBytes(folder, 'chat_template.jinja');
  if (jinja) return { text: new TextDecoder().decode(jinja), source: 'chat_template.jinja' };
  const json = await readBytes(folder, 'chat_template.json');
  const t = json ? (parseJson('chat_template.json', json) as { chat_template?: unknown } | null)?.chat_template : undefined;
  return typeof t === 'string' ? { text: t, source: 'chat_template.json' } : null;
}
