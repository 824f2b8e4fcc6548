// Contract: the app's settings → what the engine takes (TrainSettings, loadWeights options), what a run's checkpoint
// stores about them, and the checks that a resumed run continues on the same settings and the same base weights. Pure.

import type { LoadOptions } from '../engine/train/weights.ts';
import type { Sampling, TrainSettings } from '../engine/train/settings.ts';
import type { Settings } from '../presets/schema.ts';

/** 4-bit routed experts (loadWeights' quantizeExperts), or null for bf16 frozen / f32 trained experts. */
export type QuantSetting = { groupSize: number } | null;

/** TrainSettings plus what the checkpoint must remember about the loaded weights. */
export type SavedSettings = TrainSettings & { quantizeExperts: QuantSetting };

/** Settings resolved against the model and the dataset by the worker. */
export interface Resolved {
  steps: number;
  trainFrom: number;
  evalWindows: number | null;
  frozenCacheN: number;
}

export function quantSetting(s: Pick<Settings, 'quantizeExperts' | 'quantGroupSize'>): QuantSetting {
  return s.quantizeExperts ? { groupSize: s.quantGroupSize } : null;
}

/** The app's settings as the Trainer takes them. */
/** How the app's settings draw training samples (WINDOW_SAMPLES off: the seed's random positions). */
export const samplingOf = (s: Pick<Settings, 'windowSampling'>): Sampling => (s.windowSampling ? 'windows' : 'random');

export function trainSettings(s: Settings, r: Resolved): TrainSettings {
  return {
    frac: s.frac, steps: r.steps, microbatch: s.microbatch, accum: s.accum, seq: s.seq, lrPeak: s.lrPeak, wd: s.wd,
    trainFrom: r.trainFrom, reselectEvery: s.reselectEvery, evalEvery: s.evalEvery, nImportance: s.nImportance,
    frozenCacheN: r.frozenCacheN, seed: s.seed, evalWindows: r.evalWindows,
    keepAdamState: s.keepAdamState, trainShared: s.trainShared, perEntryStep: s.perEntryStep, accumulatedReselect: s.accumulatedReselect,
    sampling: samplingOf(s),
  };
}

/**
 * loadWeights' options: layers trainFrom.. keep f32 routed experts (and shared experts when they train), or 4 bits;
 * with streamFrozen the layers below trainFrom are not uploaded (the layer-major frozen pass reads them from storage).
 */
export function loadOptions(numLayers: number, trainFrom: number, quant: QuantSetting, trainShared: boolean, streamFrozen = false): LoadOptions {
  const trained = new Set<number>();
  for (let L = trainFrom; L < numLayers; L++) trained.add(L);
  const o: LoadOptions = { f32ExpertLayers: trained };
  if (trainShared) o.f32SharedLayers = trained;
  if (quant) o.quantizeExperts = { groupSize: quant.groupSize };
  if (streamFrozen && trainFrom > 0) o.streamFrozenBelow = trainFrom;
  return o;
}

/** Everything the binding gives the engine for a run of `s` on a model of `numLayers` layers. */
export interface RunConfig {
  train: TrainSettings;
  quant: QuantSetting;
  load: LoadOptions;
  /** The checkpoint's settings (what resume and export read back with savedSettings). */
  checkpoint: SavedSettings;
}

export function runConfig(s: Settings, r: Resolved, numLayers: number): RunConfig {
  const train = trainSettings(s, r);
  const quant = quantSetting(s);
  return { train, quant, load: loadOptions(numLayers, r.trainFrom, quant, s.trainShared, s.streamFrozen), checkpoint: checkpointSettings(train, quant) };
}

/**
 * loadWeights' options for restoring a checkpointed run (export): the weights it was trained over. Nothing runs the
 * frozen layers in an export, so they stay in storage.
 */
export function savedLoadOptions(saved: SavedSettings, numLayers: number): LoadOptions {
  return loadOptions(numLayers, saved.trainFrom, saved.quantizeExperts, !!saved.trainShared, true);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/** What runTraining stores as the checkpoint's settings (the CLI's `usaf train` stores the same shape). */
export function checkpointSettings(ts: TrainSettings, quant: QuantSetting): SavedSettings {
  return { ...ts, quantizeExperts: quant };
}

/** Settings a resumed run must share with its checkpoint (they shape the optimizer state and the data order). */
export const SAME_ON_RESUME = ['frac', 'microbatch', 'accum', 'seq', 'trainFrom', 'seed'] as const;

/** The settings stored in a checkpoint, checked; checkpoints from before trainShared / perEntryStep / 4-bit experts had none. */
export function savedSettings(raw: Record<string, unknown>): SavedSettings {
  for (const k of [...SAME_ON_RESUME, 'steps', 'lrPeak', 'wd'] as const) {
    const v = raw[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`the run's checkpoint has no valid ${k} setting (${String(v)})`);
  }
  const q = raw.quantizeExperts;
  let quant: QuantSetting = null;
  if (q !== undefined && q !== null) {
    const g = (q as { groupSize?: unknown }).groupSize;
    if (typeof q !== 'object' || typeof g !== 'number' || !Number.isInteger(g) || g <= 0) {
      throw new Error(`the run's checkpoint has no valid quantizeExperts setting (${JSON.stringify(q)})`);
    }
    quant = { groupSize: g };
  }
  return { ...(raw as unknown as TrainSettings), trainShared: raw.trainShared === true, perEntryStep: raw.perEntryStep === true, quantizeExperts: quant };
}

const quantText = (q: QuantSetting): string => (q ? `4-bit experts (QUANTIZE_EXPERTS on, QUANT_GROUP ${q.groupSize})` : 'unquantized experts (QUANTIZE_EXPERTS off)');

/** Throws, in words, when `now` cannot continue the checkpointed run `saved`. */
export function checkResume(saved: SavedSettings, now: TrainSettings, quant: QuantSetting): void {
  for (const k of SAME_ON_RESUME) {
    if (saved[k] !== now[k]) throw new Error(`${k} was ${saved[k]} when the run was checkpointed and is ${now[k]} now; resume with the same settings`);
  }
  // Both shape the checkpointed state: shared experts' selections, per-entry update counts.
  for (const [k, label] of [['trainShared', 'TRAIN_SHARED'], ['perEntryStep', 'PER_ENTRY_STEP']] as const) {
    if (!!saved[k] !== !!now[k]) {
      throw new Error(`${label} was ${saved[k] ? 'on' : 'off'} when the run was checkpointed and is ${now[k] ? 'on' : 'off'} now; resume with the same settings`);
    }
  }
  // Random-position samples are drawn for STEPS · MICROBATCH · ACCUM: another STEPS would be another sample set.
  if ((now.sampling ?? 'windows') === 'random' && saved.steps !== now.steps) {
    throw new Error(`steps was ${saved.steps} when the run was checkpointed and is ${now.steps} now; the random-position training sequences depend on it: resume with the same settings`);
  }
  // The trained values only continue on the base they were trained over (4-bit bases differ from bf16 and by group size).
  if ((saved.quantizeExperts?.groupSize ?? null) !== (quant?.groupSize ?? null)) {
    throw new Error(`the run was checkpointed with ${quantText(saved.quantizeExperts)} and would resume with ${quantText(quant)}; resume with the same settings`);
  }
}
