// Contract: the training engine behind the worker (EngineBinding): a run = weights + Trainer + runTraining with
// pause/resume/stop, checkpoints in the run folder, resume from the last one; exports restore that checkpoint.

import { DeviceLostError, type GpuContext } from '../engine/gpu/device.ts';
import { allocatedBytes } from '../engine/gpu/buffers.ts';
import { openCheckpoint, type Checkpoint } from '../engine/io/checkpoint.ts';
import type { FileSet } from '../engine/io/folder.ts';
import type { FileSink } from '../engine/io/sink.ts';
import type { ModelSpec } from '../engine/model/index.ts';
import { loadTrainCheckpoint, TrainCheckpointError, type TrainCheckpoint } from '../engine/train/checkpoint-file.ts';
import { DELTA_FILE } from '../engine/train/delta.ts';
import { exportRun } from '../engine/train/export-run.ts';
import { checkDeltaBase, mergeModel } from '../engine/train/merge.ts';
import { runTraining, type RunEvents } from '../engine/train/run.ts';
import { trainSamples, windowSamples } from '../engine/train/samples.ts';
import { Trainer, type EvalRecord, type ReselectRecord, type Sampling, type SampleSet, type StepRecord, type TrainSettings } from '../engine/train/trainer.ts';
import { loadWeights, type LoadOptions } from '../engine/train/weights.ts';
import type { DeltaWritten, EngineBinding, EngineEvents, ExportArgs, RunHandle, RunInputs } from './engine-binding.ts';
import { checkResume, runConfig, samplingOf, savedLoadOptions, savedSettings, type SavedSettings } from './engine-settings.ts';
import { beginGpuJob } from './gpu-jobs.ts';
import { frozenCacheSamples } from './plan.ts';

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
    while (this.paused && !this.stopped) await new Promise<void>((r) => (this.wake = r));
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
  const saved = resume ? savedSettings(resume.settings) : null;
  // A resumed run draws its samples as it was checkpointed (runs from before random positions drew the windows).
  const sampling: Sampling = saved ? (saved.sampling ?? 'windows') : samplingOf(settings);
  const trainSet = trainSamples(inp.train, { sampling, seq: settings.seq, steps: inp.steps, microbatch: settings.microbatch, accum: settings.accum, seed: settings.seed }, inp.padId);
  // the windows as training samples: the in-domain eval (no split) reuses their frozen cache
  const inDomain = inp.inDomainEval === inp.train && sampling === 'windows' ? trainSet : windowSamples(inp.inDomainEval, settings.seq, inp.padId);
  const heldout = inp.heldout ? windowSamples(inp.heldout, settings.seq, inp.padId) : null;
  const streamed = settings.streamFrozen && inp.trainFrom > 0; // every sample cached (host memory) by the layer-major pass
  const cacheN = inp.trainFrom === 0 ? 0 : streamed ? trainSet.count : frozenCacheSamples(settings, trainSet.count, spec, gpu.info.maxBufferSize);
  const cfg = runConfig(settings, { steps: inp.steps, trainFrom: inp.trainFrom, evalWindows: inp.evalWindows, frozenCacheN: cacheN }, spec.numLayers);
  const ts = { ...cfg.train, sampling, ...(inp.gpuMemoryBytes === null ? {} : { gpuBytes: inp.gpuMemoryBytes }) };

  if (saved) checkResume(saved, ts, cfg.quant);
  if (inp.resumeFrom) await inp.events.onHistory?.((resume?.log ?? []).map((r) => JSON.stringify(r)));
  if (control.stopped) return 'stopped';

  const { ckpt, weights } = await openWeights(gpu, spec, inp.model, cfg.load);
  try {
    if (control.stopped) return 'stopped';
    const trainer = new Trainer(gpu, spec, weights, ts, trainSet);
    const history = resume ? replay(resume, ts, inp.events, gpu, activeFraction(trainer)) : 0;
    const summary = await runTraining(trainer, {
      inDomain, heldout, sink: inp.runSink, checkpointDir: '',
      checkpointEvery: ts.evalEvery > 0 ? ts.evalEvery : CHECKPOINT_EVERY_DEFAULT,
      settings: { ...cfg.checkpoint, sampling } as unknown as Record<string, unknown>,
      events: runEvents(trainer, ts, inp.events, history),
      resume,
      frozenSource: streamed ? { ckpt, load: cfg.load } : undefined,
      control: control.next,
    });
    return summary.stopped ? 'stopped' : 'done';
  } finally {
    await ckpt.close();
  }
}

/** The engine's records → the worker's events (steps with elapsed time, ETA, GPU memory; evaluations; reselections). */
function runEvents(t: Trainer, ts: TrainSettings, ev: EngineEvents, elapsedBefore: number): RunEvents {
  const t0 = performance.now();
  const firstStep = t.step;
  return {
    onStep: (r: StepRecord) => {
      const elapsed = performance.now() - t0;
      const perStep = elapsed / Math.max(1, r.step - firstStep);
      ev.onStep({
        step: r.step, steps: ts.steps, loss: r.loss, lr: r.lr, tokensPerSecond: r.tok_s, elapsedMs: elapsedBefore + elapsed,
        etaMs: perStep * (ts.steps - r.step), gpuMemoryBytes: gpuBytes(t.gpu), skippedSteps: t.skipped,
        activeFraction: activeFraction(t),
      });
    },
    onEval: (r: EvalRecord) => ev.onEval({ step: r.step, inDomainPpl: r.eval_ppl, heldoutPpl: r.heldout_ppl }),
    onReselect: (r: ReselectRecord) => ev.onReselect({ step: r.step, activeFraction: activeFraction(t), turnover: r.turnover }),
    onLog: (r: object) => ev.onLog(JSON.stringify(r)),
    onCheckpoint: (step: number) => ev.onCheckpoint(step),
  };
}

/** A resumed run shows its history first (steps, evaluations, reselections of the checkpoint's log); returns its time. */
function replay(c: TrainCheckpoint, ts: TrainSettings, ev: EngineEvents, gpu: GpuContext, active: number): number {
  let elapsed = 0;
  let skipped = 0;
  for (const r of c.log as Record<string, unknown>[]) {
    if ('loss' in r && typeof r.step === 'number') {
      const s = r as unknown as StepRecord;
      elapsed += s.sec * 1000;
      if (!s.finite) skipped++;
      ev.onStep({
        step: s.step, steps: ts.steps, loss: s.loss, lr: s.lr, tokensPerSecond: s.tok_s, elapsedMs: elapsed, etaMs: null,
        gpuMemoryBytes: gpuBytes(gpu), skippedSteps: skipped, activeFraction: active,
      });
    } else if ('eval_ppl' in r) {
      const e = r as unknown as EvalRecord;
      ev.onEval({ step: e.step, inDomainPpl: e.eval_ppl, heldoutPpl: e.heldout_ppl });
    } else if ('turnover' in r) {
      const x = r as unknown as ReselectRecord;
      ev.onReselect({ step: x.step, activeFraction: active, turnover: x.turnover });
    }
  }
  return elapsed;
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
 * store recorded at import, else `original`'s) and its description (run, step, settings, counts) into `sink`.
 */
async function writeDelta(args: ExportArgs, sink: FileSink, original: FileSet | null): Promise<DeltaWritten> {
  const d = await withTrainer(args, async (loaded, trainer, s, c) => {
    const r = await exportRun(trainer, {
      loaded, loadedFolder: args.model, original, settings: { ...s, arch: args.spec.arch, steps_done: c.step }, extra: { run: args.runFiles.name },
      deltaSink: sink, mergeSink: null,
    });
    return { r, s, step: c.step };
  });
  const description = {
    file: DELTA_FILE, format: 'usaf-delta version 2 (docs/delta-format.md)', run: args.runFiles.name, step: d.step, settings: d.s,
    bytes: d.r.delta.bytes, tensors: d.r.delta.tensors, entries: d.r.delta.entries,
  };
  await sink.write(DELTA_INFO_FILE, [new TextEncoder().encode(`${JSON.stringify(description, null, 2)}\n`)]);
  return { files: [DELTA_FILE, DELTA_INFO_FILE], step: d.step, originalSource: d.r.originalSource ?? null };
}

// ---------------------------------------------------------------------------------------------

export const workerEngine: EngineBinding = {
  start,
  writeDelta,
  checkDeltaBase,
  mergeModel,
};
