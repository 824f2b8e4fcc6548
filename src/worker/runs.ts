// Contract: the life of one run inside the worker. Wraps the engine's events: keeps the RunSummary (status, steps,
// loss, perplexities before/after, last checkpoint), saves it and the log as the run goes, forwards every event to
// the page, and turns the end of the loop into onDone / onError (a lost device in words, resumable).

import type { EngineEvents, RunHandle } from './engine-binding.ts';
import type { RunCallbacks, RunError, RunStatus, RunSummary } from './protocol.ts';

/** Where run records and logs go (OPFS in the worker, memory in tests). */
export interface RunRecords {
  write(run: RunSummary): Promise<void>;
  appendLog(runId: string, lines: string[]): Promise<void>;
  /** Replaces the whole log (a resumed run goes back to its checkpoint's log). */
  replaceLog?(runId: string, lines: string[]): Promise<void>;
}

/** How often the record is saved while steps arrive (it is always saved at checkpoints and at the end). */
const SAVE_EVERY_MS = 5000;
const FLUSH_LOG_MS = 1000;

/** An engine error in words, and whether the run can continue from its last checkpoint. */
export function describeRunError(e: unknown, checkpointStep: number): RunError {
  const err = e instanceof Error ? e : new Error(String(e));
  if (err.name === 'DeviceLostError' || /device (was )?lost/i.test(err.message)) {
    return {
      kind: 'device-lost',
      message: `The GPU device was lost (${err.message}). The browser or the driver reset the GPU${checkpointStep ? `; the run can resume from step ${checkpointStep}` : '; the run has no checkpoint yet and must start again'}.`,
      resumable: checkpointStep > 0,
    };
  }
  if (err.name === 'GPUOutOfMemoryError' || /out of memory/i.test(err.message)) {
    return { kind: 'out-of-memory', message: `The GPU ran out of memory: ${err.message}. Enter this GPU's memory on the Preset screen (the plan then splits 4-bit experts to fit), or turn on QUANTIZE_EXPERTS or STREAM_FROZEN, or lower MICROBATCH or SEQ.`, resumable: checkpointStep > 0 };
  }
  if (err.name === 'QuotaExceededError' || /quota/i.test(err.message)) {
    // checkpoint writes are atomic: the one that failed left the previous checkpoint as it was
    return {
      kind: 'error',
      message: `The browser's storage for this site is full: a checkpoint or log could not be written (${err.message}). ${checkpointStep ? `The checkpoint of step ${checkpointStep} is kept` : 'Nothing of this run was checkpointed yet'}; free space on the Models screen (delete a model or a dataset you no longer need)${checkpointStep ? ', then resume' : ', then start again'}.`,
      resumable: checkpointStep > 0,
    };
  }
  return { kind: 'error', message: `The run failed: ${err.message}`, resumable: checkpointStep > 0 };
}

export class ActiveRun {
  summary: RunSummary;
  handle: RunHandle | null = null;
  private logBuffer: string[] = [];
  private lastSave = 0;
  private saving: Promise<void> = Promise.resolve();
  private logging: Promise<void> = Promise.resolve();
  private logTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(summary: RunSummary, private readonly records: RunRecords, private readonly page: RunCallbacks) {
    this.summary = { ...summary };
  }

  /** The events object handed to the engine. */
  events(): EngineEvents {
    return {
      onStep: (e) => {
        this.summary.stepsDone = e.step;
        this.summary.steps = e.steps;
        this.summary.elapsedMs = e.elapsedMs;
        if (Number.isFinite(e.loss)) this.summary.lastLoss = e.loss;
        this.page.onStep(e);
        if (performance.now() - this.lastSave > SAVE_EVERY_MS) this.save();
      },
      onEval: (e) => {
        const ppl = { inDomain: e.inDomainPpl, heldout: e.heldoutPpl };
        if (e.step === 0 && !this.summary.pplBefore) this.summary.pplBefore = ppl;
        else if (e.step > 0) this.summary.pplAfter = ppl;
        this.page.onEval(e);
      },
      onReselect: (e) => this.page.onReselect(e),
      onPhase: (e) => this.page.onPhase?.(e),
      onLog: (line) => {
        this.logBuffer.push(line);
        this.logTimer ??= setTimeout(() => this.flushLog(), FLUSH_LOG_MS);
        this.page.onLog(line);
      },
      onCheckpoint: (step, elapsedMs) => {
        this.summary.checkpointStep = step;
        this.summary.checkpointElapsedMs = elapsedMs;
        this.save();
        this.page.onCheckpoint?.(step);
      },
      onHistory: async (lines) => {
        this.flushLog();
        const replace = this.logging.then(() => this.records.replaceLog?.(this.summary.id, lines));
        this.logging = replace.catch((e: unknown) => console.warn('rewriting the run log failed', e));
        await replace;
      },
    };
  }

  /** Follows the engine's `done` to the end and reports it to the page. */
  async follow(handle: RunHandle): Promise<void> {
    this.handle = handle;
    try {
      const how = await handle.done;
      await this.finish(how);
      this.page.onDone({ ...this.summary });
    } catch (e) {
      const err = describeRunError(e, this.summary.checkpointStep);
      this.summary.error = err.message;
      await this.finish('failed');
      this.page.onError(err);
    } finally {
      this.handle = null;
    }
  }

  /** A new name, kept by every later save of the record. */
  rename(name: string): void {
    this.summary.name = name;
    this.save();
  }

  setStatus(status: RunStatus): void {
    this.summary.status = status;
    this.save();
  }

  private async finish(status: RunStatus): Promise<void> {
    this.summary.status = status;
    this.flushLog();
    await this.logging;
    this.save();
    await this.saving;
  }

  private save(): void {
    this.lastSave = performance.now();
    const snapshot = { ...this.summary, updatedAt: Date.now() };
    this.saving = this.saving.then(() => this.records.write(snapshot)).catch((e: unknown) => console.warn('saving the run record failed', e));
  }

  /** Queues the buffered log lines for writing (appends run one after another, in order). */
  private flushLog(): void {
    if (this.logTimer) clearTimeout(this.logTimer);
    this.logTimer = null;
    if (!this.logBuffer.length) return;
    const lines = this.logBuffer.splice(0);
    this.logging = this.logging.then(() => this.records.appendLog(this.summary.id, lines))
      .catch((e: unknown) => console.warn('writing the run log failed', e));
  }
}
