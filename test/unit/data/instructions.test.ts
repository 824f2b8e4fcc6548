// Instruction data: the shapes of records (chat messages, Alpaca as a .json list or JSONL, prompt/completion), each
// refusal naming its line or record, the rendering with a Qwen3-style chat template (test/data-fixtures/qwen3_chat_tokenizer)
// against hand-built text, the label mask against an independent per-token oracle, TRAIN_ON_PROMPT, evaluation on the
// same tokens, and a model without a chat template.
//
// Scored tokens (chat.ts): each assistant answer and the end-of-turn token that closes it (<|im_end|>), nothing else —
// not the role headers, not the system or user turns, not the empty <think>\n\n</think>\n\n block Qwen3's template puts
// before the last answer, not the "\n" after <|im_end|>. The model learns to write the answer and to stop.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { errorOf } from '../../helpers/dataset-error.ts';
import {
  buildDataset, loadTokenizer, parseFiles, parseJsonArray, parseJsonl, renderConversation,
  type ChatMessage, type SourceFile, type TextTokenizer,
} from '../../../src/data/index.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { jsonErrorOffset } from '../../../src/data/json-error.ts';
import { tokenizeFile } from '../../../src/cli/dataset.ts';
import { IGNORE, type TokenStream } from '../../../src/engine/train/token-stream.ts';
import { windowSamples } from '../../../src/engine/train/samples.ts';
import { IGNORE as TARGET_IGNORE } from '../../../src/engine/train/forward.ts';
import { scoreAllTokens, setupRun } from '../../../src/engine/train/setup.ts';
import { DEFAULTS, defaultRunSettings } from '../../../src/engine/train/settings-table.ts';
import { parseConfig } from '../../../src/engine/model/index.ts';

const FIX = 'test/data-fixtures/instructions';
const CHAT_TOK = 'test/data-fixtures/qwen3_chat_tokenizer';
const DEMO = 'public/models/usaf-demo-moe';
const read = (name: string): SourceFile => ({ path: name, bytes: new Uint8Array(readFileSync(join(FIX, name))) });
const text = (name: string): string => readFileSync(join(FIX, name), 'utf8');

let tok: TextTokenizer;
let demo: TextTokenizer;
beforeAll(async () => {
  tok = await loadTokenizer(nodeFolder(CHAT_TOK));
  demo = await loadTokenizer(nodeFolder(DEMO));
}, 120_000);

describe('shapes of instruction records', () => {
  it('messages JSONL: one conversation a line', () => {
    const docs = parseJsonl('m.jsonl', text('messages.jsonl'));
    expect(docs).toHaveLength(3);
    expect(docs[1]).toEqual({
      kind: 'chat', shape: 'messages', file: 'm.jsonl', line: 2, unit: 'line',
      messages: [
        { role: 'user', content: 'Double a value.' }, { role: 'assistant', content: 'const twice = (x) => 2 * x;' },
        { role: 'user', content: 'Now halve it.' }, { role: 'assistant', content: 'const half = (x) => x / 2;' },
      ],
    });
  });

  it('Alpaca .json list and Alpaca JSONL: the instruction, a blank line and the input as the user turn, the output as the answer', () => {
    const fromJson = parseFiles([read('alpaca.json')], []).docs;
    const fromJsonl = parseFiles([read('alpaca.jsonl')], []).docs;
    expect(fromJson).toHaveLength(3);
    expect(fromJson[1]).toEqual({
      kind: 'chat', shape: 'alpaca', file: 'alpaca.json', line: 2, unit: 'record',
      messages: [{ role: 'user', content: 'Rename the variable.\n\nlet x = 1;' }, { role: 'assistant', content: 'let count = 1;' }],
    });
    // an empty input adds nothing
    expect(fromJson[0]).toMatchObject({ messages: [{ role: 'user', content: 'Write a function that adds two numbers.' }, { role: 'assistant' }] });
    expect(fromJsonl.map((d) => (d.kind === 'chat' ? d.messages : null))).toEqual(fromJson.slice(0, 2).map((d) => (d.kind === 'chat' ? d.messages : null)));
    expect(fromJsonl[1]).toMatchObject({ line: 2, unit: 'line' });
  });

  it('prompt/completion JSONL', () => {
    expect(parseJsonl('p.jsonl', text('prompt-completion.jsonl'))[1]).toEqual({
      kind: 'completion', prompt: '// double a value\nconst twice = (x) =>', completion: ' 2 * x;', file: 'p.jsonl', line: 2, unit: 'line',
    });
  });

  it('a folder\'s .json files that are not lists of records stay plain text; a single .json file must be one', () => {
    const cfg: SourceFile = { path: 'src/package.json', bytes: new TextEncoder().encode('{"name": "x"}') };
    const code: SourceFile = { path: 'src/a.js', bytes: new TextEncoder().encode('let a;') };
    expect(parseFiles([cfg, code], []).docs.map((d) => d.kind)).toEqual(['text', 'text']);
    expect(errorOf(() => parseFiles([{ ...cfg, path: 'package.json' }], [])).message)
      .toMatch(/^package\.json: a \.json dataset is a list of records, \[\{…\}, \{…\}\], each one an object with "text".*this file holds a JSON object$/);
  });
});

describe('refusals name the line (or record) and what is wrong', () => {
  const cases: [string, string][] = [
    ['bad-no-role.jsonl', 'bad-no-role.jsonl line 2: message 2 has no "role"'],
    ['bad-unknown-role.jsonl', 'bad-unknown-role.jsonl line 1: message 2 has an unknown role "bot" (expected system, user, assistant)'],
    ['bad-empty-content.jsonl', 'bad-empty-content.jsonl line 3: message 2 (assistant): "content" is empty'],
    ['bad-no-assistant.jsonl', 'bad-no-assistant.jsonl line 1: no assistant message: the loss is on the assistant\'s answers, and this conversation has none'],
    ['bad-mixed-record.jsonl', 'bad-mixed-record.jsonl line 2: this record mixes shapes: it has "messages" and "prompt"/"completion"; one record, one shape'],
    ['bad-mixed-file.jsonl', 'bad-mixed-file.jsonl line 2: this line has "instruction"/"output" (Alpaca) but line 1 has "messages": one file, one format'],
    ['bad-alpaca.json', 'bad-alpaca.json record 2: "output" is missing'],
  ];
  for (const [name, message] of cases) {
    it(name, () => {
      const e = errorOf(() => parseFiles([read(name)], []));
      expect(e.message).toBe(message);
    });
  }

  it('jsonErrorOffset finds where JSON stops being valid', () => {
    for (const [t, at] of [['[1,,]', 3], ['{"a": 1', 7], ['[{"a": "x\\q"}]', 10], ['[1] 2', 4], ['{"a":[true,nul]}', 11], ['[-]', 1], ['[1, "\\u12G4"]', 9]] as const) {
      expect([t, jsonErrorOffset(t)]).toEqual([t, at]);
      expect(() => JSON.parse(t)).toThrow();
    }
    for (const t of ['[]', '{"a": [1, -2.5e3, "\\u00e9", null, false, {}]}', ' "x" ']) expect(jsonErrorOffset(t)).toBeNull();
  });

  it('invalid JSON: the JSONL line, and the line of a .json file', () => {
    const a = errorOf(() => parseFiles([read('bad-invalid.jsonl')], []));
    expect(a.message).toMatch(/^bad-invalid\.jsonl line 2: not valid JSON/);
    const b = errorOf(() => parseFiles([read('bad-invalid.json')], []));
    expect(b.message).toMatch(/^bad-invalid\.json line 3: not valid JSON/);
  });

  it('other bad values', () => {
    const one = (line: string) => errorOf(() => parseJsonl('x.jsonl', line)).message;
    expect(one('{"messages": []}')).toBe('x.jsonl line 1: "messages" must be a non-empty list of {"role", "content"}');
    expect(one('{"messages": ["hi"]}')).toBe('x.jsonl line 1: message 1 is not an object {"role", "content"}');
    expect(one('{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]}')).toBe('x.jsonl line 1: message 1 (user): "content" must be a string, got number');
    expect(one('{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}')).toBe('x.jsonl line 1: message 1 (user): "content" is missing');
    expect(one('{"prompt": "a", "completion": ""}')).toBe('x.jsonl line 1: "completion" is empty');
    expect(one('{"instruction": "a", "input": 5, "output": "b"}')).toBe('x.jsonl line 1: "input" must be a string, got number');
    expect(errorOf(() => parseJsonArray('x.json', '[{"prompt": "a", "completion": "b"}, 7]', true)).message).toBe('x.json record 2: expected a JSON object, got number');
  });

  it('datasets of two files may not mix conversations with text', () => {
    const t: SourceFile = { path: 'b.jsonl', bytes: new TextEncoder().encode('{"text": "x"}\n') };
    expect(errorOf(() => parseFiles([read('messages.jsonl'), t], [])).message).toMatch(/mixes text with conversations \("messages" or Alpaca\)/);
  });
});

/** Which tokens of `ids` (the tokens of `full`) overlap one of the character spans: an oracle by per-token decoding (ASCII text). */
function oracleLabels(t: TextTokenizer, full: string, ids: number[], spans: [number, number][]): number[] {
  let at = 0;
  const out = ids.map((id) => {
    const piece = t.decode!([id]);
    const [a, b] = [at, at + piece.length];
    at = b;
    return spans.some(([s, e]) => a < e && b > s) ? id : IGNORE;
  });
  expect(at).toBe(full.length); // the pieces are the text, character for character
  return out;
}

/** The spans of `answers` (each with the <|im_end|> after it) in `full`, found by hand-written search from `from`. */
function answerSpans(full: string, answers: string[]): [number, number][] {
  let from = 0;
  return answers.map((a) => {
    const s = full.indexOf(a + '<|im_end|>', from);
    expect(s).toBeGreaterThan(0);
    from = s + a.length;
    return [s, s + a.length + '<|im_end|>'.length];
  });
}

describe('rendering with the chat template (Qwen3 style) and the label mask', () => {
  it('the fixture tokenizer carries the chat tokens and a template', () => {
    expect(tok.encode('<|im_start|><|im_end|><think></think>')).toEqual([507, 508, 509, 510]);
    expect(tok.eosToken).toBe('<|im_end|>');
    expect(tok.chat?.source).toBe('tokenizer_config.json chat_template');
    expect(tok.vocabSize).toBe(511);
  });

  it('an Alpaca record: the ids are the tokens of the hand-built Qwen3 text; the answer and <|im_end|> scored', async () => {
    const ds = await buildDataset([read('alpaca.json')], tok);
    const full = '<|im_start|>user\nRename the variable.\n\nlet x = 1;<|im_end|>\n'
      + '<|im_start|>assistant\n<think>\n\n</think>\n\nlet count = 1;<|im_end|>\n';
    const expected = tok.encode(full);
    const start = ds.all.docStarts[1]!;
    const ids = [...ds.all.ids.subarray(start, ds.all.docStarts[2]!)];
    expect(ids).toEqual(expected);
    const labels = [...ds.all.labels!.subarray(start, start + ids.length)];
    expect(labels).toEqual(oracleLabels(tok, full, expected, answerSpans(full, ['let count = 1;'])));
    // segment by segment: the scored ids are exactly the answer's tokens and <|im_end|>
    expect(labels.filter((l) => l !== IGNORE)).toEqual([...tok.encode('let count = 1;'), 508]);
    expect(ds.format).toBe('chat');
  });

  it('multi-turn with a system message: each answer scored, the earlier one without a think block (only the last gets one)', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You write short JavaScript.' },
      { role: 'user', content: 'Double a value.' }, { role: 'assistant', content: 'const twice = (x) => 2 * x;' },
      { role: 'user', content: 'Now halve it.' }, { role: 'assistant', content: 'const half = (x) => x / 2;' },
    ];
    const r = renderConversation(tok, tok.chat!, messages, { file: 'f', line: 1, unit: 'line' });
    const full = '<|im_start|>system\nYou write short JavaScript.<|im_end|>\n<|im_start|>user\nDouble a value.<|im_end|>\n'
      + '<|im_start|>assistant\nconst twice = (x) => 2 * x;<|im_end|>\n<|im_start|>user\nNow halve it.<|im_end|>\n'
      + '<|im_start|>assistant\n<think>\n\n</think>\n\nconst half = (x) => x / 2;<|im_end|>\n';
    expect(r.ids).toEqual(tok.encode(full));
    expect(r.labels).toEqual(oracleLabels(tok, full, r.ids, answerSpans(full, ['const twice = (x) => 2 * x;', 'const half = (x) => x / 2;'])));
    expect(r.labels.filter((l) => l === 508)).toHaveLength(2); // two ends of turn scored, of four <|im_end|>
    expect(r.ids.filter((l) => l === 508)).toHaveLength(5);
  });

  it('an answer whose first token the tokenizer merges with the header ("\n  ") is scored from that token on', () => {
    // (an earlier answer: @huggingface/jinja's lstrip('\n') strips every leading space of the last one, unlike Python's)
    const messages: ChatMessage[] = [
      { role: 'user', content: 'Indent.' }, { role: 'assistant', content: '  return 1;' }, { role: 'user', content: 'Thanks.' }, { role: 'assistant', content: 'Done.' },
    ];
    const r = renderConversation(tok, tok.chat!, messages, { file: 'f', line: 1, unit: 'line' });
    const full = '<|im_start|>user\nIndent.<|im_end|>\n<|im_start|>assistant\n  return 1;<|im_end|>\n<|im_start|>user\nThanks.<|im_end|>\n'
      + '<|im_start|>assistant\n<think>\n\n</think>\n\nDone.<|im_end|>\n';
    expect(r.ids).toEqual(tok.encode(full));
    expect(r.labels).toEqual(oracleLabels(tok, full, r.ids, answerSpans(full, ['  return 1;', 'Done.'])));
    // the straddling token holds template text too: it is the first scored one
    const first = r.labels.findIndex((l) => l !== IGNORE);
    expect(tok.decode!([r.ids[first]!])).toMatch(/^\n {1,2}$/);
  });

  it('a template that ends turns with EOS after a space (Llama-2 style) scores the answer, the space and EOS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usaf-chat-'));
    copyFileSync(join(DEMO, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const cfg = JSON.parse(readFileSync(join(DEMO, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    cfg.chat_template = "{% for m in messages %}{% if m.role == 'user' %}{{ '[INST] ' + m.content + ' [/INST]' }}{% else %}{{ ' ' + m.content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
    const t = await loadTokenizer(nodeFolder(dir));
    const messages: ChatMessage[] = [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: ' Hello there ' }];
    const r = renderConversation(t, t.chat!, messages, { file: 'f', line: 1, unit: 'line' });
    const full = '[INST] Hi [/INST] Hello there <|endoftext|>';
    expect(r.ids).toEqual(demo.encode(full));
    const s = full.indexOf('Hello');
    expect(r.labels).toEqual(oracleLabels(demo, full, r.ids, [[s, full.length]]));
  });

  it('messages JSONL, Alpaca JSONL and prompt/completion: every record scores its answers, counted', async () => {
    for (const name of ['messages.jsonl', 'alpaca.jsonl', 'prompt-completion.jsonl']) {
      const ds = await buildDataset([read(name)], tok);
      const n = ds.all.docStarts.length;
      let scored = 0;
      for (let d = 0; d < n; d++) {
        const a = ds.all.docStarts[d]!;
        const b = d + 1 < n ? ds.all.docStarts[d + 1]! : ds.all.ids.length;
        const labels = [...ds.all.labels!.subarray(a, b)];
        const ids = [...ds.all.ids.subarray(a, b)];
        // each record: scored labels equal their ids, the last scored one is an <|im_end|>, the first token is not scored
        expect(labels.every((l, i) => l === IGNORE || l === ids[i])).toBe(true);
        expect(labels[0]).toBe(IGNORE);
        expect(labels.filter((l) => l !== IGNORE).at(-1)).toBe(508);
        scored += labels.filter((l) => l !== IGNORE).length;
      }
      expect(ds.labeledTokens).toBe(scored);
      expect(ds.labeledTokens).toBeLessThan(ds.all.ids.length / 2);
      expect(ds.preview!.scored).toBeGreaterThan(0);
      expect(ds.notes.join(' ')).toMatch(/rendered with the chat template of qwen3_chat_tokenizer \(tokenizer_config\.json chat_template\); the loss scores each answer and its end-of-turn token/);
    }
  });

  it('the preview: the first record as text, scored pieces apart', async () => {
    const ds = await buildDataset([read('alpaca.json')], tok);
    const p = ds.preview!;
    expect(p.record).toBe('alpaca.json record 1');
    expect(p.pieces.map((x) => x.text).join('')).toBe('<|im_start|>user\nWrite a function that adds two numbers.<|im_end|>\n'
      + '<|im_start|>assistant\n<think>\n\n</think>\n\nfunction add(a, b) {\n  return a + b;\n}<|im_end|>\n');
    expect(p.pieces.filter((x) => x.scored).map((x) => x.text)).toEqual(['function add(a, b) {\n  return a + b;\n}<|im_end|>']);
    expect(p.tokens).toBe(ds.all.docStarts[1]);
    expect(p.scored).toBe(tok.encode('function add(a, b) {\n  return a + b;\n}').length + 1);
  });

  it('a chat template kept in chat_template.jinja is found', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usaf-chat-'));
    copyFileSync(join(CHAT_TOK, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const cfg = JSON.parse(readFileSync(join(CHAT_TOK, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'chat_template.jinja'), cfg.chat_template as string);
    delete cfg.chat_template;
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(cfg));
    const t = await loadTokenizer(nodeFolder(dir));
    expect(t.chat?.source).toBe('chat_template.jinja');
    const m: ChatMessage[] = [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }];
    expect(t.chat!.render(m)).toBe(tok.chat!.render(m));
  });
});

describe('a model without a chat template', () => {
  it('conversations and Alpaca are refused, naming the model and what is missing', async () => {
    expect(demo.chat).toBeNull();
    await expect(buildDataset([read('alpaca.json')], demo, { modelName: 'usaf-demo-moe' })).rejects.toThrow(
      'alpaca.json: Alpaca records (instruction/input/output) must be rendered with the model\'s chat template, and usaf-demo-moe has none '
      + '(no "chat_template" in its tokenizer_config.json, no chat_template.jinja): choose a chat (instruct) model, or give the data as {"text"} or {"prompt", "completion"} records');
    await expect(buildDataset([read('messages.jsonl')], demo)).rejects.toThrow(/^messages\.jsonl: Conversations \(\{"messages": …\}\) must be rendered with the model's chat template, and usaf-demo-moe has none/);
  });

  it('prompt/completion is the prompt, the completion and EOS; the completion and EOS scored', async () => {
    const ds = await buildDataset([read('prompt-completion.jsonl')], demo);
    const prompt = '// double a value\nconst twice = (x) =>';
    const full = prompt + ' 2 * x;';
    const ids = [...demo.encode(full), demo.eosId];
    const a = ds.all.docStarts[1]!;
    expect([...ds.all.ids.subarray(a)]).toEqual(ids);
    const labels = oracleLabels(demo, full, ids.slice(0, -1), [[prompt.length, full.length]]);
    expect([...ds.all.labels!.subarray(a)]).toEqual([...labels, demo.eosId]);
    expect(labels.filter((l) => l !== IGNORE)).toEqual(demo.encode(' 2 * x;'));
    expect(ds.format).toBe('prompt-completion');
    expect(ds.notes.join(' ')).toMatch(/has no chat template, so each is the prompt followed by the completion and the end-of-sequence token/);
  });
});

/** Positions whose next-token target is scored, over every window of a sample set. */
function scoredTargets(set: { count: number; seq: number; fill(i: number, ids: Uint32Array, targets: Uint32Array, offset: number): void }): number[] {
  const ids = new Uint32Array(set.count * set.seq);
  const targets = new Uint32Array(set.count * set.seq);
  for (let i = 0; i < set.count; i++) set.fill(i, ids, targets, i * set.seq);
  return [...targets].filter((t) => t !== TARGET_IGNORE);
}

describe('training and evaluation score the answers; TRAIN_ON_PROMPT trains on every token', () => {
  const spec = parseConfig(JSON.parse(readFileSync('test/fixtures/qwen3_moe/config.json', 'utf8')) as Record<string, unknown>);
  let stream: TokenStream;
  beforeAll(async () => {
    stream = (await buildDataset([read('messages.jsonl')], tok, { vocabSize: spec.vocab })).all;
  }, 120_000);
  const answers = (s: TokenStream) => [...s.labels!].filter((l) => l !== IGNORE);
  const setup = (trainOnPrompt: boolean) => setupRun({
    settings: { ...DEFAULTS, seq: 256, trainOnPrompt }, run: defaultRunSettings(), spec, padId: 0, maxBufferSize: null,
    data: { train: stream, eval: null, heldout: stream, pretokenized: true },
  });

  it('records, the in-domain and the held-out evaluation score exactly the answer tokens', () => {
    const r = setup(false);
    expect(r.rule).toBe('records');
    // one window per record (SEQ 256 holds each): the targets are the scored labels, nothing else
    expect(scoredTargets(r.trainSet)).toEqual(answers(stream));
    expect(scoredTargets(r.heldout!)).toEqual(answers(stream));
    expect(scoredTargets(windowSamples(stream, 4096, 0))).toEqual(answers(stream));
    expect(scoredTargets(r.inDomain)).toEqual(answers(stream));
  });

  it('TRAIN_ON_PROMPT: training scores every token but each record\'s first; evaluation still the answers only', () => {
    const r = setup(true);
    const n = stream.docStarts.length;
    const all = [...stream.ids].filter((_, i) => ![...stream.docStarts].includes(i));
    expect(scoredTargets(r.trainSet)).toEqual(all);
    expect(all.length).toBe(stream.ids.length - n);
    expect(scoredTargets(r.inDomain)).toEqual(answers(stream));
    expect(scoredTargets(r.heldout!)).toEqual(answers(stream));
    // the data the checkpoint records differs, so a resume with the other setting is refused
    expect(r.checkpoint.data!.train.hash).not.toBe(setup(false).checkpoint.data!.train.hash);
  });

  it('scoreAllTokens keeps given labels and leaves unmasked streams as they are', () => {
    const s: TokenStream = { ids: Int32Array.from([5, 6, 7]), labels: Int32Array.from([IGNORE, 9, IGNORE]), docStarts: Int32Array.from([0]) };
    expect([...scoreAllTokens(s).labels!]).toEqual([5, 9, 7]);
    const plain: TokenStream = { ids: Int32Array.from([5, 6]), labels: null, docStarts: Int32Array.from([0]) };
    expect(scoreAllTokens(plain)).toBe(plain);
  });
});

describe('the CLI reads instruction data through the shared data path', () => {
  it('usaf tokenize / train\'s reader: an Alpaca .json with the fixture tokenizer', async () => {
    const ds = await tokenizeFile(CHAT_TOK, join(FIX, 'alpaca.json'));
    expect(ds.format).toBe('chat');
    expect(ds.documents).toBe(3);
    const direct = await buildDataset([read('alpaca.json')], tok);
    expect([...ds.all.labels!]).toEqual([...direct.all.labels!]);
    expect(ds.labeledTokens).toBeGreaterThan(0);
  });
});
