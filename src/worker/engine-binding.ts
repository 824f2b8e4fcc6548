// Contract: the one place where the training engine plugs into the worker. The worker handles storage, datasets,
// runs' records and the protocol; the engine provides the memory plan, the training loop and the export writers.
//
// Until `bindEngine` is called, the Trainer methods that need it reject with "<what> is not available yet".

import type { GpuContext } from '../engine/gpu/device.ts';
import type { FileSet } from '../engine/io/folder.ts';
import type { ModelSpec } from '../engine/model/index.ts';
import type { TokenStream } from '../data/stream.ts';
import type { ExportFile, MemoryPlan, RunCallbacks, RunSummary, Settings } from './protocol.ts';

/** What a run needs from the worker: the model, the token streams and a place for checkpoints. */
export interface RunInputs {
  gpu: GpuContext;
  spec: ModelSpec;
  /** The stored model's files (Hub layout). */
  model: FileSet;
  settings: Settings;
  /** STEPS with EPOCHS resolved. */
  steps: number;
  /** TRAIN_FROM with auto resolved. */
  trainFrom: number;
  train: TokenStream;
  /** In-domain evaluation windows (the train stream itself when the dataset has no eval part). */
  inDomainEval: TokenStream;
  heldout: TokenStream | null;
  /** The run's own folder for checkpoints and logs (OPFS). */
  runFolder: FileSystemDirectoryHandle;
  /** Set for resumeRun: the summary as last saved. */
  resumeFrom: RunSummary | null;
  events: RunCallbacks;
}

/** Controls of a started run. `done` settles when the loop has ended (finished, stopped or failed). */
export interface RunHandle {
  pause(): void;
  resume(): void;
  stop(): void;
  done: Promise<void>;
}

export interface EngineBinding {
  plan(args: { gpu: GpuContext | null; spec: ModelSpec; settings: Settings; trainTokens: number | null }): Promise<MemoryPlan>;
  start(inputs: RunInputs): RunHandle;
  exportModel(args: { spec: ModelSpec; model: FileSet; runFolder: FileSystemDirectoryHandle }): Promise<ExportFile[]>;
  exportDelta(args: { spec: ModelSpec; runFolder: FileSystemDirectoryHandle }): Promise<ExportFile[]>;
}

let bound: EngineBinding | null = null;

export function bindEngine(engine: EngineBinding): void {
  bound = engine;
}

export function boundEngine(): EngineBinding | null {
  return bound;
}
