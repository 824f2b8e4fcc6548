// Contract: the training engine behind the worker (EngineBinding): a run = weights + Trainer + runTraining with
// pause/resume/stop, checkpoints in the run folder, resume from the last one; exports restore that checkpoint.

import { DeviceLostError, type GpuContext } from '../engine/gpu/device.ts';
import { allocatedBytes, peakAllocatedBytes } from '../engine/gpu/buffers.ts';
import { openCheckpoint, type Checkpoint } from '../engine/io/checkpoint.ts';
import type { FileSet } from '../engine/io/folder.ts';
import type { FileSink } from '../engine/io/sink.ts';
import type { ByteSource } from '../engine/io/byte-source.ts';
import type { ModelSpec } from '../engine/model/index.ts';
import { loadTrainCheckpoint, TrainCheckpointError, type TrainCheckpoint } from '../engine/train/checkpoint-file.ts';
import { DELTA_FILE } from '../engine/train/delta.ts';
import { exportRun } from '../engine/train/export-run.ts';
import { checkDeltaBase, mergeModel } from '../engine/train/merge.ts';
import { runTraining, type RunEvents } from '../engine/train/run.ts';
import { checkFits, checkResume, savedLoadOptions, savedSettings, setupRun, type SavedSettings } from '../engine/train/setup.ts';
import { Trainer } from '../engine/train/trainer.ts';
import type { EvalRecord, PhaseRecord, ReselectRecord, SampleSet, StepRecord } from '../engine/train/types.ts';
import type { TrainSettings } from '../engine/train/settings.ts';
import { loadWeights, type LoadOptions } from '../engine/train/weights.ts';
import type { DeltaWritten, EngineBinding, EngineEvents, ExportArgs, RunHandle, RunInputs } from './engine-binding.ts';
import { beginGpuJob } from './gpu-jobs.ts';
import { RunClock } from './run-clock.ts';
import { historyFromLog } from './run-history.ts';

/** Checkpoint cadence when EVAL_EVERY is 0 (evaluations only before and after). */
const CHECKPOINT_EVERY_DEFAULT = 50;
export const DELTA_INFO_FILE = 'usaf-delta.json';

// ---------------------------------------------------------------------------------------------
// Checkpoints

/** The run's last checkpoint, or an error in words. */
async function lastCheckpoint(files: FileSet): Promise<TrainCheckpoint> {
  try {
    return await loadTrainCheckpoint(files);
  } catch (e) {
    if (e instanceof TrainCheckpointError && /there is none/.test(e.message)) {
      throw new Error(`run ${files.name} has no checkpoint yet: it is written every EVAL_EVERY steps (every ${CHECKPOINT_EVERY_DEFAULT} with EVAL_EVERY 0) and at the end`);
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Pause / resume / stop

class Control {
  paused = false;
  stopped = false;
  private wake: (() => void) | null = null;
  /** Called when the loop has really stopped between steps (the evaluation and checkpoint before it are done)... */
  onHold: () => void = () => undefined;
  /** ...and when it goes on. */
  onRelease: () => void = () => undefined;

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.wake?.();
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  /** runTraining's `control`: called between steps; waits while paused. */
  readonly next = async (): Promise<'go' | 'stop'> => {
    if (this.paused && !this.stopped) {
      this.onHold();
      while (this.paused && !this.stopped) await new Promise<void>((r) => (this.wake = r));
      this.onRelease();
    }
    this.wake = null;
    return this.stopped ? 'stop' : 'go';
  };
}

/** How long a failure waits for the device's loss to be reported (a lost device first fails the pending calls). */
const LOSS_GRACE_MS = 2000;

/** `work`, unless the device is lost first: then a DeviceLostError (also when the loss surfaced as another error). */
async function unlessLost<T>(gpu: GpuContext, work: Promise<T>, onLost: () => void): Promise<T> {
  const lost = gpu.lost.then((message) => {
    onLost();
    throw new DeviceLostError(message);
  });
  lost.catch(() => undefined);
  try {
    return await Promise.race([work, lost]);
  } catch (e) {
    if (e instanceof DeviceLostError) throw e;
    const message = await Promise.race([gpu.lost, new Promise<null>((r) => setTimeout(() => r(null), LOSS_GRACE_MS))]);
    if (message !== null) {
      onLost();
      throw new DeviceLostError(message);
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

/**
 * The stored model's weights on the GPU, loaded as the run trains them (engine-settings.ts loadOptions; a 4-bit store's
 * experts are uploaded as stored), with the checkpoint they come from.
 */
async function openWeights(gpu: GpuContext, spec: ModelSpec, model: FileSet, opts: LoadOptions) {
  const ckpt = await openCheckpoint(model);
  try {
    return { ckpt, weights: await loadWeights(gpu, spec, ckpt, opts) };
  } catch (e) {
    await ckpt.close();
    throw e;
  }
}

/** Trainable share of the trained layers' expert weights. */
function activeFraction(t: Trainer): number {
  let k = 0;
  let n = 0;
  for (const l of t.layers) {
    k += l.G.k + l.D.k;
    n += l.G.numel + l.D.numel;
  }
  return n ? k / n : 0;
}

const gpuBytes = (gpu: GpuContext): number => Object.values(allocatedBytes(gpu)).reduce((a, b) => a + b, 0);

// ---------------------------------------------------------------------------------------------
// A run

async function train(inp: RunInputs, control: Control): Promise<'done' | 'stopped'> {
  const { gpu, spec, settings } = inp;
  const resume = inp.resumeFrom && inp.resumeFrom.checkpointStep > 0 ? await lastCheckpoint(inp.runFiles) : undefined;
  // the same setup as `usaf train` (engine/train/setup.ts): samples, settings, memory fit, checkpoint record
  const run = setupRun({
    settings, spec, padId: inp.padId, maxBufferSize: gpu.info.maxBufferSize,
    run: { evalWindows: inp.evalWindows, evalSplit: 0, gpuGib: inp.gpuMemoryBytes === null ? null : inp.gpuMemoryBytes / 2 ** 30, expertChunk: null, checkpointEvery: 0 },
    data: { train: inp.train, eval: inp.inDomainEval === inp.train ? null : inp.inDomainEval, heldout: inp.heldout, pretokenized: inp.pretokenized },
  });
  const ts = run.train;
  checkFits(spec, run);
  if (resume) for (const w of checkResume(savedSettings(resume.settings), run.checkpoint)) console.warn(`resuming run ${inp.runFiles.name}: ${w}`);
  if (inp.resumeFrom) await inp.events.onHistory?.((resume?.log ?? []).map((r) => JSON.stringify(r)));
  if (control.stopped) return 'stopped';

  inp.events.onPhase?.({ phase: 'loading', step: resume?.step ?? 0, done: 0, total: 1 });
  const { ckpt, weights } = await openWeights(gpu, spec, inp.model, run.load);
  try {
    if (control.stopped) return 'stopped';
    const trainer = new Trainer(gpu, spec, weights, ts, run.trainSet);
    const replayed = resume ? replay(resume, ts, inp.events, gpu, activeFraction(trainer)) : 0;
    // the clock goes on from the checkpoint's stored elapsed time (older records: the logged step times)
    const from = inp.resumeFrom;
    const before = resume && from?.checkpointStep === resume.step && from.checkpointElapsedMs !== undefined ? from.checkpointElapsedMs : replayed;
    const clock = new RunClock(resume ? before : 0, !!resume);
    control.onHold = () => {
      clock.hold();
      inp.events.onPhase?.({ phase: 'paused', step: trainer.step, done: 0, total: 0 });
    };
    control.onRelease = () => clock.release();
    const summary = await runTraining(trainer, {
      inDomain: run.inDomain, heldout: run.heldout, sink: inp.runSink, checkpointDir: '',
      checkpointEvery: ts.evalEvery > 0 ? ts.evalEvery : CHECKPOINT_EVERY_DEFAULT,
      settings: run.checkpoint as unknown as Record<string, unknown>,
      events: runEvents(trainer, ts, inp.events, clock),
      resume,
      frozenSource: run.streamed ? { ckpt, load: run.load } : undefined,
      control: control.next,
    });
    if (summary.stopped) return 'stopped';
    await keepDelta(inp, trainer, ckpt);
    return 'done';
  } finally {
    await ckpt.close();
  }
}

/**
 * A finished run's delta, written now from the Trainer that holds its final state (equal to its last checkpoint's), into
 * the run folder: an export then copies it instead of loading the model and the checkpoint on the GPU again. Best effort:
 * when it cannot be written (e.g. a store without its original's fingerprint), exports make it from the checkpoint.
 */
async function keepDelta(inp: RunInputs, trainer: Trainer, ckpt: Checkpoint): Promise<void> {
  try {
    const c = await lastCheckpoint(inp.runFiles);
    if (c.step !== trainer.step) return;
    const sink = prefixed(inp.runSink, KEPT_DELTA_DIR);
    const d = await deltaOf({ spec: inp.spec, model: inp.model, runName: inp.runFiles.name }, trainer, ckpt, c, sink, null);
    // written last: the kept delta counts only once it is complete; with the most GPU memory the run held at once
    const kept = { step: d.step, originalSource: d.originalSource, gpuPeakBytes: peakAllocatedBytes(trainer.gpu) };
    await sink.write(KEPT_FILE, [new TextEncoder().encode(JSON.stringify(kept))]);
  } catch (e) {
    console.warn(`run ${inp.runFiles.name}: its delta is made at export instead (${(e as Error).message})`);
  }
}

/**
 * The engine's records → the worker's events (steps with the run's elapsed time, ETA from this session's pace, GPU
 * memory; evaluations; reselections; phases). Training's start (after a resume's set-up) starts the clock.
 */
function runEvents(t: Trainer, ts: TrainSettings, ev: EngineEvents, clock: RunClock): RunEvents {
  const firstStep = t.step;
  return {
    onStep: (r: StepRecord) => {
      const perStep = clock.session() / Math.max(1, r.step - firstStep);
      ev.onStep({
        step: r.step, steps: ts.steps, loss: r.loss, lr: r.lr, tokensPerSecond: r.tok_s, elapsedMs: clock.elapsed(),
        etaMs: perStep * (ts.steps - r.step), gpuMemoryBytes: gpuBytes(t.gpu), gpuPeakBytes: peakAllocatedBytes(t.gpu), skippedSteps: t.skipped,
        activeFraction: activeFraction(t),
      });
    },
    onEval: (r: EvalRecord) => ev.onEval({ step: r.step, inDomainPpl: r.eval_ppl, heldoutPpl: r.heldout_ppl }),
    onReselect: (r: ReselectRecord) => ev.onReselect({ step: r.step, activeFraction: activeFraction(t), turnover: r.turnover }),
    onLog: (r: object) => ev.onLog(JSON.stringify(r)),
    onCheckpoint: (step: number) => ev.onCheckpoint(step, clock.elapsed()),
    onPhase: (p: PhaseRecord) => {
      if (p.phase === 'training') clock.begin();
      ev.onPhase?.(p);
    },
  };
}

/** A resumed run shows its history first (steps, evaluations, reselections of the checkpoint's log); returns its logged step time. */
function replay(c: TrainCheckpoint, ts: TrainSettings, ev: EngineEvents, gpu: GpuContext, active: number): number {
  const h = historyFromLog(c.log as Record<string, unknown>[], ts.steps);
  const memory = gpuBytes(gpu);
  for (const s of h.steps) ev.onStep({ ...s, gpuMemoryBytes: memory, gpuPeakBytes: null, activeFraction: active });
  for (const e of h.evals) ev.onEval(e);
  for (const x of h.reselects) ev.onReselect({ ...x, activeFraction: active });
  return h.steps.at(-1)?.elapsedMs ?? 0;
}

function start(inputs: RunInputs): RunHandle {
  const control = new Control();
  const done = (async () => {
    const end = beginGpuJob(inputs.gpu.device);
    try {
      return await unlessLost(inputs.gpu, train(inputs, control), () => control.stop());
    } finally {
      end();
    }
  })();
  return {
    pause: () => control.pause(),
    resume: () => control.resume(),
    stop: () => control.stop(),
    done,
  };
}

// ---------------------------------------------------------------------------------------------
// Export

/**
 * A run's last checkpoint restored into a Trainer on the weights it was trained over (4-bit or not, shared experts or
 * not, as the checkpoint's settings say), with the checkpoint it loaded (the stored model as stored).
 */
async function withTrainer<T>(args: ExportArgs, use: (loaded: Checkpoint, trainer: Trainer, s: SavedSettings, c: TrainCheckpoint) => Promise<T>): Promise<T> {
  const c = await lastCheckpoint(args.runFiles);
  const s = savedSettings(c.settings);
  const end = beginGpuJob(args.gpu.device);
  try {
    return await unlessLost(args.gpu, (async () => {
      const { ckpt, weights } = await openWeights(args.gpu, args.spec, args.model, savedLoadOptions(s, args.spec.numLayers));
      try {
        // Nothing is trained or evaluated: no samples, no frozen cache.
        const none: SampleSet = { count: 1, seq: s.seq, fill: () => undefined };
        const trainer = new Trainer(args.gpu, args.spec, weights, { ...s, frozenCacheN: 0 }, none);
        await trainer.restore(c);
        return await use(ckpt, trainer, s, c);
      } finally {
        await ckpt.close();
      }
    })(), () => undefined);
  } finally {
    end();
  }
}

/**
 * The run's v2 delta (differences from the weights it trained on, bound to the original's fingerprint: the one a 4-bit
 * store recorded at import, else `original`'s) and its description (run, step, settings, counts) into `sink`: the one the
 * run kept when it finished (keepDelta) if it is its last checkpoint's, else made from that checkpoint on the GPU.
 */
async function writeDelta(args: ExportArgs, sink: FileSink, original: FileSet | null): Promise<DeltaWritten> {
  const kept = await keptDelta(args.runFiles);
  if (kept) {
    const c = await lastCheckpoint(args.runFiles);
    if (c.step === kept.step) {
      for (const f of [DELTA_FILE, DELTA_INFO_FILE]) await sink.write(f, sourceChunks((await args.runFiles.open(`${KEPT_DELTA_DIR}/${f}`))!));
      return { files: [DELTA_FILE, DELTA_INFO_FILE], step: kept.step, originalSource: kept.originalSource };
    }
  }
  return withTrainer(args, (loaded, trainer, _s, c) => deltaOf({ spec: args.spec, model: args.model, runName: args.runFiles.name }, trainer, loaded, c, sink, original));
}

/** The delta of `trainer` (restored to or finished at checkpoint `c`) and its description, into `sink`. */
async function deltaOf(run: { spec: ModelSpec; model: FileSet; runName: string }, trainer: Trainer, loaded: Checkpoint, c: TrainCheckpoint, sink: FileSink, original: FileSet | null): Promise<DeltaWritten> {
  const s = savedSettings(c.settings);
  const r = await exportRun(trainer, {
    loaded, loadedFolder: run.model, original, settings: { ...s, arch: run.spec.arch, steps_done: c.step }, extra: { run: run.runName },
    deltaSink: sink, mergeSink: null,
  });
  const description = {
    file: DELTA_FILE, format: 'usaf-delta version 2 (docs/delta-format.md)', run: run.runName, step: c.step, settings: s,
    bytes: r.delta.bytes, tensors: r.delta.tensors, entries: r.delta.entries,
  };
  await sink.write(DELTA_INFO_FILE, [new TextEncoder().encode(`${JSON.stringify(description, null, 2)}\n`)]);
  return { files: [DELTA_FILE, DELTA_INFO_FILE], step: c.step, originalSource: r.originalSource ?? null };
}

/** Folder of the run where a finished run keeps its delta, and the record that says it is complete. */
const KEPT_DELTA_DIR = 'delta';
const KEPT_FILE = 'kept.json';

async function keptDelta(files: FileSet): Promise<{ step: number; originalSource: string | null } | null> {
  const src = await files.open(`${KEPT_DELTA_DIR}/${KEPT_FILE}`);
  if (!src) return null;
  try {
    const k = JSON.parse(new TextDecoder().decode(await src.read(0, await src.size()))) as { step?: unknown; originalSource?: unknown };
    if (typeof k.step !== 'number' || (k.originalSource !== null && typeof k.originalSource !== 'string')) return null;
    return { step: k.step, originalSource: k.originalSource };
  } catch {
    return null;
  }
}

/** A source's bytes in pieces of 8 MiB. */
async function* sourceChunks(src: ByteSource): AsyncIterable<Uint8Array> {
  const size = await src.size();
  for (let at = 0; at < size; at += 8 << 20) yield await src.read(at, Math.min(8 << 20, size - at));
}

/** `sink` with every path under `dir`. */
function prefixed(sink: FileSink, dir: string): FileSink {
  return { name: `${sink.name}/${dir}`, write: (path, chunks) => sink.write(`${dir}/${path}`, chunks), commit: sink.commit && (() => sink.commit!()) };
}

// ---------------------------------------------------------------------------------------------

export const workerEngine: EngineBinding = {
  start,
  writeDelta,
  checkDeltaBase,
  mergeModel,
};
