// Contract: the Try screen's worker side (TryModels): prompts tokenized with the model's own tokenizer — a conversation
// through its chat template with the assistant's turn opened, refused with a clear message without one — and the checks
// a generation passes before any GPU work (model, run of that model, checkpoint, vocabulary, one at a time, Stop).
import { describe, expect, it } from 'vitest';
import { blobSource } from '../../../src/engine/io/byte-source.ts';
import type { FileSet } from '../../../src/engine/io/folder.ts';
import { loadTokenizer, type TextTokenizer } from '../../../src/data/tokenizer.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { TryModels, type TryDeps } from '../../../src/worker/try-model.ts';
import type { GenerateRequest, RunSummary, StoredModel } from '../../../src/worker/protocol.ts';

const DEMO = 'public/models/usaf-demo-moe';
// Qwen3's chat template, cut to what these tests use (roles, turns, the generation prompt).
const TEMPLATE = "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}"
  + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/** The demo's files with tokenizer_config.json carrying a chat template. */
function withTemplate(base: FileSet): FileSet {
  const cfg = { tokenizer_class: 'PreTrainedTokenizerFast', eos_token: '<|endoftext|>', chat_template: TEMPLATE };
  return {
    name: `${base.name} (chat)`,
    open: async (p) => (p === 'tokenizer_config.json' ? blobSource(new Blob([JSON.stringify(cfg)]), p) : base.open(p)),
  };
}

const model = (id: string): StoredModel => ({ id, name: id, facts: { vocab: 4096 }, hasTokenizer: true } as unknown as StoredModel);
const run = (over: Partial<RunSummary>): RunSummary => ({ id: 'r1', name: 'r1', modelId: 'demo', status: 'done', checkpointStep: 4, ...over } as RunSummary);
const SAMPLING = { maxNewTokens: 4, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0, stopStrings: [] };
const req = (over: Partial<GenerateRequest> = {}): GenerateRequest => ({ modelId: 'demo', runId: null, promptIds: [1, 2, 3], sampling: SAMPLING, ...over });

function setup(tok: TextTokenizer | null, over: Partial<TryDeps> = {}) {
  const models = new Map([['demo', model('demo')], ['other', model('other')]]);
  const runs = new Map<string, RunSummary>();
  const calls: { req: Parameters<NonNullable<TryDeps['generate']>>[0]; signal?: AbortSignal }[] = [];
  const tries = new TryModels({
    model: async (id) => models.get(id) ?? null,
    tokenizer: async () => tok,
    run: async (id) => runs.get(id) ?? null,
    busy: () => null,
    generate: async (r, onToken, signal) => {
      calls.push({ req: r, signal });
      onToken(7, 'x');
      return { tokens: [7], stop: 'length', prefillTokS: 1, tokS: 1, text: 'x' };
    },
    ...over,
  });
  return { tries, models, runs, calls };
}

// Loading transformers.js takes a while on a busy machine.
describe('TryModels: prompts', { timeout: 300_000 }, () => {
  it('plain text: the tokenizer’s ids; the demo has no chat template, and a conversation is refused naming why', async () => {
    const tok = await loadTokenizer(nodeFolder(DEMO));
    const { tries } = setup(tok);
    expect(await tries.format('demo')).toEqual({ chat: false, eosToken: '<|endoftext|>' });
    const text = "const gte = (a, b, loose) =>";
    const ids = await tries.tokenize('demo', { kind: 'text', text });
    expect(ids).toEqual(tok.encode(text));
    expect(ids.length).toBeGreaterThan(3);
    await expect(tries.tokenize('demo', { kind: 'chat', messages: [{ role: 'user', content: 'hi' }] })).rejects.toThrow(/no chat template \(chat_template in tokenizer_config\.json\)/);
    await expect(tries.tokenize('demo', { kind: 'text', text: '' })).rejects.toThrow(/prompt is empty/);
  });

  it('a conversation through the chat template, the assistant’s turn opened after it', async () => {
    const tok = await loadTokenizer(withTemplate(nodeFolder(DEMO)));
    const { tries } = setup(tok);
    expect((await tries.format('demo')).chat).toBe(true);
    const messages = [
      { role: 'system' as const, content: 'You write JavaScript.' },
      { role: 'user' as const, content: 'Compare two versions.' },
      { role: 'assistant' as const, content: 'compare(a, b)' },
      { role: 'user' as const, content: 'And greater-or-equal?' },
    ];
    const ids = await tries.tokenize('demo', { kind: 'chat', messages });
    const rendered = messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + '<|im_start|>assistant\n';
    expect(ids).toEqual(tok.encode(rendered));
    await expect(tries.tokenize('demo', { kind: 'chat', messages: [{ role: 'user', content: ' ' }] })).rejects.toThrow(/message 1 \(user\) is empty/);
    await expect(tries.tokenize('demo', { kind: 'chat', messages: [{ role: 'robot' as 'user', content: 'x' }] })).rejects.toThrow(/unknown role "robot"/);
  });

  it('a model without a tokenizer, and a model that is gone', async () => {
    const { tries } = setup(null);
    await expect(tries.format('demo')).rejects.toThrow(/demo has no tokenizer/);
    await expect(tries.tokenize('gone', { kind: 'text', text: 'x' })).rejects.toThrow(/no stored model "gone"/);
  });
});

describe('TryModels: generation', () => {
  it('passes the request on with a signal; tokens stream through', async () => {
    const { tries, calls } = setup(null);
    const got: [number, string][] = [];
    const r = await tries.generate(req(), (id, text) => got.push([id, text]));
    expect(r.tokens).toEqual([7]);
    expect(got).toEqual([[7, 'x']]);
    expect(calls[0]!.req).toEqual({ modelId: 'demo', runId: null, promptIds: [1, 2, 3], sampling: SAMPLING });
    expect(calls[0]!.signal?.aborted).toBe(false);
  });

  it('refuses before any work: bad settings, bad ids, a run of another model, a run whose model is gone, a run without checkpoint, a busy GPU', async () => {
    const { tries, runs, models, calls } = setup(null);
    await expect(tries.generate(req({ sampling: { ...SAMPLING, topP: 1.5 } }), () => {})).rejects.toThrow(/top-p must be in \(0, 1\]/);
    await expect(tries.generate(req({ sampling: { ...SAMPLING, maxNewTokens: 0 } }), () => {})).rejects.toThrow(/max new tokens/);
    await expect(tries.generate(req({ promptIds: [] }), () => {})).rejects.toThrow(/no tokens/);
    await expect(tries.generate(req({ promptIds: [1, 4096] }), () => {})).rejects.toThrow(/prompt token 2 \(4096\) is not an id of demo's vocabulary \(0 to 4095\)/);
    await expect(tries.generate(req({ runId: 'nope' }), () => {})).rejects.toThrow(/no run "nope"/);
    runs.set('r1', run({ modelId: 'other' }));
    await expect(tries.generate(req({ runId: 'r1' }), () => {})).rejects.toThrow(/run r1 was trained on other, not on demo/);
    runs.set('r1', run({ modelId: 'deleted' }));
    await expect(tries.generate(req({ runId: 'r1' }), () => {})).rejects.toThrow(/trained on deleted, which is no longer stored/);
    runs.set('r1', run({ status: 'stopped', checkpointStep: 0 }));
    await expect(tries.generate(req({ runId: 'r1' }), () => {})).rejects.toThrow(/has no checkpoint yet/);
    models.delete('demo');
    await expect(tries.generate(req(), () => {})).rejects.toThrow(/no stored model "demo"/);
    expect(calls).toEqual([]);
    const busy = setup(null, { busy: () => 'run x is training' });
    await expect(busy.tries.generate(req(), () => {})).rejects.toThrow(/run x is training/);
    expect(busy.calls).toEqual([]);
    runs.set('r1', run({ status: 'stopped', checkpointStep: 2 }));
    models.set('demo', model('demo'));
    await tries.generate(req({ runId: 'r1' }), () => {});
    expect(calls.map((c) => c.req.runId)).toEqual(['r1']);
  });

  it('one at a time; Stop aborts the one going, and the next one gets a fresh signal', async () => {
    let release!: () => void;
    const { tries, calls } = setup(null, {
      generate: async (r, _onToken, signal) => {
        calls.push({ req: r, signal });
        if (calls.length === 1) await new Promise<void>((res) => (release = res));
        return { tokens: [], stop: signal?.aborted ? 'aborted' : 'length', prefillTokS: 0, tokS: 0, text: '' };
      },
    });
    const first = tries.generate(req(), () => {});
    await new Promise((r) => setTimeout(r, 0));
    await expect(tries.generate(req(), () => {})).rejects.toThrow(/a generation is going/);
    tries.stop();
    expect(calls[0]!.signal?.aborted).toBe(true);
    release();
    expect((await first).stop).toBe('aborted');
    expect((await tries.generate(req(), () => {})).stop).toBe('length');
    expect(calls[1]!.signal?.aborted).toBe(false);
    tries.stop(); // nothing going: nothing happens
  });
});
