// Contract: the Try screen's worker side: prompts tokenized with the model's own tokenizer (a conversation through its
// chat template) and one generation at a time through generateInWorker, stopped with an AbortController.

import type { TextTokenizer } from '../data/tokenizer.ts';
import { checkSampleSettings } from '../engine/generate/index.ts';
import { generateInWorker } from './generate.ts';
import type { Generated, GenerateRequest, PromptFormat, PromptInput, RunSummary, StoredModel } from './protocol.ts';

export interface TryDeps {
  model(id: string): Promise<StoredModel | null>;
  tokenizer(model: StoredModel): Promise<TextTokenizer | null>;
  run(id: string): Promise<RunSummary | null>;
  /** Why the GPU is not free for a generation now (a run training), or null. */
  busy(): string | null;
  /** The generation itself (generateInWorker; a test double in unit tests). */
  generate?: typeof generateInWorker;
}

const ROLES = new Set(['system', 'user', 'assistant']);

export class TryModels {
  private going: AbortController | null = null;

  constructor(private readonly deps: TryDeps) {}

  private async storedModel(modelId: string): Promise<StoredModel> {
    const model = await this.deps.model(modelId);
    if (!model) throw new Error(`no stored model "${modelId}": import it on the Models screen`);
    return model;
  }

  private async tokenizerOf(model: StoredModel): Promise<TextTokenizer> {
    const tok = await this.deps.tokenizer(model);
    if (!tok) throw new Error(`${model.name} has no tokenizer (tokenizer.json): prompts cannot be written as text for it`);
    return tok;
  }

  async format(modelId: string): Promise<PromptFormat> {
    const tok = await this.tokenizerOf(await this.storedModel(modelId));
    return { chat: !!tok.chatPrompt, eosToken: tok.eosToken };
  }

  async tokenize(modelId: string, prompt: PromptInput): Promise<number[]> {
    const model = await this.storedModel(modelId);
    const tok = await this.tokenizerOf(model);
    if (prompt.kind === 'text') {
      if (!prompt.text) throw new Error('the prompt is empty: write the text the model should continue');
      return tok.encode(prompt.text);
    }
    if (!tok.chatPrompt) {
      throw new Error(`${model.name}'s tokenizer has no chat template (chat_template in tokenizer_config.json): write the prompt as plain text to continue`);
    }
    if (!prompt.messages.length) throw new Error('the conversation is empty: write a message');
    prompt.messages.forEach((m, i) => {
      if (!ROLES.has(m.role)) throw new Error(`message ${i + 1}: unknown role "${m.role}" (system, user or assistant)`);
      if (!m.content.trim()) throw new Error(`message ${i + 1} (${m.role}) is empty`);
    });
    return tok.chatPrompt(prompt.messages);
  }

  /** Checks the request against the stored model and run before any GPU work; names what is wrong. */
  private async check(req: GenerateRequest): Promise<void> {
    const why = checkSampleSettings(req.sampling);
    if (why) throw new Error(why);
    const model = await this.storedModel(req.modelId);
    if (!req.promptIds.length) throw new Error('the prompt has no tokens');
    const bad = req.promptIds.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= model.facts.vocab);
    if (bad >= 0) throw new Error(`prompt token ${bad + 1} (${req.promptIds[bad]}) is not an id of ${model.name}'s vocabulary (0 to ${model.facts.vocab - 1})`);
    if (req.runId === null) return;
    const run = await this.deps.run(req.runId);
    if (!run) throw new Error(`no run "${req.runId}" (deleted?)`);
    const own = await this.deps.model(run.modelId);
    if (!own) throw new Error(`run ${run.name} was trained on ${run.modelId}, which is no longer stored: import that model again to try the run`);
    if (run.modelId !== req.modelId) throw new Error(`run ${run.name} was trained on ${own.name}, not on ${model.name}`);
    if (run.status !== 'done' && run.checkpointStep === 0) throw new Error(`run ${run.name} has no checkpoint yet: it can be tried after its first checkpoint`);
  }

  async generate(req: GenerateRequest, onToken: (id: number, text: string) => void): Promise<Generated> {
    if (this.going) throw new Error('a generation is going: stop it or wait for it to end');
    const why = this.deps.busy();
    if (why) throw new Error(why);
    const ac = new AbortController();
    this.going = ac;
    try {
      await this.check(req);
      const run = this.deps.generate ?? generateInWorker;
      return await run({ modelId: req.modelId, runId: req.runId, promptIds: [...req.promptIds], sampling: { ...req.sampling, stopStrings: [...req.sampling.stopStrings] } }, onToken, ac.signal);
    } finally {
      this.going = null;
    }
  }

  stop(): void {
    this.going?.abort(new DOMException('generation stopped', 'AbortError'));
  }
}
