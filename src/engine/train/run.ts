// The training run around a Trainer: evaluation before, every EVAL_EVERY steps and at the end; the seed's log records;
// atomic checkpoints every N steps and at the end; pause/stop; resume from a checkpoint. Shared by the CLI and the worker.

import type { FileSink } from '../io/sink.ts';
import { saveTrainCheckpoint, type TrainCheckpoint } from './checkpoint-file.ts';
import { fillFrozen, type FrozenSource } from './frozen-pass.ts';
import { drawBatches, importanceRng, Rng } from './rng.ts';
import type { EvalRecord, PhaseRecord, ReselectRecord, SampleSet, StepRecord } from './types.ts';
import type { Trainer } from './trainer.ts';

export interface RunEvents {
  onStep?(r: StepRecord): void;
  onEval?(r: EvalRecord): void;
  onReselect?(r: ReselectRecord): void;
  /** Every log record, in order (the seed's JSONL format). */
  onLog?(r: object): void | Promise<void>;
  onCheckpoint?(step: number): void;
  /** What the run is doing between and before steps, with its progress (not logged). */
  onPhase?(p: PhaseRecord): void;
}

export interface RunOptions {
  inDomain: SampleSet;
  heldout: SampleSet | null;
  /** Where checkpoints go (train-state.safetensors under `checkpointDir`); null = none. */
  sink: FileSink | null;
  checkpointDir?: string;
  /** Save every N steps (0 = only at the end). */
  checkpointEvery: number;
  settings: Record<string, unknown>;
  events?: RunEvents;
  /** Resume this run from a checkpoint instead of starting with the importance pass. */
  resume?: TrainCheckpoint;
  /**
   * Streamed frozen layers (Trainer.streamed): where to read them. Before the first step, the layer-major pass fills the
   * frozen cache for every sample and stores the eval windows' inputs of TRAIN_FROM; evaluations then run the trained
   * layers only.
   */
  frozenSource?: FrozenSource;
  /** Called between steps: resolve to continue, throw to abort; returns 'stop' to end cleanly. */
  control?: () => Promise<'go' | 'stop'>;
}

export interface RunSummaryRecord {
  steps_done: number;
  trainable_params: number;
  ppl_before: { eval: number; heldout: number | null } | null;
  ppl_after: { eval: number; heldout: number | null };
  loss_first10: number;
  loss_last10: number;
  turnovers: number[];
  skipped: number;
  tok_s: number;
  sec: number;
  stopped: boolean;
}

/** Importance microbatches: N_IMPORTANCE random microbatches from a stream of its own (seed-derived). */
export function importanceBatches(seed: number, n: number, microbatch: number, count: number): number[][] {
  return drawBatches(importanceRng(seed), n, microbatch, count);
}

/**
 * The run's control answer; when it does not come within a few microtasks (paused, or work of its own), `hold` runs
 * first, so the last step's record is out while the run waits. Either way the answer is the same.
 */
async function control(ask: () => Promise<'go' | 'stop'>, hold: () => Promise<void>): Promise<'go' | 'stop'> {
  const answer = ask();
  let settled = false;
  answer.then(() => (settled = true), () => (settled = true));
  for (let i = 0; i < 8 && !settled; i++) await null;
  if (!settled) await hold();
  return answer;
}

export async function runTraining(t: Trainer, o: RunOptions): Promise<RunSummaryRecord> {
  const s = t.s;
  const log: object[] = o.resume ? [...o.resume.log] : [];
  const emit = async (r: object) => {
    log.push(r);
    await o.events?.onLog?.(r);
  };
  const phase = (p: PhaseRecord['phase'], step: number) => (done: number, total: number) => o.events?.onPhase?.({ phase: p, step, done, total });
  const evaluate = async (step: number): Promise<EvalRecord> => {
    // progress over both sets' windows
    const windows = (set: SampleSet) => Math.min(set.count, s.evalWindows ?? set.count);
    const total = windows(o.inDomain) + (o.heldout ? windows(o.heldout) : 0);
    const progress = phase('evaluation', step);
    progress(0, total);
    const e = await t.evaluate(o.inDomain, s.evalWindows, (done) => progress(done, total));
    const h = o.heldout ? await t.evaluate(o.heldout, s.evalWindows, (done) => progress(windows(o.inDomain) + done, total)) : null;
    const rec: EvalRecord = { step, eval_loss: e.loss, eval_ppl: e.ppl, heldout_loss: h?.loss ?? null, heldout_ppl: h?.ppl ?? null };
    await emit(rec);
    o.events?.onEval?.(rec);
    return rec;
  };
  const save = async () => {
    if (!o.sink) return;
    phase('checkpoint', t.step)(0, 1);
    await saveTrainCheckpoint(o.sink, o.checkpointDir ?? '', await t.snapshot(o.settings, log));
    o.events?.onCheckpoint?.(t.step);
  };

  let before: EvalRecord | null = null;
  if (t.streamed) {
    if (!o.frozenSource) throw new Error('frozen layers are streamed: runTraining needs frozenSource');
    phase('frozen', 0)(0, t.s.trainFrom);
    await fillFrozen(t, o.frozenSource, [o.inDomain, o.heldout].filter((x): x is SampleSet => !!x), phase('frozen', 0));
  }
  if (o.resume) {
    phase('restoring', o.resume.step)(0, 1);
    await t.restore(o.resume);
    phase('warming', o.resume.step)(0, 1);
    await t.warmUp();
  } else {
    before = await evaluate(0);
    phase('importance', 0)(0, s.nImportance);
    await t.init(importanceBatches(s.seed, s.nImportance, s.microbatch, t.data.count), phase('importance', 0));
  }
  phase('training', t.step)(0, s.steps - t.step);
  const t0 = performance.now();
  const startStep = t.step;
  const losses: number[] = log.filter((r): r is StepRecord => 'loss' in r).map((r) => r.loss);
  // a run resumed from its final checkpoint has its last evaluation in the log already (any other run evaluates again
  // before its last save, stopped ones included)
  const done = t.step >= s.steps ? log.filter((r) => 'eval_ppl' in r && (r as EvalRecord).step === t.step).pop() : undefined;
  let last = (done as EvalRecord | undefined) ?? null;
  let stopped = false;
  // Steps are pipelined (Trainer.runStep): a step's record comes with the next step, or with the flush that every
  // evaluation, checkpoint, pause and the end of the run begin with, so the log keeps its order and step numbers.
  const record = async (r: StepRecord | null) => {
    if (!r) return;
    await emit(r);
    o.events?.onStep?.(r);
    losses.push(r.loss);
  };
  while (t.step < s.steps) {
    if (o.control && (await control(o.control, async () => record(await t.flush()))) === 'stop') {
      stopped = true;
      break;
    }
    const { done: prev, reselect } = await t.runStep();
    await record(prev);
    if (reselect) {
      await emit(reselect);
      o.events?.onReselect?.(reselect);
    }
    const evalDue = s.evalEvery > 0 && t.step % s.evalEvery === 0 && t.step < s.steps;
    const saveDue = o.checkpointEvery > 0 && t.step % o.checkpointEvery === 0 && t.step < s.steps;
    if (evalDue || saveDue || t.step >= s.steps) await record(await t.flush());
    if (evalDue) last = await evaluate(t.step);
    if (saveDue) await save();
  }
  await record(await t.flush());
  if (!last || last.step !== t.step) last = await evaluate(t.step);
  await save();
  const sec = (performance.now() - t0) / 1000;
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
  const beforeRec = before ?? (log.find((r) => (r as EvalRecord).step === 0 && 'eval_ppl' in r) as EvalRecord | undefined) ?? null;
  return {
    steps_done: t.step,
    trainable_params: t.trainableParams,
    ppl_before: beforeRec ? { eval: beforeRec.eval_ppl, heldout: beforeRec.heldout_ppl } : null,
    ppl_after: { eval: last.eval_ppl, heldout: last.heldout_ppl },
    loss_first10: mean(losses.slice(0, 10)),
    loss_last10: mean(losses.slice(-10)),
    turnovers: t.turnovers,
    skipped: t.skipped,
    tok_s: ((t.step - startStep) * s.microbatch * s.accum * s.seq) / Math.max(1e-9, sec),
    sec,
    stopped,
  };
}
