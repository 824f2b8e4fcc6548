// Contract: what the worker's engine (engine.ts) offers the rest of the worker. The worker handles storage, datasets,
// run records, logs, the protocol (runs.ts) and the memory plan (plan.ts: the engine planner, pure); the engine provides
// the training loop, the run's delta and the merge onto the original weights.

import type { GpuContext } from '../engine/gpu/device.ts';
import type { ByteSource } from '../engine/io/byte-source.ts';
import type { FileSet } from '../engine/io/folder.ts';
import type { FileSink } from '../engine/io/sink.ts';
import type { ModelSpec } from '../engine/model/index.ts';
import type { MergeOptions } from '../engine/train/merge.ts';
import type { TokenStream } from '../engine/train/token-stream.ts';
import type { EvalEvent, PhaseEvent, ReselectEvent, RunSummary, Settings, StepEvent } from './protocol.ts';

/** What the training loop reports; the worker records it (run.json, log.jsonl) and forwards it to the page. */
export interface EngineEvents {
  onStep(e: StepEvent): void;
  /** Evaluations; the one at step 0 (before any update) is the "before" perplexity, the last one the "after". */
  onEval(e: EvalEvent): void;
  onReselect(e: ReselectEvent): void;
  /** One line of the run log: a JSON object in the seed's log format. Stored in the run's log.jsonl as given. */
  onLog(line: string): void;
  /** A resumable checkpoint of the state after `step` is now in the run folder; `elapsedMs`: the run's time as of it. */
  onCheckpoint(step: number, elapsedMs?: number): void;
  /** Set-up phases, evaluations, checkpoints and pauses with their progress. */
  onPhase?(e: PhaseEvent): void;
  /**
   * On resume, before training continues: the run's log as of the checkpoint (JSON lines). The worker's log.jsonl is
   * rewritten to it, so that steps logged after the checkpoint by the interrupted session are not kept twice.
   */
  onHistory?(lines: string[]): Promise<void>;
}

/** What a run needs from the worker: the model, the token streams and a folder for checkpoints. */
export interface RunInputs {
  gpu: GpuContext;
  spec: ModelSpec;
  /** The stored model's files (Hub layout). */
  model: FileSet;
  /** The padding id (setup.ts padIdOf: the tokenizer's EOS, else config.json's; its label is ignored). */
  padId: number;
  /** The preset's settings, checked; engine/train/setup.ts resolves them (STEPS with EPOCHS, TRAIN_FROM auto). */
  settings: Settings;
  /** Cap on the windows evaluated per set at each evaluation (null = all). */
  evalWindows: number | null;
  /** GPU memory the run must fit in (null = unknown): the Trainer refuses a larger plan and picks expert chunks to fit. */
  gpuMemoryBytes: number | null;
  train: TokenStream;
  /** In-domain evaluation stream (the train stream itself when the dataset has no eval part). */
  inDomainEval: TokenStream;
  heldout: TokenStream | null;
  /** The training set is pre-tokenized records (JSONL input_ids/labels): trained record by record. */
  pretokenized: boolean;
  /** The run's own OPFS folder, for checkpoints (the worker keeps run.json and log.jsonl there too)... */
  runFolder: FileSystemDirectoryHandle;
  /** ...the same folder to read from (loadTrainCheckpoint) and to write into (saveTrainCheckpoint). */
  runFiles: FileSet;
  runSink: FileSink;
  /** Set by resumeRun: the record as last saved; continue from its checkpointStep. */
  resumeFrom: RunSummary | null;
  events: EngineEvents;
}

/**
 * A started run. `done` resolves with how it ended ('done' after the last step, 'stopped' after stop()) or rejects
 * with the error that ended it (a DeviceLostError when the GPU device was lost).
 */
export interface RunHandle {
  pause(): void;
  resume(): void;
  stop(): void;
  done: Promise<'done' | 'stopped'>;
}

export interface ExportArgs {
  /** The device the run's checkpoint is restored on (to read back the fine-tuned tensors). */
  gpu: GpuContext;
  spec: ModelSpec;
  model: FileSet;
  runFolder: FileSystemDirectoryHandle;
  runFiles: FileSet;
}

export interface DeltaWritten {
  files: string[];
  /** The checkpoint's step. */
  step: number;
  /** Where the store says its original is (as given to the import), when it recorded it. */
  originalSource: string | null;
}

export interface EngineBinding {
  start(inputs: RunInputs): RunHandle;
  /**
   * The run's sparse delta (from its last checkpoint) written into `sink` as DELTA_FILE + its JSON description. `original`:
   * the original Hub weights when at hand (needed only for a 4-bit store that did not record its original's fingerprint).
   */
  writeDelta(args: ExportArgs, sink: FileSink, original: FileSet | null): Promise<DeltaWritten>;
  /** Throws, naming the first mismatch, unless `delta` was made from the model in `base`. */
  checkDeltaBase(base: FileSet, delta: ByteSource): Promise<void>;
  /** Original Hub weights + delta → the fine-tuned model in Hub layout, streamed tensor by tensor into `sink`. */
  mergeModel(base: FileSet, delta: ByteSource, sink: FileSink, o?: MergeOptions): Promise<{ shards: string[]; bytes: number }>;
}
