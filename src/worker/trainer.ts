// Contract: the worker's implementation of `Trainer` (protocol.ts): GPU, stored models, datasets and run records here;
// planning, training and export through the engine binding (engine-binding.ts), or "not available yet" without it.

import { createGpu, type GpuContext } from '../engine/gpu/device.ts';
import { boundEngine, type EngineBinding } from './engine-binding.ts';
import {
  cancelRunningImport, deleteStoredModel, importModel, listStoredModels, modelsBytes,
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

  deleteModel(id: string): Promise<void> {
    return deleteStoredModel(id);
  }

  async storageEstimate(): Promise<StorageReport> {
    const est = await navigator.storage.estimate().catch(() => ({ usage: undefined, quota: undefined }));
    const persisted = await (navigator.storage.persisted?.() ?? Promise.resolve(false)).catch(() => false);
    return {
      usedBytes: est.usage ?? null,
      quotaBytes: est.quota ?? null,
      persisted,
      modelsBytes: await modelsBytes(),
      datasetsBytes: 0,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Datasets

  async loadDataset(_input: DatasetInput, _settings: DatasetSettings, _onProgress?: (p: DatasetProgress) => void): Promise<DatasetSummary> {
    throw notAvailable('Loading a dataset');
  }

  async listDatasets(): Promise<DatasetSummary[]> {
    return [];
  }

  async deleteDataset(_id: string): Promise<void> {}

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
