// Contract: the worker's implementation of `Trainer` (protocol.ts): GPU, stored models, datasets and run records here;
// training and export through the worker's engine (engine.ts).

import { createGpu, type GpuContext } from '../engine/gpu/device.ts';
import { isSpent } from './gpu-jobs.ts';
import { workerEngine } from './engine.ts';
import { buildDataset, byRecord } from '../data/build.ts';
import type { SourceFile } from '../data/parse.ts';
import { loadTokenizer, type TextTokenizer } from '../data/tokenizer.ts';
import { datasetsBytes, deleteStoredDataset, listStoredDatasets, loadDatasetStreams, saveDataset, storedDataset } from './dataset-store.ts';
import { shortHash, slug } from '../store/ids.ts';
import { cancelRunningImport, impliedSettings, importModel, storedSpec, stripCommonFolder, workerModelStore } from './model-store.ts';
import {
  type DatasetInput, type DatasetProgress, type DatasetSettings, type DatasetSummary, type ExportFile, type ExportOrigin,
  type EstimateRequest, type ExportProgress, type ExportResult, type ExportTarget, type GpuReport, type OriginalFolder, type RunEstimate,
  type ImportProgress, type MemoryPlan, type ModelSource, type PresetPlan, type RunCallbacks, type RunHistory, type RunRequest, type RunSummary, type Settings,
  type StorageReport, type StoredModel, type Trainer, type WorkerEnv,
  type Generated, type GenerateRequest, type PromptFormat, type PromptInput,
} from './protocol.ts';
import { TryModels } from './try-model.ts';
import { provideGenerateDeps } from './generate.ts';
import {
  deleteRunFolder, listRunRecords, markInterruptedRuns, newRunId, opfsRunRecords, readRunLog, readRunRecord, runFolder, runLockName,
  runsBytes, writeRunRecord,
} from './run-store.ts';
import { historyFromLog, parseLog } from './run-history.ts';
import { ActiveRun } from './runs.ts';
import { Exports } from './exports.ts';
import { idbOrigins } from '../store/origins.ts';
import { openCheckpoint } from '../engine/io/checkpoint.ts';
import { opfsSink } from '../store/opfs-sink.ts';
import { opfsFolder } from '../store/opfs.ts';
import { ARCHITECTURES, parseConfig, type ArchInfo, type ModelSpec } from '../engine/model/index.ts';
import { checkValue, resolveSteps, RUN_SETTINGS, validateSettings } from '../presets/schema.ts';
import { modelProblems, padIdOf, sampleRuleOf } from '../engine/train/setup.ts';
import { BUILTIN_PRESETS } from '../presets/builtin.ts';
import { PRESET_MODEL_CONFIGS } from '../presets/models.ts';
import { appPlan } from './plan.ts';
import { estimateRun } from './estimate.ts';

/** A GPU memory size from the page: a positive number of bytes, or null. */
function checkedBytes(n: number | null | undefined): number | null {
  if (n === null || n === undefined) return null;
  if (!(Number.isFinite(n) && n > 0)) throw new Error(`the GPU memory must be a positive number of bytes, got ${n}`);
  return n;
}

export class WorkerTrainer implements Trainer {
  private env: WorkerEnv | null = null;
  private gpu: Promise<GpuContext> | null = null;
  /** `gpu` once resolved. */
  private ctx: GpuContext | null = null;
  /** Devices destroyed on purpose (spent), whose loss is not reported. */
  private readonly retired = new WeakSet<GPUDevice>();
  private lostMessage: string | null = null;
  private onLost: ((message: string) => void) | null = null;
  private readonly store = workerModelStore(() => this.device());

  constructor() {
    // Generation uses this worker's GPU device (a lost one is replaced) and model store.
    provideGenerateDeps({ gpu: () => this.device(), store: () => this.store });
  }

  async setup(env: WorkerEnv): Promise<void> {
    this.env = { appBase: new URL(env.appBase).href };
    await markInterruptedRuns();
  }

  private appBase(): string {
    if (!this.env) throw new Error('the worker was not set up (connectTrainer calls setup first)');
    return this.env.appBase;
  }

  // -------------------------------------------------------------------------------------------
  // GPU

  /**
   * The worker's device; a spent one (its jobs ended: gpu-jobs.ts) is destroyed and replaced first, so that the memory
   * of a finished run or export is given back before the next job allocates (a replaced device is not "lost").
   */
  private device(): Promise<GpuContext> {
    if (this.ctx && isSpent(this.ctx.device)) {
      const old = this.ctx;
      this.retired.add(old.device);
      this.ctx = null;
      this.gpu = null;
      old.device.destroy();
    }
    if (!this.gpu) {
      const p = createGpu();
      this.gpu = p;
      p.then(
        (g) => {
          if (this.gpu === p) this.ctx = g;
          return g.lost.then((msg) => {
            if (this.retired.has(g.device)) return;
            this.lostMessage = msg;
            if (this.gpu === p) (this.gpu = null), (this.ctx = null); // the next call makes a new device
            this.onLost?.(msg);
          });
        },
        () => { if (this.gpu === p) this.gpu = null; },
      );
    }
    return this.gpu;
  }

  async gpuInfo(): Promise<GpuReport> {
    try {
      const g = await this.device();
      const i = g.info;
      const name = [i.vendor, i.architecture, i.device].filter(Boolean).join(' ') || 'unnamed adapter';
      return {
        available: true,
        info: i,
        message: `WebGPU adapter: ${name}${i.description ? ` (${i.description})` : ''}`,
        lost: this.lostMessage,
      };
    } catch (e) {
      return { available: false, info: null, message: (e as Error).message, lost: this.lostMessage };
    }
  }

  /** Test aid (not part of `Trainer`): destroys the device, as a driver reset would lose it. */
  async loseDeviceForTest(): Promise<void> {
    const gpu = await this.gpu?.catch(() => null);
    gpu?.device.destroy();
  }

  async watchDevice(onLost: (message: string) => void): Promise<void> {
    this.onLost = onLost;
    if (this.lostMessage) onLost(this.lostMessage);
  }

  // -------------------------------------------------------------------------------------------
  // Models

  async families(): Promise<ArchInfo[]> {
    return ARCHITECTURES.map((a) => ({ ...a, examples: [...a.examples] }));
  }

  listModels(): Promise<StoredModel[]> {
    return this.store.list();
  }

  importModel(source: ModelSource, onProgress?: (p: ImportProgress) => void): Promise<StoredModel> {
    return importModel(this.store, source, this.appBase(), (p) => onProgress?.(p));
  }

  async cancelImport(): Promise<void> {
    cancelRunningImport();
  }

  async deleteModel(id: string): Promise<void> {
    this.tokenizers.delete(id);
    await this.store.delete(id);
  }

  async storageEstimate(): Promise<StorageReport> {
    const est = await navigator.storage.estimate().catch(() => ({ usage: undefined, quota: undefined }));
    const persisted = await (navigator.storage.persisted?.() ?? Promise.resolve(false)).catch(() => false);
    const runs = await runsBytes(await listRunRecords());
    return {
      runsBytes: runs.reduce((a, r) => a + r.bytes, 0),
      runs,
      usedBytes: est.usage ?? null,
      quotaBytes: est.quota ?? null,
      persisted,
      modelsBytes: await this.store.bytes(),
      datasetsBytes: await datasetsBytes(),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Datasets

  private tokenizers = new Map<string, Promise<TextTokenizer | null>>();

  private tokenizer(model: StoredModel): Promise<TextTokenizer | null> {
    let t = this.tokenizers.get(model.id);
    if (!t) {
      t = model.hasTokenizer ? this.store.files(model.id).then(loadTokenizer) : Promise.resolve(null);
      t.catch(() => this.tokenizers.delete(model.id));
      this.tokenizers.set(model.id, t);
    }
    return t;
  }

  async loadDataset(input: DatasetInput, settings: DatasetSettings, onProgress?: (p: DatasetProgress) => void): Promise<DatasetSummary> {
    const model = await this.store.get(settings.modelId);
    if (!model) throw new Error(`no stored model "${settings.modelId}"`);
    const evalFraction = settings.evalFraction;
    if (!(evalFraction >= 0 && evalFraction < 1)) throw new Error(`the eval fraction must be at least 0 and below 1, got ${evalFraction}`);
    if (!Number.isSafeInteger(settings.seed) || settings.seed < 0) throw new Error(`the split seed must be a whole number ≥ 0, got ${settings.seed}`);
    const extensions = settings.extensions.map((e) => e.trim().replace(/^\./, '').toLowerCase()).filter(Boolean);
    const name = settings.name?.trim() || (input.kind === 'demo' ? `demo ${input.which}` : input.name);
    const identity = input.kind === 'demo'
      ? `demo:${input.which}`
      : `files:${input.files.map((f) => `${f.path}:${f.file.size}`).sort().join('|')}`;
    const id = `${slug(name)}-${shortHash([identity, model.id, settings.role, evalFraction, settings.seed, extensions.join(',')].join('\n'))}`;
    const have = await storedDataset(id);
    if (have) {
      onProgress?.({ phase: 'done', documentsDone: have.documents, documentsTotal: have.documents, tokens: have.tokens });
      return have;
    }

    onProgress?.({ phase: 'reading', documentsDone: 0, documentsTotal: 0, tokens: 0 });
    let files: SourceFile[];
    if (input.kind === 'demo') {
      const url = new URL(`data/${input.which}.jsonl`, this.appBase());
      const res = await fetch(url);
      if (!res.ok) throw new Error(`${url.pathname}: HTTP ${res.status} (the demo data ships with the app; are you offline on a first visit?)`);
      files = [{ path: `${input.which}.jsonl`, bytes: new Uint8Array(await res.arrayBuffer()) }];
    } else {
      const strip = stripCommonFolder(input.files.map((f) => f.path));
      files = await Promise.all(input.files.map(async (f) => ({ path: strip(f.path) || f.path, bytes: new Uint8Array(await f.file.arrayBuffer()) })));
    }
    const tok = await this.tokenizer(model);
    const built = await buildDataset(files, tok, {
      extensions, evalFraction, seed: settings.seed, vocabSize: model.facts.vocab, modelName: model.name,
      onProgress: (p) => onProgress?.({ phase: 'tokenizing', ...p }),
    });
    onProgress?.({ phase: 'saving', documentsDone: built.documents, documentsTotal: built.documents, tokens: built.all.ids.length });
    const summary: DatasetSummary = {
      id, name, role: settings.role, modelId: model.id, format: built.format, files: built.files.length,
      documents: built.documents, tokens: built.all.ids.length, trainTokens: built.train.ids.length,
      evalTokens: built.eval?.ids.length ?? 0, labeledTokens: built.labeledTokens, labelShiftFixed: built.labelShiftFixed,
      notes: built.notes, preview: built.preview, createdAt: Date.now(),
    };
    await saveDataset(summary, built.train, built.eval);
    onProgress?.({ phase: 'done', documentsDone: built.documents, documentsTotal: built.documents, tokens: summary.tokens });
    return summary;
  }

  listDatasets(): Promise<DatasetSummary[]> {
    return listStoredDatasets();
  }

  deleteDataset(id: string): Promise<void> {
    return deleteStoredDataset(id);
  }

  // -------------------------------------------------------------------------------------------
  // Plan, runs, export

  /** The stored model's spec, its files and its tokenizer's EOS (pad) id. */
  private async modelParts(modelId: string) {
    const model = await this.store.get(modelId);
    if (!model) throw new Error(`no stored model "${modelId}"`);
    const files = await this.store.files(model.id);
    const ckpt = await openCheckpoint(files);
    let spec: ModelSpec;
    try {
      spec = storedSpec(model, ckpt);
    } finally {
      await ckpt.close();
    }
    const tok = await this.tokenizer(model);
    const padId = padIdOf(tok?.eosId ?? null, model.config as Record<string, unknown>);
    return { model, files, spec, padId };
  }

  async plan(modelId: string, settings: Settings, trainDatasetId?: string | null, gpuMemoryBytes?: number | null): Promise<MemoryPlan> {
    const v = validateSettings(settings);
    if (!v.ok) throw new Error(`invalid settings: ${v.errors.join('; ')}`);
    const { spec, model } = await this.modelParts(modelId);
    const ds = trainDatasetId ? await storedDataset(trainDatasetId) : null;
    const gpu = await this.device().catch(() => null);
    const trainTokens = ds && ds.modelId === modelId ? ds.trainTokens : null;
    const used = impliedSettings(v.settings, model);
    const plan = appPlan({ gpu: gpu?.info ?? null, spec, settings: used, trainTokens, pretokenized: !!ds && byRecord(ds.format), gpuMemoryBytes: checkedBytes(gpuMemoryBytes) });
    if (used !== v.settings) {
      plan.notes.unshift(`${model.name} is stored with its experts in 4 bits (groups of ${model.groupSize}): runs on it use 4-bit experts, QUANTIZE_EXPERTS is implied.`);
    }
    return plan;
  }

  async presetPlans(trainDatasetId?: string | null, gpuMemoryBytes?: number | null): Promise<PresetPlan[]> {
    const ds = trainDatasetId ? await storedDataset(trainDatasetId) : null;
    const gpu = await this.device().catch(() => null);
    const out: PresetPlan[] = [];
    for (const p of BUILTIN_PRESETS) {
      if (!p.model || !PRESET_MODEL_CONFIGS[p.model]) continue;
      const spec = parseConfig(PRESET_MODEL_CONFIGS[p.model]);
      // The dataset sizes the frozen cache only when it was tokenized for this preset's model.
      const trainTokens = ds && ds.modelId === p.model ? ds.trainTokens : null;
      const budget = p.gpuGiB !== null ? p.gpuGiB * 2 ** 30 : checkedBytes(gpuMemoryBytes);
      out.push({ presetId: p.id, name: p.name, model: p.model, plan: appPlan({ gpu: gpu?.info ?? null, spec, settings: p.settings, trainTokens, pretokenized: !!ds && byRecord(ds.format), gpuMemoryBytes: budget }) });
    }
    return out;
  }

  async estimateRun(r: EstimateRequest): Promise<RunEstimate> {
    const v = validateSettings(r.settings);
    if (!v.ok) throw new Error(`invalid settings: ${v.errors.join('; ')}`);
    const { spec, model } = await this.modelParts(r.modelId);
    const train = await storedDataset(r.trainDatasetId);
    if (!train) throw new Error(`no stored dataset "${r.trainDatasetId}"`);
    const heldout = r.heldoutDatasetId ? await storedDataset(r.heldoutDatasetId) : null;
    return estimateRun(await this.device(), spec, impliedSettings(v.settings, model), train, heldout, r.evalWindows);
  }

  private active: ActiveRun | null = null;

  private async launch(summary: RunSummary, resumeFrom: RunSummary | null, callbacks: RunCallbacks): Promise<RunSummary> {
    if (this.active) throw new Error(`run ${this.active.summary.id} is still going: stop it first`);
    const { files, spec, padId, model } = await this.modelParts(summary.modelId);
    summary = { ...summary, settings: impliedSettings(summary.settings, model) };
    const train = await loadDatasetStreams(summary.trainDatasetId);
    const heldout = summary.heldoutDatasetId ? await loadDatasetStreams(summary.heldoutDatasetId) : null;
    const gpu = await this.device();
    const steps = resolveSteps(summary.settings, train.summary.trainTokens);
    const problems = modelProblems(summary.settings, spec);
    if (problems.length) throw new Error(problems.join('; '));
    const pretokenized = byRecord(train.summary.format);
    const samples = sampleRuleOf(summary.settings, pretokenized);
    const run = new ActiveRun({ ...summary, steps, samples, status: 'running', error: null }, opfsRunRecords, callbacks);
    const folder = (await runFolder(summary.id, true))!;
    const handle = workerEngine.start({
      gpu, spec, model: files, padId, settings: summary.settings, evalWindows: summary.evalWindows ?? null, gpuMemoryBytes: summary.gpuMemoryBytes ?? null,
      train: train.train, inDomainEval: train.eval ?? train.train, heldout: heldout?.train ?? null, pretokenized,
      runFolder: folder, runFiles: opfsFolder(folder, summary.id), runSink: opfsSink(folder), resumeFrom, events: run.events(),
    });
    this.active = run;
    run.setStatus('running');
    const follow = () => run.follow(handle).finally(() => { if (this.active === run) this.active = null; });
    // The lock says "this run is live" to workers of other tabs (see markInterruptedRuns).
    if (navigator.locks) void navigator.locks.request(runLockName(summary.id), follow);
    else void follow();
    return { ...run.summary };
  }

  async startRun(request: RunRequest, callbacks: RunCallbacks): Promise<RunSummary> {
    const v = validateSettings(request.settings);
    if (!v.ok) throw new Error(`invalid settings: ${v.errors.join('; ')}`);
    if (!(await storedDataset(request.trainDatasetId))) throw new Error(`no stored dataset "${request.trainDatasetId}"`);
    const evalWindows = request.evalWindows ?? null;
    const why = checkValue(RUN_SETTINGS.find((s) => s.key === 'evalWindows')!, evalWindows);
    if (why) throw new Error(`the evaluation windows per set (EVAL_WINDOWS): ${why}`);
    const gpuMemoryBytes = request.gpuMemoryBytes ?? null;
    if (gpuMemoryBytes !== null && !(Number.isFinite(gpuMemoryBytes) && gpuMemoryBytes > 0)) throw new Error(`the GPU memory must be a positive number of bytes, got ${gpuMemoryBytes}`);
    const now = Date.now();
    const id = newRunId(now);
    const summary: RunSummary = {
      id, name: request.name?.trim() || id, modelId: request.modelId, trainDatasetId: request.trainDatasetId,
      heldoutDatasetId: request.heldoutDatasetId, settings: v.settings, status: 'running', createdAt: now, updatedAt: now,
      steps: v.settings.steps, stepsDone: 0, checkpointStep: 0, lastLoss: null, pplBefore: null, pplAfter: null, error: null,
      evalWindows, gpuMemoryBytes,
    };
    return this.launch(summary, null, callbacks);
  }

  private current(what: string): ActiveRun {
    if (!this.active?.handle) throw new Error(`${what}: no run is going`);
    return this.active;
  }

  async pause(): Promise<void> {
    const run = this.current('Pause');
    run.handle!.pause();
    run.setStatus('paused');
  }

  async resume(): Promise<void> {
    const run = this.current('Resume');
    run.handle!.resume();
    run.setStatus('running');
  }

  async stop(): Promise<void> {
    this.current('Stop').handle!.stop();
  }

  async resumeRun(runId: string, callbacks: RunCallbacks): Promise<RunSummary> {
    const rec = await readRunRecord(runId);
    if (!rec) throw new Error(`no run "${runId}"`);
    if (rec.status === 'done') throw new Error(`run ${runId} is finished`);
    return this.launch(rec, rec, callbacks);
  }

  async listRuns(): Promise<RunSummary[]> {
    // A run whose page was reloaded while its worker still held the lock was not marked at setup: mark it now.
    const active = this.active?.summary ?? null;
    await markInterruptedRuns(active?.id ?? null);
    // The live run as it is now (its record on disk lags a little behind).
    return (await listRunRecords()).map((r) => (r.id === active?.id ? { ...active, updatedAt: Date.now() } : r));
  }

  async runHistory(runId: string): Promise<RunHistory> {
    const rec = await readRunRecord(runId);
    if (!rec) throw new Error(`no run "${runId}"`);
    const log = await readRunLog(runId);
    const known = rec.elapsedMs !== undefined ? { step: rec.stepsDone, elapsedMs: rec.elapsedMs } : undefined;
    return historyFromLog(log ? parseLog(await log.text()) : [], rec.steps, known);
  }

  async renameRun(runId: string, name: string): Promise<RunSummary> {
    const clean = name.trim();
    if (!clean) throw new Error('a run needs a name: enter at least one character');
    if (clean.length > 200) throw new Error(`a run's name has at most 200 characters, this one ${clean.length}`);
    if (this.active?.summary.id === runId) {
      this.active.rename(clean);
      return { ...this.active.summary };
    }
    const rec = await readRunRecord(runId);
    if (!rec) throw new Error(`no run "${runId}"`);
    const renamed = { ...rec, name: clean };
    await writeRunRecord(renamed);
    return renamed;
  }

  async deleteRun(runId: string): Promise<void> {
    if (this.active?.summary.id === runId) throw new Error(`run ${runId} is going on: stop it before deleting it`);
    if (!(await readRunRecord(runId))) throw new Error(`no run "${runId}"`);
    await deleteRunFolder(runId);
  }

  private async exportParts(runId: string) {
    const rec = await readRunRecord(runId);
    if (!rec) throw new Error(`no run "${runId}"`);
    const { files, spec, model } = await this.modelParts(rec.modelId);
    const folder = await runFolder(runId, false);
    if (!folder) throw new Error(`run ${runId} has no files`);
    return { args: { gpu: await this.device(), spec, model: files, runFolder: folder, runFiles: opfsFolder(folder, runId) }, model };
  }

  private readonly exports = new Exports({
    engine: () => workerEngine, run: (runId) => this.exportParts(runId), origins: idbOrigins(), appBase: () => this.appBase(),
  });

  exportOrigin(runId: string): Promise<ExportOrigin> {
    return this.exports.origin(runId);
  }

  exportModel(runId: string, target: ExportTarget, original: OriginalFolder | null, onProgress?: (p: ExportProgress) => void): Promise<ExportResult> {
    return this.exports.model(runId, target, original, (p) => onProgress?.(p));
  }

  exportDelta(runId: string, target: ExportTarget, onProgress?: (p: ExportProgress) => void): Promise<ExportResult> {
    return this.exports.delta(runId, target, (p) => onProgress?.(p));
  }

  applyDelta(delta: Blob, original: OriginalFolder, target: ExportTarget, onProgress?: (p: ExportProgress) => void): Promise<ExportResult> {
    return this.exports.apply(delta, original, target, (p) => onProgress?.(p));
  }

  async cancelExport(): Promise<void> {
    this.exports.cancel();
  }

  async exportLog(runId: string): Promise<ExportFile> {
    const log = await readRunLog(runId);
    if (!log) throw new Error(`run ${runId} has no log`);
    return { name: `${runId}.log.jsonl`, data: log };
  }

  // -------------------------------------------------------------------------------------------
  // Generation

  private readonly tries = new TryModels({
    model: (id) => this.store.get(id),
    tokenizer: (m) => this.tokenizer(m),
    run: (id) => readRunRecord(id),
    busy: () => (this.active ? `run ${this.active.summary.name} is training on the GPU: try models when it has ended (or stop it)` : null),
  });

  promptFormat(modelId: string): Promise<PromptFormat> {
    return this.tries.format(modelId);
  }

  tokenizePrompt(modelId: string, prompt: PromptInput): Promise<number[]> {
    return this.tries.tokenize(modelId, prompt);
  }

  generate(request: GenerateRequest, onToken: (id: number, text: string) => void): Promise<Generated> {
    return this.tries.generate(request, (id, text) => onToken(id, text));
  }

  async stopGenerate(): Promise<void> {
    this.tries.stop();
  }
}
