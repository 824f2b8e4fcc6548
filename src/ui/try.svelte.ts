// Contract: the Try screen's state: a model, one of its runs, the sampling settings and the prompt (text to continue,
// or a conversation when the tokenizer has a chat template); the base model and the run answer the same prompt with the
// same seed, one after the other, each streaming its tokens; Stop ends the one going and skips the other.

import { tokenCallback } from '../worker/client.ts';
import type { ChatTurn, Generated, PromptFormat, PromptInput, RunSummary, SampleSettings } from '../worker/protocol.ts';
import { app } from './state.svelte.ts';

/** A code-completion prompt in the style of the demo data (JavaScript, node-semver). */
export const DEMO_PROMPT = "'use strict'\n\nconst compare = require('./compare')\nconst gte = (a, b, loose) =>";

export const DEFAULT_SAMPLING: SampleSettings = { maxNewTokens: 24, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 };

export type SideKey = 'base' | 'run';

export interface Side {
  /** The conversation so far (chat view): the user's turns are shared, the assistant's are this side's own. */
  messages: ChatTurn[];
  /** The text streaming in now. */
  text: string;
  tokens: number[];
  /** Tokens that came through the stream (the end's list is authoritative). */
  streamed: number;
  /** The prompt this side answered (completion view) and its length in tokens. */
  prompt: string;
  promptTokens: number;
  going: boolean;
  result: Generated | null;
  error: string | null;
}

const emptySide = (): Side => ({ messages: [], text: '', tokens: [], streamed: 0, prompt: '', promptTokens: 0, going: false, result: null, error: null });

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Runs that can be tried: finished, or with a checkpoint to read the trained entries from. */
export function triable(r: RunSummary): boolean {
  return r.status === 'done' || r.checkpointStep > 0;
}

/** The stop strings of the Try screen's field: one per line, empty lines ignored (the text's own spaces kept). */
export function stopStrings(text: string): string[] {
  return text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '');
}

/** The sampling fields that are not numbers (their ranges are checked by the engine, which names the rule). */
export function samplingProblems(s: SampleSettings): Partial<Record<keyof SampleSettings, string>> {
  const out: Partial<Record<keyof SampleSettings, string>> = {};
  for (const [k, v] of Object.entries(s) as [keyof SampleSettings, number][]) if (!Number.isFinite(v)) out[k] = 'a number';
  return out;
}

export class TryState {
  modelId = $state<string | null>(null);
  runId = $state<string | null>(null);
  format = $state<PromptFormat | null>(null);
  /** The model's prompt format, loading or failed (no tokenizer). */
  formatError = $state<string | null>(null);
  sampling = $state<SampleSettings>({ ...DEFAULT_SAMPLING });
  /** Stop strings, one per line (generation also stops once the text ends with one). */
  stops = $state('');
  prompt = $state(DEMO_PROMPT);
  /** The chat view's message being written. */
  draft = $state('');
  sides = $state<Record<SideKey, Side>>({ base: emptySide(), run: emptySide() });
  going = $state(false);
  error = $state<string | null>(null);
  private stopped = false;
  /** The model whose format was asked for last. */
  private formatOf: string | null = null;

  model = $derived(app.models.find((m) => m.id === this.modelId) ?? null);
  runs = $derived(app.runs.filter((r) => r.modelId === this.modelId && triable(r)));
  run = $derived(this.runs.find((r) => r.id === this.runId) ?? null);
  /** Runs whose model was deleted: they cannot be tried until it is imported again. */
  orphans = $derived(app.runs.filter((r) => triable(r) && !app.models.some((m) => m.id === r.modelId)));
  chat = $derived(!!this.format?.chat);
  problems = $derived(samplingProblems(this.sampling));

  /** Follows the app's model list: keeps the choice while it is stored, else the app's current model. */
  syncModel(): void {
    if (!app.models.some((m) => m.id === this.modelId)) this.modelId = app.modelId ?? app.models[0]?.id ?? null;
    if (this.runId !== null && !this.runs.some((r) => r.id === this.runId)) this.runId = null;
    if (this.runId === null && this.runs.length) this.runId = this.runs[0]!.id;
  }

  /**
   * Reads the chosen model's prompt format (chat template or not); a new model starts a new conversation, the same one
   * (the screen opened again) keeps what it shows.
   */
  async loadFormat(modelId: string | null): Promise<void> {
    if (modelId !== null && modelId === this.formatOf && this.format) return;
    this.formatOf = modelId;
    this.format = null;
    this.formatError = null;
    this.clear();
    if (!modelId || !app.trainer) return;
    try {
      const f = await app.trainer.promptFormat(modelId);
      if (modelId === this.modelId) this.format = f;
    } catch (e) {
      if (modelId === this.modelId) this.formatError = message(e);
    }
  }

  clear(): void {
    this.sides = { base: emptySide(), run: emptySide() };
    this.error = null;
  }

  /** Another run: its side starts afresh (its conversation was another model's). */
  clearRun(): void {
    if (!this.going) this.sides.run = emptySide();
  }

  /** The sides that answer: the base model, and the chosen run when there is one. */
  keys(): SideKey[] {
    return this.runId ? ['base', 'run'] : ['base'];
  }

  /** Generates on each side, one after the other, from the prompt (or the conversation with the new message). */
  async generate(): Promise<void> {
    const trainer = app.trainer;
    const modelId = this.modelId;
    this.error = null;
    if (!trainer || !modelId) {
      this.error = 'No model to try: import one on the Models screen.';
      return;
    }
    const bad = Object.entries(this.problems);
    if (bad.length) {
      this.error = 'Enter a number in each sampling setting.';
      return;
    }
    if (this.format === null) {
      this.error = this.formatError ?? 'The model’s tokenizer is still loading.';
      return;
    }
    const chat = this.format.chat;
    const userTurn = this.draft.trim();
    if (chat ? !userTurn : !this.prompt) {
      this.error = chat ? 'Write a message first.' : 'Write a prompt first.';
      return;
    }
    const runId = this.runId;
    const sampling = { ...$state.snapshot(this.sampling), stopStrings: stopStrings(this.stops) };
    this.going = true;
    this.stopped = false;
    if (chat) this.draft = '';
    try {
      for (const key of this.keys()) {
        const side = this.sides[key];
        side.text = '';
        side.tokens = [];
        side.streamed = 0;
        side.result = null;
        side.error = null;
        if (chat) side.messages.push({ role: 'user', content: userTurn });
      }
      for (const key of this.keys()) {
        if (this.stopped) break;
        // A failure (a setting refused, the GPU lost) would fail the other side the same way: it is not tried.
        if (await this.generateSide(key, modelId, key === 'run' ? runId : null, chat, sampling)) continue;
        if (chat) {
          // The message is given back to be sent again; no side keeps it unanswered.
          for (const k of this.keys()) if (this.sides[k].messages.at(-1)?.role === 'user') this.sides[k].messages.pop();
          this.draft = userTurn;
        }
        break;
      }
    } finally {
      this.going = false;
    }
  }

  /** One side's generation; false when it failed (the error is on the side). */
  private async generateSide(key: SideKey, modelId: string, runId: string | null, chat: boolean, sampling: SampleSettings & { stopStrings: string[] }): Promise<boolean> {
    const trainer = app.trainer!;
    const side = this.sides[key];
    side.going = true;
    try {
      const prompt: PromptInput = chat ? { kind: 'chat', messages: $state.snapshot(side.messages) } : { kind: 'text', text: this.prompt };
      const promptIds = await trainer.tokenizePrompt(modelId, prompt);
      side.prompt = chat ? '' : this.prompt;
      side.promptTokens = promptIds.length;
      const r = await trainer.generate({ modelId, runId, promptIds, sampling }, tokenCallback((id, text) => {
        side.tokens.push(id);
        side.text += text;
      }));
      side.result = r;
      side.streamed = side.tokens.length;
      side.text = r.text;
      side.tokens = [...r.tokens];
      if (chat) side.messages.push({ role: 'assistant', content: r.text });
      return true;
    } catch (e) {
      side.error = app.deviceLost ? `The GPU device was lost: ${app.deviceLost.replace(/\.+$/, '')}. Generate again to use a new device.` : message(e);
      return false;
    } finally {
      side.going = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await app.trainer?.stopGenerate();
  }
}

export const tryState = new TryState();
