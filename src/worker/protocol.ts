// Contract: the one interface between the page and the engine worker (`Trainer`), and every value that crosses it.
// The UI holds a comlink proxy of it and imports nothing else from the worker or the engine except these types.
//
// Rules for everything below: plain structured-cloneable data (no classes, no functions) except the callbacks objects,
// which the caller wraps in `Comlink.proxy(...)`. Sizes are bytes, times are milliseconds (epoch ms for dates).

import type { GpuInfo } from '../engine/gpu/device.ts';
import type { ArchInfo } from '../engine/model/index.ts';
import type { Settings } from '../presets/schema.ts';
import type { GenerateResult, SampleSettings } from '../engine/generate/index.ts';
import type { ChatTurn } from '../data/tokenizer.ts';
import type { DatasetFormat, SamplePreview } from '../data/build.ts';
import type { ImportProgress, ModelFacts, ModelSource, ModelStorage, PickedFile, StoredFile, StoredModel } from '../store/records.ts';

export type { DatasetFormat, GpuInfo, SamplePreview, Settings };
export type { ChatTurn, GenerateResult, SampleSettings };
export type { ImportProgress, ModelFacts, ModelSource, ModelStorage, PickedFile, StoredFile, StoredModel };

// ---------------------------------------------------------------------------------------------
// GPU

export interface GpuReport {
  /** true when a device could be created. */
  available: boolean;
  info: GpuInfo | null;
  /** What to tell the user: the adapter in words, or why there is none. */
  message: string;
  /** Set once the device has been lost (in words); a run stops and can resume from its last checkpoint. */
  lost: string | null;
}

// ---------------------------------------------------------------------------------------------
// Models

export interface StorageReport {
  usedBytes: number | null;
  quotaBytes: number | null;
  /** navigator.storage.persisted(): the browser will not evict the data under pressure. */
  persisted: boolean;
  modelsBytes: number;
  datasetsBytes: number;
  /** Run folders (record, log, checkpoint): in all and run by run, newest first. */
  runsBytes: number;
  runs: { id: string; name: string; bytes: number }[];
}

// ---------------------------------------------------------------------------------------------
// Datasets

export type DatasetInput =
  | { kind: 'demo'; which: 'finetune' | 'heldout' }
  | { kind: 'files'; name: string; files: PickedFile[] };

export interface DatasetSettings {
  /** The model whose tokenizer is used. */
  modelId: string;
  /** 'train': fine-tuning data (with an in-domain eval part); 'heldout': only evaluated. */
  role: 'train' | 'heldout';
  name?: string;
  /** For folders / plain files: extensions to include, without dots (e.g. ["js", "ts"]); empty = all text files. */
  extensions: string[];
  /** Fraction of documents kept apart for in-domain evaluation (0 = evaluate on the training stream itself). */
  evalFraction: number;
  /** Seed of the document shuffle that picks the eval part. */
  seed: number;
}

export interface DatasetSummary {
  id: string;
  name: string;
  role: 'train' | 'heldout';
  modelId: string;
  format: DatasetFormat;
  files: number;
  documents: number;
  /** All tokens, EOS included. */
  tokens: number;
  trainTokens: number;
  evalTokens: number;
  /** Tokens whose label is not ignored (-100) — what the loss is averaged over. */
  labeledTokens: number;
  /** The labels were input_ids shifted by one and were shifted back to the Hugging Face convention. */
  labelShiftFixed: boolean;
  /** Things the user should know (label shift found and fixed, skipped files, ...). */
  notes: string[];
  /** Instruction data: its first record rendered, scored and unscored tokens apart (absent in datasets stored before). */
  preview?: SamplePreview | null;
  createdAt: number;
}

export interface DatasetProgress {
  phase: 'reading' | 'tokenizing' | 'saving' | 'done';
  documentsDone: number;
  documentsTotal: number;
  tokens: number;
}

// ---------------------------------------------------------------------------------------------
// Memory plan

export interface PlanItem {
  label: string;
  bytes: number;
  where: 'gpu' | 'cpu' | 'disk';
}

export interface MemoryPlan {
  /** The peak fits the GPU memory given (when given) and every buffer fits this GPU's limits. */
  fits: boolean;
  /** Peak GPU bytes (the engine planner's `peak`). */
  gpuBytes: number;
  /** The GPU memory planned for (WebGPU does not report it: entered by the user or named by a preset); null = unknown. */
  gpuBudgetBytes: number | null;
  items: PlanItem[];
  /** Limits exceeded, the closest settings that fit, hints. */
  notes: string[];
  /** Trainable entries (active expert weights + routers). */
  trainableParams: number;
  /** STEPS after EPOCHS is resolved against the dataset. */
  steps: number;
  /** TRAIN_FROM resolved. */
  trainFrom: number;
}

/** A built-in preset's plan on the model it names (shipped config) and this GPU. */
export interface PresetPlan {
  presetId: string;
  name: string;
  /** The model the plan is for (Hub id or the demo's id). */
  model: string;
  plan: MemoryPlan;
}

// ---------------------------------------------------------------------------------------------
// Runs

export interface RunRequest {
  modelId: string;
  trainDatasetId: string;
  heldoutDatasetId: string | null;
  settings: Settings;
  name?: string;
  /** Cap on the windows of SEQ tokens evaluated per set (in-domain, held-out) at each evaluation; null or absent = all. */
  evalWindows?: number | null;
  /**
   * GPU memory the run must fit in (the user's figure: WebGPU does not report it); null or absent = unknown. The trainer
   * refuses a run whose plan exceeds it and splits 4-bit experts into chunks to fit.
   */
  gpuMemoryBytes?: number | null;
}

export interface StepEvent {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  tokensPerSecond: number;
  elapsedMs: number;
  etaMs: number | null;
  gpuMemoryBytes: number | null;
  /** The most GPU memory the run's engine held at once so far (transient work included; null when unknown). */
  gpuPeakBytes: number | null;
  skippedSteps: number;
  /** Trainable share of the trained layers' expert weights (the active set; null when unknown). */
  activeFraction: number | null;
}

export interface EvalEvent {
  step: number;
  inDomainPpl: number;
  heldoutPpl: number | null;
}

/**
 * What a run is doing besides steps, with its progress: loading the model, the frozen pass, restoring a checkpoint and
 * compiling the step's kernels after it (warming), an
 * evaluation (windows), the importance pass (microbatches), training (from `step`), writing a checkpoint, or paused.
 */
export interface PhaseEvent {
  phase: 'loading' | 'frozen' | 'restoring' | 'warming' | 'evaluation' | 'importance' | 'training' | 'checkpoint' | 'paused';
  /** The step the phase belongs to (0 = before the first). */
  step: number;
  done: number;
  total: number;
}

/** A run's charts as its log records them (log.jsonl): steps, evaluations and reselections. */
export interface RunHistory {
  steps: StepEvent[];
  evals: EvalEvent[];
  reselects: ReselectEvent[];
}

export interface ReselectEvent {
  step: number;
  /** Trainable share of the expert weights of the trained layers (null where not known: a run's past read from its log). */
  activeFraction: number | null;
  /** |new − old| / |new|, over all selection tensors. */
  turnover: number;
}

export type RunStatus = 'running' | 'paused' | 'done' | 'stopped' | 'failed' | 'interrupted';

export interface RunSummary {
  id: string;
  name: string;
  modelId: string;
  trainDatasetId: string;
  heldoutDatasetId: string | null;
  settings: Settings;
  status: RunStatus;
  createdAt: number;
  updatedAt: number;
  steps: number;
  stepsDone: number;
  /** Step of the last checkpoint a resume starts from (0 = none). */
  checkpointStep: number;
  lastLoss: number | null;
  pplBefore: { inDomain: number; heldout: number | null } | null;
  pplAfter: { inDomain: number; heldout: number | null } | null;
  error: string | null;
  /** As requested (RunRequest.evalWindows); kept so that a resumed run evaluates the same windows. */
  evalWindows?: number | null;
  /** As requested (RunRequest.gpuMemoryBytes); a resumed run fits the same memory. */
  gpuMemoryBytes?: number | null;
  /** Time the run has spent so far, as of its last step (set-up included; resume set-up and pauses not). */
  elapsedMs?: number;
  /** The elapsed time as of the checkpoint (`checkpointStep`): where a resumed run's clock goes on from. */
  checkpointElapsedMs?: number;
  /** How the training samples are drawn (engine/train/setup.ts SAMPLE_RULE_TEXT): records of pre-tokenized data, random positions or windows of text. */
  samples?: 'random' | 'windows' | 'records';
}

export interface RunError {
  kind: 'device-lost' | 'out-of-memory' | 'error';
  /** In words, for the user. */
  message: string;
  /** The run can be resumed with resumeRun (from checkpointStep). */
  resumable: boolean;
}

/** Passed wrapped in Comlink.proxy(); every method is called from the worker, fire-and-forget. */
export interface RunCallbacks {
  onStep(e: StepEvent): void;
  onEval(e: EvalEvent): void;
  onReselect(e: ReselectEvent): void;
  onLog(line: string): void;
  /** A resumable checkpoint after this step is stored (a resume continues from the last one). */
  onCheckpoint?(step: number): void;
  /** Set-up phases, evaluations, checkpoints and pauses with their progress. */
  onPhase?(e: PhaseEvent): void;
  onDone(summary: RunSummary): void;
  onError(error: RunError): void;
}

export interface ExportFile {
  name: string;
  data: Blob;
}

// ---------------------------------------------------------------------------------------------
// Export (streamed: tensor by tensor into a folder, never the whole model in memory)

/** Where an export's files go. */
export type ExportTarget =
  /** A folder the user picked with write access (showDirectoryPicker, mode 'readwrite'). */
  | { kind: 'folder'; dir: FileSystemDirectoryHandle }
  /** Browsers without the directory picker: the browser's private storage, then one download per file (disk-backed). */
  | { kind: 'downloads' };

/** The original Hub weights a delta is merged onto, chosen in the page. */
export type OriginalFolder =
  | { kind: 'handle'; dir: FileSystemDirectoryHandle }
  | { kind: 'files'; name: string; files: PickedFile[] };

/** Where a run's model came from, for its export: the merge reads the original weights there. */
export interface ExportOrigin {
  /** 'url': a URL prefix; 'folder': the folder imported from (its handle kept); 'none': not known, pick it again. */
  kind: 'url' | 'folder' | 'none';
  /** The URL or the folder's name (null for 'none'). */
  text: string | null;
  /** The folder (kind 'folder'): the page asks for read permission on it (requestPermission) before exporting. */
  handle: FileSystemDirectoryHandle | null;
  /** Read permission on the folder as the browser answers it now; null for a URL. */
  permission: PermissionState | null;
}

export interface ExportProgress {
  /** 'delta': the run's delta from its checkpoint; 'checking': the original against the delta's base; 'writing'. */
  phase: 'delta' | 'checking' | 'writing' | 'done';
  file: string;
  bytesDone: number;
  bytesTotal: number;
  tensorsDone: number;
  tensorsTotal: number;
  /** Files complete, of which `filesSkipped` an interrupted export of the same thing had already written. */
  filesDone: number;
  filesSkipped: number;
}

export interface ExportedFile {
  name: string;
  bytes: number;
  /** Target 'downloads': the file in the browser's storage (a disk-backed File: hand it to the browser as it is). */
  data: File | null;
}

export interface ExportResult {
  /** The picked folder's name, or null for downloads. */
  folder: string | null;
  files: ExportedFile[];
  /** Files kept from an interrupted export of the same thing. */
  skipped: string[];
  /** For a delta alone: the command that merges it onto the original (`usaf merge --base … --delta … --out …`). */
  mergeCommand: string | null;
}

/** The name of the error an export rejects with when the original weights cannot be read or are another model's. */
export const ORIGINAL_UNAVAILABLE = 'OriginalUnavailable';

// ---------------------------------------------------------------------------------------------
// Run-time estimate

/** A rough run time before Start: the run's arithmetic at the rate a short probe measured on this adapter. */
export interface RunEstimate {
  seconds: number;
  /** Of which: frozen pass, importance and reselections; training steps; evaluations (each with the kernels it compiles first). */
  setupSeconds: number;
  trainSeconds: number;
  evalSeconds: number;
  /** A training step's own time: trainSeconds without the kernels compiled once before the first step (not paid by each step). */
  stepSeconds: number;
  evaluations: number;
  /** Tokens one evaluation scores (both sets). */
  evalTokens: number;
  steps: number;
  flops: number;
  /** The probe's measured rates (FLOP/s; seconds a dispatch and a wait for the GPU cost), and what it timed. */
  flopsPerSecond: number;
  dispatchSeconds: number;
  syncSeconds: number;
  /** The probe's seconds to compile one kernel's pipeline. */
  compileSeconds: number;
  /** Kernel dispatches of the whole run. */
  dispatches: number;
  /** Distinct kernels the run compiles (once each, at first use). */
  pipelines: number;
  probe: string;
  /** The adapter computes on the CPU. */
  cpu: boolean;
}

export interface EstimateRequest {
  modelId: string;
  trainDatasetId: string;
  heldoutDatasetId: string | null;
  settings: Settings;
  evalWindows: number | null;
}

// ---------------------------------------------------------------------------------------------
// Generation (the Try screen)

/** What a prompt is: plain text to continue, or a conversation rendered with the tokenizer's chat template. */
export type PromptInput =
  | { kind: 'text'; text: string }
  | { kind: 'chat'; messages: ChatTurn[] };

export interface PromptFormat {
  /** The tokenizer has a chat template (tokenizer_config.json `chat_template`): prompts can be conversations. */
  chat: boolean;
  /** The end-of-sequence token, as text (generation stops there); null when the tokenizer does not name it. */
  eosToken: string | null;
}

export interface GenerateSampling extends SampleSettings {
  /** Generation also stops once the text ends with one of these (empty: only EOS and maxNewTokens). */
  stopStrings: string[];
}

/** The base model (`runId` null) or a run's fine-tuned entries over it, continuing `promptIds`. */
export interface GenerateRequest {
  modelId: string;
  runId: string | null;
  promptIds: number[];
  sampling: GenerateSampling;
}

/** How a generation ended: the new token ids, their text, why it stopped, prefill and decode speed (tokens/s). */
export interface Generated extends GenerateResult {
  text: string;
}

// ---------------------------------------------------------------------------------------------
// The interface

export interface WorkerEnv {
  /** The app's base URL (where index.html is), so the worker finds the built-in demo files. */
  appBase: string;
}

export interface Trainer {
  /** Called once by connectTrainer before anything else. */
  setup(env: WorkerEnv): Promise<void>;

  /** Creates the GPU device on first call; never throws (a missing GPU is reported in `message`). */
  gpuInfo(): Promise<GpuReport>;
  /** Registers the page's handler (Comlink.proxy) for a lost GPU device; called with the reason in words. */
  watchDevice(onLost: (message: string) => void): Promise<void>;

  /** The MoE families this engine build loads (the engine registry's rows). */
  families(): Promise<ArchInfo[]>;
  /** Stored models; on first launch the built-in demo model is imported from the app's own files first. */
  listModels(): Promise<StoredModel[]>;
  /**
   * Stores a model with its routed experts quantized to 4 bits, streamed tensor by tensor; resumes an interrupted import
   * of the same source (files already stored are kept). Refuses, naming both figures, when the storage it needs is more
   * than navigator.storage.estimate() leaves.
   */
  importModel(source: ModelSource, onProgress?: (p: ImportProgress) => void): Promise<StoredModel>;
  /** Cancels the import in progress (it rejects with an AbortError); what was stored is kept for a later resume. */
  cancelImport(): Promise<void>;
  deleteModel(id: string): Promise<void>;
  storageEstimate(): Promise<StorageReport>;

  /** Parses and tokenizes with the model's own tokenizer, stores the token stream, returns the counts. */
  loadDataset(input: DatasetInput, settings: DatasetSettings, onProgress?: (p: DatasetProgress) => void): Promise<DatasetSummary>;
  listDatasets(): Promise<DatasetSummary[]>;
  deleteDataset(id: string): Promise<void>;

  /** The engine planner's plan for these settings, this model and this GPU; `gpuMemoryBytes` = memory to fit in (null = unknown). */
  plan(modelId: string, settings: Settings, trainDatasetId?: string | null, gpuMemoryBytes?: number | null): Promise<MemoryPlan>;
  /** Each built-in preset's plan on its own model and this GPU, in the GPU memory the preset names (else `gpuMemoryBytes`). */
  presetPlans(trainDatasetId?: string | null, gpuMemoryBytes?: number | null): Promise<PresetPlan[]>;
  /** How long a run of these settings would take on this adapter, roughly (a probe of a second or less, then cached). */
  estimateRun(request: EstimateRequest): Promise<RunEstimate>;

  /** Starts a run; resolves as soon as it is started (events arrive through the callbacks). */
  startRun(request: RunRequest, callbacks: RunCallbacks): Promise<RunSummary>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  stop(): Promise<void>;
  /** Continues an interrupted, paused-and-reloaded or failed run from its last checkpoint. */
  resumeRun(runId: string, callbacks: RunCallbacks): Promise<RunSummary>;
  listRuns(): Promise<RunSummary[]>;
  /** A run's charts from its stored log (any run, the live one too). */
  runHistory(runId: string): Promise<RunHistory>;
  /** Renames a run (a blank name is refused); returns the record as saved. */
  renameRun(runId: string, name: string): Promise<RunSummary>;
  /** Removes a run's record, log and checkpoint (refused for the run going on). */
  deleteRun(runId: string): Promise<void>;

  /** Where the run's model came from (the merge reads the original weights there), and the permission to read it. */
  exportOrigin(runId: string): Promise<ExportOrigin>;
  /**
   * The fine-tuned model in Hub layout (shards + index + config + tokenizer files): the run's delta merged onto the
   * original weights (`original`, else the import's source), streamed tensor by tensor into `target`. A restarted
   * export of the same thing into the same folder keeps the files already complete. Rejects with an error named
   * ORIGINAL_UNAVAILABLE when the original cannot be read or does not match the delta's base.
   */
  exportModel(runId: string, target: ExportTarget, original: OriginalFolder | null, onProgress?: (p: ExportProgress) => void): Promise<ExportResult>;
  /** The sparse delta alone (safetensors + a JSON description), with the `usaf merge` command that applies it. */
  exportDelta(runId: string, target: ExportTarget, onProgress?: (p: ExportProgress) => void): Promise<ExportResult>;
  /** Merges a delta file onto an original folder, streamed into `target` like exportModel. */
  applyDelta(delta: Blob, original: OriginalFolder, target: ExportTarget, onProgress?: (p: ExportProgress) => void): Promise<ExportResult>;
  /** Cancels the export in progress (it rejects with an AbortError); complete files stay for a restart. */
  cancelExport(): Promise<void>;
  /** The run log, JSONL in the seed's format. */
  exportLog(runId: string): Promise<ExportFile>;

  /** Whether the model's tokenizer has a chat template, and its EOS token. Rejects for a model without a tokenizer. */
  promptFormat(modelId: string): Promise<PromptFormat>;
  /** The prompt's token ids with the model's own tokenizer (a conversation through its chat template, the assistant's turn opened). */
  tokenizePrompt(modelId: string, prompt: PromptInput): Promise<number[]>;
  /**
   * Generates from the base model or a run (its trained entries over the stored model, from its last checkpoint);
   * `onToken` (Comlink.proxy) gets each new token and its text as it comes. Resolves when it ends, also when stopped
   * (`stop: 'aborted'`, with the tokens so far). One generation at a time.
   */
  generate(request: GenerateRequest, onToken: (id: number, text: string) => void): Promise<Generated>;
  /** Stops the generation going on (it resolves with what it has); nothing happens when none is. */
  stopGenerate(): Promise<void>;
}
