// Contract: the page's state (Svelte 5 runes) and every action that talks to the worker. Screens read this object and
// call its methods; nothing here blocks the page — all work happens in the worker behind the Trainer proxy.

import {
  applyPresetHash, BUILTIN_PRESETS, checkAgainstModel, defaultSettings, encodePresetHash, plainName, SETTING_BY_KEY, validateSettings,
  type Preset, type SettingKey, type Settings,
} from '../presets/index.ts';
import { callbacks, connectTrainer, progress, type TrainerProxy } from '../worker/client.ts';
import type {
  DatasetInput, DatasetProgress, DatasetSettings, DatasetSummary, EvalEvent, ExportOrigin, ExportProgress, ExportResult,
  ExportTarget, GpuReport, ImportProgress, MemoryPlan, ModelSource, OriginalFolder, PhaseEvent, PresetPlan, ReselectEvent, RunError, RunEstimate, RunHistory, RunSummary,
  StepEvent, StorageReport, StoredModel,
} from '../worker/protocol.ts';
import { ORIGINAL_UNAVAILABLE } from '../worker/protocol.ts';
import type { ArchInfo } from '../engine/model/index.ts';

export type Screen = 'models' | 'datasets' | 'preset' | 'run' | 'export' | 'try';
export const SCREENS: { id: Screen; title: string }[] = [
  { id: 'models', title: 'Models' },
  { id: 'datasets', title: 'Datasets' },
  { id: 'preset', title: 'Preset' },
  { id: 'run', title: 'Run' },
  { id: 'export', title: 'Export' },
  { id: 'try', title: 'Try' },
];

const SETTINGS_KEY = 'usaf.settings';
const EVAL_WINDOWS_KEY = 'usaf.evalWindows';
/** Pause between the files of one export handed to the browser as downloads. */
const DOWNLOAD_GAP_MS = 400;
const DEMO_REMOVED_KEY = 'usaf.demoRemoved';
const GPU_MEMORY_KEY = 'usaf.gpuMemoryGiB';
/** The run this page started or resumed last: reopened on the Run screen when a reload interrupted it. */
const LIVE_RUN_KEY = 'usaf.liveRun';
/** How long a reload waits for the previous page's worker to let go of its run (it is then marked interrupted). */
const REOPEN_TRIES = 30;

export interface LiveRun {
  summary: RunSummary;
  steps: StepEvent[];
  evals: EvalEvent[];
  reselects: ReselectEvent[];
  log: string[];
  /** Step of the last checkpoint stored (0 = none yet): where a resume would continue from. */
  checkpointStep: number;
  /** Paused: the loop really waits between steps (the evaluation and checkpoint before it are done). */
  paused: boolean;
  /** Pause was asked and the run has not paused yet. */
  pausing: boolean;
  /** What the run is doing besides steps (set-up, evaluation, checkpoint), with its progress; null between steps. */
  phase: PhaseEvent | null;
  finished: boolean;
  error: RunError | null;
}

/** A second run overlaid on the charts. */
export interface ComparedRun extends RunHistory {
  summary: RunSummary;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class AppState {
  trainer: TrainerProxy | null = null;

  screen = $state<Screen>('models');
  starting = $state(true);
  fatal = $state<string | null>(null);
  gpu = $state<GpuReport | null>(null);
  deviceLost = $state<string | null>(null);

  models = $state<StoredModel[]>([]);
  families = $state<ArchInfo[]>([]);
  modelId = $state<string | null>(null);
  importing = $state<ImportProgress | null>(null);
  importError = $state<string | null>(null);
  storage = $state<StorageReport | null>(null);

  datasets = $state<DatasetSummary[]>([]);
  trainDatasetId = $state<string | null>(null);
  heldoutDatasetId = $state<string | null>(null);
  datasetProgress = $state<DatasetProgress | null>(null);
  datasetError = $state<string | null>(null);
  datasetNotice = $state<string | null>(null);

  settings = $state<Settings>(defaultSettings());
  /** Bumped whenever the settings are replaced as a whole (preset, link, file), so editor fields redraw. */
  settingsRevision = $state(0);
  presetError = $state<string | null>(null);
  presetNotice = $state<string | null>(null);
  /** The settings in use came from a share link (and were not edited since). */
  presetFromLink = $state(false);
  /** Text typed into a setting's field that is not a valid value (key → why); the settings keep the last valid value. */
  fieldErrors = $state<Partial<Record<SettingKey, { text: string; why: string }>>>({});
  plan = $state<MemoryPlan | null>(null);
  planError = $state<string | null>(null);
  /** GPU memory to plan for, GiB (WebGPU does not report it); null = unknown. */
  gpuMemoryGiB = $state<number | null>(readPositive(GPU_MEMORY_KEY));
  presetPlans = $state<PresetPlan[]>([]);

  runs = $state<RunSummary[]>([]);
  /** The run on the Run screen: the one going on, or a past one opened from the history (finished). */
  live = $state<LiveRun | null>(null);
  compare = $state<ComparedRun | null>(null);
  /** Windows of SEQ tokens evaluated per set at each evaluation (null = all); a run option, not part of the preset. */
  evalWindows = $state<number | null>(readEvalWindows());
  runError = $state<string | null>(null);
  exportError = $state<string | null>(null);
  /** The export going on: 'model', 'delta' or 'apply'. */
  exporting = $state<string | null>(null);
  exportProgress = $state<ExportProgress | null>(null);
  exportResult = $state<ExportResult | null>(null);
  /** The last export could not read the original weights: pick the original folder, or export the delta alone. */
  exportNeedsOriginal = $state(false);
  exportOrigin = $state<ExportOrigin | null>(null);

  model = $derived(this.models.find((m) => m.id === this.modelId) ?? null);
  /** Problems of the settings for the chosen model (key → message). */
  modelIssues = $derived(this.model
    ? checkAgainstModel(this.settings, { numLayers: this.model.facts.layers, maxPos: this.model.facts.maxPos })
    : {} as Partial<Record<SettingKey, string>>);
  /** Why Start cannot start a run with the settings on screen (null: it can): the one check of the settings table. */
  startBlocked = $derived.by(() => {
    const typed = Object.entries(this.fieldErrors).map(([k, t]) => `${plainName(SETTING_BY_KEY.get(k)!)}: ${t.why}`);
    if (typed.length) return `A setting has invalid text (Preset screen): ${typed.join('; ')}.`;
    const issues = Object.entries(this.modelIssues).map(([k, why]) => `${plainName(SETTING_BY_KEY.get(k)!)} ${String(this.settings[k as SettingKey] ?? 'auto')}: ${why}`);
    return issues.length ? `The settings do not fit ${this.model!.name}: ${issues.join('; ')}. Change them on the Preset screen.` : null;
  });

  // -------------------------------------------------------------------------------------------
  // Start-up

  async start(): Promise<void> {
    this.loadSettings();
    try {
      const { trainer, worker } = await connectTrainer();
      this.trainer = trainer;
      worker.addEventListener('error', (e) => {
        this.fatal = `The engine worker failed: ${e.message || 'unknown error'}. Reload the page.`;
      });
      await trainer.watchDevice(progress((msg: string) => {
        this.deviceLost = msg;
      }));
      void trainer.gpuInfo().then((g) => {
        this.gpu = g;
        if (g.lost) this.deviceLost = g.lost;
      });
      void trainer.families().then((f) => (this.families = f));
      await this.refreshModels();
      if (!this.models.some((m) => m.builtin) && localStorage.getItem(DEMO_REMOVED_KEY) !== '1') {
        await this.importModel({ kind: 'demo' });
      }
      await this.refreshDatasets();
      await this.ensureDemoDatasets();
      this.runs = await trainer.listRuns();
      void this.reopenInterrupted();
      void this.refreshStorage();
      void navigator.storage?.persist?.().catch(() => false);
    } catch (e) {
      this.fatal = message(e);
    } finally {
      this.starting = false;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Models

  async refreshModels(): Promise<void> {
    this.models = await this.trainer!.listModels();
    if (!this.models.some((m) => m.id === this.modelId)) this.modelId = this.models[0]?.id ?? null;
  }

  async refreshStorage(): Promise<void> {
    this.storage = await this.trainer!.storageEstimate();
  }

  async importModel(source: ModelSource): Promise<void> {
    this.importError = null;
    this.importing = { phase: 'checking', file: '', bytesDone: 0, bytesTotal: 0, bytesRead: 0, tensorsDone: 0, tensorsTotal: 0, etaSeconds: null, bytesResumed: 0 };
    // Progress messages from the worker can arrive after the import has ended (cancelled or done): ignore those.
    let ended = false;
    try {
      // Storage the browser may not evict; only the page can ask (the worker checks the space itself).
      await navigator.storage?.persist?.().catch(() => false);
      const m = await this.trainer!.importModel(source, progress((p: ImportProgress) => {
        if (!ended) this.importing = p;
      }));
      if (source.kind === 'demo') localStorage.removeItem(DEMO_REMOVED_KEY);
      await this.refreshModels();
      this.modelId = m.id;
    } catch (e) {
      this.importError = (e as Error).name === 'AbortError' || /cancel/i.test(message(e))
        ? 'Import cancelled. What was copied is kept: import the same source again to resume.'
        : /^Not enough storage/.test(message(e)) ? `Import refused. ${message(e)}` : `Import failed: ${message(e)}`;
    } finally {
      ended = true;
      this.importing = null;
      void this.refreshStorage();
    }
  }

  async cancelImport(): Promise<void> {
    await this.trainer!.cancelImport();
  }

  async deleteModel(id: string): Promise<void> {
    const m = this.models.find((x) => x.id === id);
    await this.trainer!.deleteModel(id);
    if (m?.builtin) localStorage.setItem(DEMO_REMOVED_KEY, '1');
    await this.refreshModels();
    void this.refreshStorage();
  }

  // -------------------------------------------------------------------------------------------
  // Datasets

  async refreshDatasets(): Promise<void> {
    this.datasets = await this.trainer!.listDatasets();
    const forModel = this.datasets.filter((d) => d.modelId === this.modelId);
    if (!forModel.some((d) => d.id === this.trainDatasetId)) this.trainDatasetId = forModel.find((d) => d.role === 'train')?.id ?? null;
    if (!forModel.some((d) => d.id === this.heldoutDatasetId)) this.heldoutDatasetId = forModel.find((d) => d.role === 'heldout')?.id ?? null;
  }

  /** The demo data, tokenized with the demo model, on first launch (later launches find it stored). */
  async ensureDemoDatasets(): Promise<void> {
    const demo = this.models.find((m) => m.builtin);
    if (!demo) return;
    for (const which of ['finetune', 'heldout'] as const) {
      await this.loadDataset({ kind: 'demo', which }, {
        modelId: demo.id, role: which === 'finetune' ? 'train' : 'heldout', extensions: [], evalFraction: 0, seed: 0,
        name: which === 'finetune' ? 'demo finetune.jsonl' : 'demo heldout.jsonl',
      });
    }
  }

  async loadDataset(input: DatasetInput, settings: DatasetSettings): Promise<DatasetSummary | null> {
    this.datasetError = null;
    this.datasetNotice = null;
    this.datasetProgress = { phase: 'reading', documentsDone: 0, documentsTotal: 0, tokens: 0 };
    try {
      const d = await this.trainer!.loadDataset(input, settings, progress((p: DatasetProgress) => {
        this.datasetProgress = p;
      }));
      await this.refreshDatasets();
      if (d.role === 'train') this.trainDatasetId = d.id;
      else this.heldoutDatasetId = d.id;
      if (d.notes.length) this.datasetNotice = d.notes.join(' ');
      return d;
    } catch (e) {
      this.datasetError = message(e);
      return null;
    } finally {
      this.datasetProgress = null;
      void this.refreshStorage();
    }
  }

  async deleteDataset(id: string): Promise<void> {
    await this.trainer!.deleteDataset(id);
    await this.refreshDatasets();
    void this.refreshStorage();
  }

  // -------------------------------------------------------------------------------------------
  // Settings and presets

  /** Settings at launch: a preset link in the URL wins; otherwise the last ones used (checked like any input). */
  loadSettings(): void {
    const saved = localStorage.getItem(SETTINGS_KEY);
    if (saved) {
      try {
        const v = validateSettings(JSON.parse(saved));
        if (v.ok) this.settings = v.settings;
      } catch {
        /* unreadable: defaults */
      }
    }
    this.applyHash(location.hash);
  }

  /** Applies a preset link; a refused link leaves the settings exactly as they were and says why. */
  applyHash(hash: string): void {
    const r = applyPresetHash(this.settings, hash);
    if (r.error) {
      this.presetError = r.error;
      this.presetNotice = null;
      this.screen = 'preset';
    } else if (r.applied) {
      // The app's own link to the settings already in use (it keeps the URL up to date): nothing to announce.
      if (encodePresetHash(r.settings) === encodePresetHash(this.settings)) return;
      this.settings = r.settings;
      this.settingsRevision++;
      this.presetError = null;
      this.presetNotice = 'Settings loaded from the link.';
      this.presetFromLink = true;
      this.fieldErrors = {};
      this.screen = 'preset';
      this.persistSettings(false);
    }
  }

  setSetting<K extends SettingKey>(key: K, value: Settings[K]): void {
    this.settings = { ...this.settings, [key]: value };
    this.presetNotice = null;
    this.presetFromLink = false;
    this.persistSettings(true);
  }

  usePreset(p: Preset): void {
    this.settings = { ...p.settings };
    this.settingsRevision++;
    this.presetError = null;
    if (p.evalWindows !== undefined) this.setEvalWindows(p.evalWindows);
    this.presetNotice = `Preset "${p.name}" loaded${p.evalWindows ? ` (evaluation windows per set: ${p.evalWindows})` : ''}.`;
    this.presetFromLink = false;
    this.fieldErrors = {};
    this.persistSettings(true);
  }

  /** Uploaded preset JSON: strict check, nothing changes if it fails. */
  importPresetJson(text: string): void {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      this.presetError = `Preset file refused: not JSON (${message(e)})`;
      return;
    }
    const obj = json as { settings?: unknown } | null;
    const v = validateSettings(obj && typeof obj === 'object' && !Array.isArray(obj) && 'settings' in obj ? obj.settings : json);
    if (!v.ok) {
      this.presetError = `Preset file refused: ${v.errors.join('; ')}`;
      return;
    }
    this.settings = v.settings;
    this.settingsRevision++;
    this.presetError = null;
    this.presetNotice = 'Settings loaded from the file.';
    this.presetFromLink = false;
    this.fieldErrors = {};
    this.persistSettings(true);
  }

  shareUrl(): string {
    return `${location.origin}${location.pathname}${location.search}${encodePresetHash(this.settings)}`;
  }

  private persistSettings(updateUrl: boolean): void {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(this.settings));
    if (updateUrl) history.replaceState(null, '', encodePresetHash(this.settings));
  }

  async refreshPlan(): Promise<void> {
    if (!this.trainer || !this.modelId) return;
    const budget = this.gpuMemoryGiB === null ? null : this.gpuMemoryGiB * 2 ** 30;
    try {
      this.plan = await this.trainer.plan(this.modelId, $state.snapshot(this.settings), this.trainDatasetId, budget);
      this.planError = null;
    } catch (e) {
      this.plan = null;
      this.planError = message(e);
    }
    try {
      this.presetPlans = await this.trainer.presetPlans(this.trainDatasetId, budget);
    } catch (e) {
      this.presetPlans = [];
      this.planError ??= `Planning the built-in presets failed: ${message(e)}`;
    }
  }

  /** A rough run time for the settings on screen, measured on this adapter (null: no model or training data chosen). */
  async estimateRun(): Promise<RunEstimate | null> {
    if (!this.trainer || !this.modelId || !this.trainDatasetId) return null;
    return this.trainer.estimateRun({
      modelId: this.modelId, trainDatasetId: this.trainDatasetId, heldoutDatasetId: this.heldoutDatasetId,
      settings: $state.snapshot(this.settings), evalWindows: this.evalWindows,
    });
  }

  setGpuMemoryGiB(n: number | null): void {
    this.gpuMemoryGiB = n;
    if (n === null) localStorage.removeItem(GPU_MEMORY_KEY);
    else localStorage.setItem(GPU_MEMORY_KEY, String(n));
  }

  get builtinPresets(): readonly Preset[] {
    return BUILTIN_PRESETS;
  }

  // -------------------------------------------------------------------------------------------
  // Runs

  private runCallbacks() {
    return callbacks({
      onStep: (e) => {
        if (!this.live) return;
        this.live.steps.push(e);
        if (this.live.phase?.phase !== 'paused') this.live.phase = null;
      },
      onEval: (e) => this.live?.evals.push(e),
      onPhase: (e) => {
        if (!this.live) return;
        this.live.phase = e;
        if (e.phase === 'paused') {
          this.live.paused = true;
          this.live.pausing = false;
        }
      },
      onReselect: (e) => this.live?.reselects.push(e),
      onCheckpoint: (step) => {
        if (this.live) this.live.checkpointStep = step;
        void this.refreshRuns();
      },
      onLog: (line) => {
        if (!this.live) return;
        this.live.log.push(line);
        if (this.live.log.length > 500) this.live.log.splice(0, this.live.log.length - 500);
      },
      onDone: (s) => {
        if (this.live) {
          this.live.summary = s;
          this.live.finished = true;
          this.live.phase = null;
          this.live.pausing = false;
        }
        void this.refreshRuns();
        void this.refreshStorage();
      },
      onError: (err) => {
        if (this.live) {
          this.live.error = err;
          this.live.finished = true;
          this.live.phase = null;
          this.live.pausing = false;
        }
        if (err.kind === 'device-lost') this.deviceLost ??= err.message;
        void this.refreshRuns();
      },
    });
  }

  /** A fresh live view; it exists before the run starts so that no early event is missed. */
  private newLive(summary: RunSummary): LiveRun {
    return { summary, steps: [], evals: [], reselects: [], log: [], checkpointStep: summary.checkpointStep, paused: false, pausing: false, phase: null, finished: false, error: null };
  }

  async startRun(): Promise<void> {
    this.runError = null;
    if (!this.modelId || !this.trainDatasetId) {
      this.runError = 'Choose a model and a training dataset first.';
      return;
    }
    if (this.startBlocked) {
      this.runError = this.startBlocked;
      return;
    }
    const settings = $state.snapshot(this.settings);
    const now = Date.now();
    const previous = this.live;
    this.live = this.newLive({
      id: '', name: 'starting…', modelId: this.modelId, trainDatasetId: this.trainDatasetId, heldoutDatasetId: this.heldoutDatasetId,
      settings, status: 'running', createdAt: now, updatedAt: now, steps: settings.steps, stepsDone: 0, checkpointStep: 0,
      lastLoss: null, pplBefore: null, pplAfter: null, error: null,
    });
    try {
      const summary = await this.trainer!.startRun({
        modelId: this.modelId, trainDatasetId: this.trainDatasetId, heldoutDatasetId: this.heldoutDatasetId, settings,
        evalWindows: this.evalWindows, gpuMemoryBytes: this.gpuMemoryGiB === null ? null : this.gpuMemoryGiB * 2 ** 30,
      }, this.runCallbacks());
      if (this.live) this.live.summary = summary;
      localStorage.setItem(LIVE_RUN_KEY, summary.id);
    } catch (e) {
      this.live = previous;
      this.runError = message(e);
      return;
    }
    await this.refreshRuns();
  }

  async resumeRun(id: string): Promise<void> {
    this.runError = null;
    const rec = this.runs.find((r) => r.id === id);
    const previous = this.live;
    if (rec) this.live = this.newLive({ ...rec, status: 'running' });
    try {
      const summary = await this.trainer!.resumeRun(id, this.runCallbacks());
      if (this.live) this.live.summary = summary;
      localStorage.setItem(LIVE_RUN_KEY, id);
      this.deviceLost = null; // the run goes on, on a new device
    } catch (e) {
      this.live = previous;
      this.runError = message(e);
      return;
    }
    await this.refreshRuns();
  }

  /** The run history again (a failure to read it leaves the list as it was and says why). */
  async refreshRuns(): Promise<void> {
    try {
      this.runs = await this.trainer!.listRuns();
    } catch (e) {
      this.runError = `Reading the run history failed: ${message(e)}`;
    }
  }

  /** The run going on (not a past one opened from the history). */
  get running(): boolean {
    return !!this.live && !this.live.finished;
  }

  /**
   * After a reload: the run this page had going, once the previous page's worker has let go of it (it is then
   * interrupted), opens on the Run screen with its charts.
   */
  async reopenInterrupted(): Promise<void> {
    const id = localStorage.getItem(LIVE_RUN_KEY);
    for (let i = 0; id && i < REOPEN_TRIES && !this.live; i++) {
      const r = this.runs.find((x) => x.id === id);
      if (!r || r.status === 'done' || r.status === 'stopped' || r.status === 'failed') return;
      if (r.status === 'interrupted') {
        this.screen = 'run';
        await this.openRun(id);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await this.refreshRuns();
    }
  }

  /** A past run on the Run screen with its charts from its log (not while a run is going on). */
  async openRun(id: string): Promise<void> {
    this.runError = null;
    if (this.running) {
      this.runError = 'A run is going on: stop it first, or compare this run with it.';
      return;
    }
    const summary = this.runs.find((r) => r.id === id);
    if (!summary) return;
    try {
      const h = await this.trainer!.runHistory(id);
      if (this.running) return; // a run started meanwhile: it is the one shown
      this.live = { ...this.newLive(summary), ...h, finished: true };
      if (this.compare?.summary.id === id) this.compare = null;
    } catch (e) {
      this.runError = `Opening the run failed: ${message(e)}`;
    }
  }

  /** Overlays another run's charts (null: none). */
  async compareRun(id: string | null): Promise<void> {
    this.runError = null;
    const summary = id ? this.runs.find((r) => r.id === id) : null;
    if (!summary) {
      this.compare = null;
      return;
    }
    try {
      this.compare = { summary, ...(await this.trainer!.runHistory(summary.id)) };
    } catch (e) {
      this.runError = `Reading the run to compare failed: ${message(e)}`;
    }
  }

  async renameRun(id: string, name: string): Promise<boolean> {
    this.runError = null;
    try {
      const r = await this.trainer!.renameRun(id, name);
      if (this.live?.summary.id === id) this.live.summary.name = r.name;
      if (this.compare?.summary.id === id) this.compare.summary.name = r.name;
      await this.refreshRuns();
      return true;
    } catch (e) {
      this.runError = message(e);
      return false;
    }
  }

  async deleteRun(id: string): Promise<void> {
    this.runError = null;
    try {
      await this.trainer!.deleteRun(id);
      if (this.live?.summary.id === id && this.live.finished) this.live = null;
      if (this.compare?.summary.id === id) this.compare = null;
      await this.refreshRuns();
      void this.refreshStorage();
    } catch (e) {
      this.runError = message(e);
    }
  }

  setEvalWindows(n: number | null): void {
    this.evalWindows = n;
    if (n === null) localStorage.removeItem(EVAL_WINDOWS_KEY);
    else localStorage.setItem(EVAL_WINDOWS_KEY, String(n));
  }

  async control(action: 'pause' | 'resume' | 'stop'): Promise<void> {
    try {
      // Paused only once the run says so (onPhase 'paused'): until then it finishes its step, evaluation or checkpoint.
      if (this.live && action === 'pause') this.live.pausing = true;
      await this.trainer![action]();
      if (this.live && action === 'resume') {
        this.live.paused = false;
        this.live.pausing = false;
        this.live.phase = null;
      }
      void this.refreshRuns();
    } catch (e) {
      this.runError = message(e);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Export

  /** Where the chosen run's model came from (the export merges onto the original weights there). */
  async refreshExportOrigin(runId: string | null): Promise<void> {
    this.exportOrigin = null;
    if (!runId) return;
    try {
      this.exportOrigin = await this.trainer!.exportOrigin(runId);
    } catch (e) {
      this.exportError = message(e);
    }
  }

  /** Asks the browser for read access to the imported folder again (a click must lead here: the browser asks the user). */
  async allowOrigin(runId: string): Promise<void> {
    const h = this.exportOrigin?.handle as (FileSystemDirectoryHandle & { requestPermission?(d: { mode: 'read' }): Promise<PermissionState> }) | null;
    if (h?.requestPermission) await h.requestPermission({ mode: 'read' }).catch(() => 'denied');
    await this.refreshExportOrigin(runId);
  }

  /**
   * Exports a run's fine-tuned model or its delta alone, or applies a delta file: into a folder the user picks where the
   * browser can (File System Access), else through the browser's storage as one download per file.
   */
  async exportFiles(job: { what: 'model'; runId: string; original?: OriginalFolder } | { what: 'delta'; runId: string }
    | { what: 'apply'; delta: File; original: OriginalFolder }): Promise<void> {
    this.exportError = null;
    this.exportNeedsOriginal = false;
    this.exportResult = null;
    let target: ExportTarget;
    try {
      const picked = await pickExportFolder();
      if (!picked) return; // the user closed the picker
      target = picked;
    } catch (e) {
      this.exportError = `Choosing the folder failed: ${message(e)}`;
      return;
    }
    this.exporting = job.what;
    this.exportProgress = null;
    let ended = false;
    const onProgress = progress((p: ExportProgress) => {
      if (!ended) this.exportProgress = p;
    });
    try {
      const t = this.trainer!;
      const r = job.what === 'model' ? await t.exportModel(job.runId, target, job.original ?? null, onProgress)
        : job.what === 'delta' ? await t.exportDelta(job.runId, target, onProgress)
          : await t.applyDelta(job.delta, job.original, target, onProgress);
      this.exportResult = r;
      if (target.kind === 'downloads') await saveFiles(r.files.map((f) => ({ name: f.name, data: f.data! })));
      if (job.what === 'model' && job.original) void this.refreshExportOrigin(job.runId);
    } catch (e) {
      const err = e as Error;
      if (err.name === 'AbortError') {
        this.exportError = 'Export cancelled. The files complete so far are kept: export again into the same folder to continue from there.';
      } else {
        this.exportNeedsOriginal = err.name === ORIGINAL_UNAVAILABLE;
        this.exportError = message(e);
      }
    } finally {
      ended = true;
      this.exporting = null;
      this.exportProgress = null;
    }
  }

  async cancelExport(): Promise<void> {
    await this.trainer!.cancelExport();
  }

  async downloadLog(runId: string): Promise<void> {
    this.exportError = null;
    try {
      const f = await this.trainer!.exportLog(runId);
      saveBlob(f.data, f.name);
    } catch (e) {
      this.exportError = message(e);
    }
  }

  downloadPreset(): void {
    const body = JSON.stringify({ format: 'usaf-preset', version: 1, settings: $state.snapshot(this.settings) }, null, 2);
    saveBlob(new Blob([body], { type: 'application/json' }), 'usaf-preset.json');
  }
}

/** The stored evaluation-window cap (a whole number ≥ 1), or null (all windows). */
function readEvalWindows(): number | null {
  const n = Number(globalThis.localStorage?.getItem(EVAL_WINDOWS_KEY) ?? '');
  return Number.isSafeInteger(n) && n >= 1 ? n : null;
}

/** A stored positive number, or null. */
function readPositive(key: string): number | null {
  const text = globalThis.localStorage?.getItem(key) ?? '';
  const n = Number(text);
  return text !== '' && Number.isFinite(n) && n > 0 ? n : null;
}

type PickerWindow = { showDirectoryPicker?: (o?: object) => Promise<FileSystemDirectoryHandle> };
/** Test aid: a folder handle the e2e tests hand to exports instead of the picker (which a headless browser cannot show). */
type TestHooks = { usafTestExportFolder?: () => Promise<FileSystemDirectoryHandle> };

/** A folder to write into (the picker, read-write), 'downloads' where the browser has no picker, null when closed. */
async function pickExportFolder(): Promise<ExportTarget | null> {
  const hook = (globalThis as TestHooks).usafTestExportFolder;
  if (hook) return { kind: 'folder', dir: await hook() };
  const picker = (globalThis as PickerWindow).showDirectoryPicker;
  if (!picker) return { kind: 'downloads' };
  try {
    return { kind: 'folder', dir: await picker({ id: 'usaf-export', mode: 'readwrite' }) };
  } catch (e) {
    if ((e as DOMException).name === 'AbortError') return null;
    throw e;
  }
}

/** One download at a time: browsers drop some of many downloads started in the same moment. */
async function saveFiles(files: { name: string; data: Blob }[]): Promise<void> {
  for (const [i, f] of files.entries()) {
    if (i) await new Promise((r) => setTimeout(r, DOWNLOAD_GAP_MS));
    saveBlob(f.data, f.name.replaceAll('/', '_'));
  }
}

/** Hands a Blob to the browser as a download. */
export function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export const app = new AppState();
