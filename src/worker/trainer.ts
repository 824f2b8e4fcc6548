// Contract: the worker's implementation of `Trainer` (protocol.ts): GPU, stored models, datasets and run records here;
// planning, training and export through the engine binding (engine-binding.ts), or "not available yet" without it.

import { createGpu, type GpuContext } from '../engine/gpu/device.ts';
import { boundEngine, type EngineBinding } from './engine-binding.ts';
import { buildDataset } from '../data/build.ts';
import type { SourceFile } from '../data/parse.ts';
import { loadTokenizer, type TextTokenizer } from '../data/tokenizer.ts';
import { datasetsBytes, deleteStoredDataset, listStoredDatasets, saveDataset, storedDataset } from './dataset-store.ts';
import { shortHash, slug } from './ids.ts';
import {
  cancelRunningImport, deleteStoredModel, importModel, listStoredModels, modelFiles, modelsBytes, storedModel, stripCommonFolder,
} from './model-store.ts';
import {
  NOT_AVAILABLE,
  type DatasetInput, type DatasetProgress, type DatasetSettings, type DatasetSummary, type ExportFile, type GpuReport,
  type ImportProgress, type MemoryPlan, type ModelSource, type RunCallbacks, type RunRequest, type RunSummary, type Settings,
  type StorageReport, type StoredModel, type Trainer, type WorkerEnv,
} from './protocol.ts';
import { listRunRecords, markInterruptedRuns, readRunLog } from './run-store.ts';

function notAvailable(what: string): Error {
  return new Error(`${what} ${NOT_AVAILABLE}.`);
}

export class WorkerTrainer implements Trainer {
  private env: WorkerEnv | null = null;
  private gpu: Promise<GpuContext> | null = null;
  private lostMessage: string | null = null;
  private onLost: ((message: string) => void) | null = null;

  async setup(env: WorkerEnv): Promise<void> {
    this.env = { appBase: new URL(env.appBase).href };
    await markInterruptedRuns();
  }

  private appBase(): string {
    if (!this.env) throw new Error('the worker was not set up (connectTrainer calls setup first)');
    return this.env.appBase;
  }

  private engine(what: string): EngineBinding {
    const e = boundEngine();
    if (!e) throw notAvailable(what);
    return e;
  }

  // -------------------------------------------------------------------------------------------
  // GPU

  private device(): Promise<GpuContext> {
    if (!this.gpu) {
      const p = createGpu();
      this.gpu = p;
      p.then(
        (g) => g.lost.then((msg) => {
          this.lostMessage = msg;
          this.gpu = null; // the next call makes a new device
          this.onLost?.(msg);
        }),
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

  async watchDevice(onLost: (message: string) => void): Promise<void> {
    this.onLost = onLost;
    if (this.lostMessage) onLost(this.lostMessage);
  }

  // -------------------------------------------------------------------------------------------
  // Models

  listModels(): Promise<StoredModel[]> {
    return listStoredModels();
  }

  importModel(source: ModelSource, onProgress?: (p: ImportProgress) => void): Promise<StoredModel> {
    return importModel(source, this.appBase(), (p) => onProgress?.(p));
  }

  async cancelImport(): Promise<void> {
    cancelRunningImport();
  }

  async deleteModel(id: string): Promise<void> {
    this.tokenizers.delete(id);
    await deleteStoredModel(id);
  }

  async storageEstimate(): Promise<StorageReport> {
    const est = await navigator.storage.estimate().catch(() => ({ usage: undefined, quota: undefined }));
    const persisted = await (navigator.storage.persisted?.() ?? Promise.resolve(false)).catch(() => false);
    return {
      usedBytes: est.usage ?? null,
      quotaBytes: est.quota ?? null,
      persisted,
      modelsBytes: await modelsBytes(),
      datasetsBytes: await datasetsBytes(),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Datasets

  private tokenizers = new Map<string, Promise<TextTokenizer | null>>();

  private tokenizer(model: StoredModel): Promise<TextTokenizer | null> {
    let t = this.tokenizers.get(model.id);
    if (!t) {
      t = model.hasTokenizer ? modelFiles(model.id).then(loadTokenizer) : Promise.resolve(null);
      t.catch(() => this.tokenizers.delete(model.id));
      this.tokenizers.set(model.id, t);
    }
    return t;
  }

  async loadDataset(input: DatasetInput, settings: DatasetSettings, onProgress?: (p: DatasetProgress) => void): Promise<DatasetSummary> {
    const model = await storedModel(settings.modelId);
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
      extensions, evalFraction, seed: settings.seed, vocabSize: model.facts.vocab,
      onProgress: (p) => onProgress?.({ phase: 'tokenizing', ...p }),
    });
    onProgress?.({ phase: 'saving', documentsDone: built.documents, documentsTotal: built.documents, tokens: built.all.ids.length });
    const summary: DatasetSummary = {
      id, name, role: settings.role, modelId: model.id, format: built.format, files: built.files.length,
      documents: built.documents, tokens: built.all.ids.length, trainTokens: built.train.ids.length,
      evalTokens: built.eval?.ids.length ?? 0, labeledTokens: built.labeledTokens, labelShiftFixed: built.labelShiftFixed,
      notes: built.notes, createdAt: Date.now(),
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

  async plan(_modelId: string, _settings: Settings, _trainDatasetId?: string | null): Promise<MemoryPlan> {
    this.engine('The memory plan');
    throw notAvailable('The memory plan');
  }

  async startRun(_request: RunRequest, _callbacks: RunCallbacks): Promise<RunSummary> {
    this.engine('Training');
    throw notAvailable('Training');
  }

  async pause(): Promise<void> {
    throw notAvailable('Pausing a run');
  }

  async resume(): Promise<void> {
    throw notAvailable('Resuming a run');
  }

  async stop(): Promise<void> {
    throw notAvailable('Stopping a run');
  }

  async resumeRun(_runId: string, _callbacks: RunCallbacks): Promise<RunSummary> {
    throw notAvailable('Resuming a run');
  }

  listRuns(): Promise<RunSummary[]> {
    return listRunRecords();
  }

  async exportModel(_runId: string): Promise<ExportFile[]> {
    throw notAvailable('Exporting a fine-tuned model');
  }

  async exportDelta(_runId: string): Promise<ExportFile[]> {
    throw notAvailable('Exporting the sparse delta');
  }

  async exportLog(runId: string): Promise<ExportFile> {
    const log = await readRunLog(runId);
    if (!log) throw new Error(`run ${runId} has no log`);
    return { name: `${runId}.log.jsonl`, data: log };
  }
}
