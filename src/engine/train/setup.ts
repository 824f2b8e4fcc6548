// One run setup for `usaf train` and the app's worker: the settings (settings-table.ts) checked against the model, the
// data turned into sample sets, the TrainSettings and loadWeights options, the memory fit, what a checkpoint records
// and the rule a resume must pass. Neither the CLI nor the worker decides any of it on its own.
//
// Resume rule: a checkpoint records every setting that changes the math (RESUME_SETTINGS, the 4-bit base, how the
// samples are drawn) and a fingerprint of the training, in-domain eval and held-out data (tokens + CRC-32 of the ids,
// labels and record starts). A resume with any difference is refused, each difference listed. Free to change: EVAL_EVERY
// and CHECKPOINT_EVERY (cadence), FROZEN_CACHE_N and STREAM_FROZEN (where frozen outputs come from, same values),
// GPU_GIB and EXPERT_CHUNK (same results), the output folder. Checkpoints written before the data fingerprint resume
// with a warning that their data could not be compared; missing improvement flags read as off, missing sampling as
// 'windows' (how those runs ran).

import { IGNORE, type TokenStream } from './token-stream.ts';
import type { ModelSpec } from '../model/spec.ts';
import { assertFits, fitSettings, hostedLayers, type PlanSettings } from '../plan/memory.ts';
import { crc32, hex32 } from './delta.ts';
import { recordSamples, trainSampleCount, trainSamples, windowSamples, type SampleRule } from './samples.ts';
import {
  checkAgainstModel, checkValue, envName, flagName, resolveSteps, resolveTrainFrom, RUN_SETTINGS, SETTING_BY_KEY, SETTINGS,
  type AnySettingSpec, type RunSettings, type Settings,
} from './settings-table.ts';
import type { SampleSet } from './types.ts';
import type { TrainSettings } from './settings.ts';
import type { LoadOptions } from './weights.ts';

/** 4-bit routed experts (loadWeights' quantizeExperts), or null for bf16 frozen / f32 trained experts. */
export type QuantSetting = { groupSize: number } | null;

export class SettingsError extends Error {
  override name = 'SettingsError';
}

// ---------------------------------------------------------------------------------------------
// Checks

/**
 * Settings and run settings from named raw values (CLI flags, env vars): each checked against the table; `name(spec)`
 * is how a refusal names it. A value `get` leaves undefined takes the default. Throws a SettingsError listing every problem.
 */
export function readSettings(get: (spec: AnySettingSpec) => unknown, name: (spec: AnySettingSpec) => string = (s) => s.label): { settings: Settings; run: RunSettings } {
  const errors: string[] = [];
  const read = (specs: readonly AnySettingSpec[]): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const spec of specs) {
      const raw = get(spec);
      const v = raw === undefined ? spec.default : raw;
      const why = checkValue(spec, v);
      if (why) errors.push(`${name(spec)}: ${why}`);
      out[spec.key] = v;
    }
    return out;
  };
  const settings = read(SETTINGS) as unknown as Settings;
  const run = read(RUN_SETTINGS) as unknown as RunSettings;
  if (errors.length) throw new SettingsError(errors.join('\n'));
  return { settings, run };
}

/** How the CLI names a setting in a refusal: `--seq (SEQ)`. */
export const cliName = (spec: AnySettingSpec): string => `--${flagName(spec)} (${envName(spec)})`;

/** Problems of valid settings for this model (SEQ within its positions, TRAIN_FROM within its layers), named. */
export function modelProblems(settings: Settings, spec: Pick<ModelSpec, 'numLayers' | 'maxPos'>, name: (spec: AnySettingSpec) => string = (s) => s.label): string[] {
  return Object.entries(checkAgainstModel(settings, spec)).map(([k, why]) => {
    const s = SETTING_BY_KEY.get(k)!;
    return `${name(s)}: ${String(settings[k as keyof Settings])} is not allowed: ${why}`;
  });
}

/** The padding id: the tokenizer's EOS, else config.json's eos_token_id (the first of a list), else 0. Padding is never scored. */
export function padIdOf(tokenizerEos: number | null, config: Record<string, unknown>): number {
  if (tokenizerEos !== null) return tokenizerEos;
  const eos = config.eos_token_id;
  return typeof eos === 'number' ? eos : Array.isArray(eos) && typeof eos[0] === 'number' ? eos[0] : 0;
}

/**
 * TRAIN_ON_PROMPT: the training stream with every ignored label (IGNORE: the prompt of instruction data) scoring its own
 * token; the same stream when no label is ignored. Evaluation keeps the given labels.
 */
export function scoreAllTokens(stream: TokenStream): TokenStream {
  const { labels, ids } = stream;
  if (!labels || !labels.includes(IGNORE)) return stream;
  return { ...stream, labels: labels.map((l, i) => (l === IGNORE ? ids[i]! : l)) };
}

/** How a run's training samples are drawn: pre-tokenized records one by one, text at random positions or as windows. */
export function sampleRuleOf(settings: Pick<Settings, 'windowSampling'>, pretokenized: boolean): SampleRule {
  return pretokenized ? 'records' : settings.windowSampling ? 'windows' : 'random';
}

export const SAMPLE_RULE_TEXT: Record<SampleRule, string> = {
  random: 'random positions: STEPS·MICROBATCH·ACCUM spans of SEQ tokens at random positions of the text stream (the seed\'s)',
  windows: 'windows: the consecutive SEQ-token windows of the text stream, shuffled each epoch',
  records: 'records: each pre-tokenized record its own sample (cut into SEQ windows when longer, padded when shorter), shuffled each epoch',
};

// ---------------------------------------------------------------------------------------------
// Data fingerprints

export interface DataFingerprint {
  tokens: number;
  documents: number;
  /** CRC-32 of the ids, of the labels (00000000 without) and of the record starts, hex. */
  hash: string;
}

const u8 = (a: Int32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export function dataFingerprint(stream: TokenStream): DataFingerprint {
  return {
    tokens: stream.ids.length,
    documents: stream.docStarts.length,
    hash: [crc32(u8(stream.ids)), stream.labels ? crc32(u8(stream.labels)) : 0, crc32(u8(stream.docStarts))].map(hex32).join(''),
  };
}

/** Where a stream holds a token id (or label) outside 0..vocab−1, in words; null when none does. */
export function vocabProblem(what: string, stream: TokenStream, vocab: number): string | null {
  for (const [name, a] of [['token id', stream.ids], ['label', stream.labels]] as const) {
    if (!a) continue;
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      if ((x < 0 && !(name === 'label' && x === IGNORE)) || x >= vocab) return `${what}: ${name} ${x} at token ${i} is outside the model's vocabulary (0–${vocab - 1}, config.json vocab_size ${vocab})`;
    }
  }
  return null;
}

export interface RunData {
  train: TokenStream;
  /** The in-domain eval split; null = evaluate on the training stream. */
  eval: TokenStream | null;
  heldout: TokenStream | null;
  /** Pre-tokenized records (JSONL input_ids/labels) rather than text. */
  pretokenized: boolean;
}

export interface DataFingerprints {
  train: DataFingerprint;
  eval: DataFingerprint | null;
  heldout: DataFingerprint | null;
}

// ---------------------------------------------------------------------------------------------
// Memory

/** Frozen-cache samples: FROZEN_CACHE_N (auto = every training sample), within one GPU buffer. */
export function frozenCacheSamples(settings: Pick<Settings, 'frozenCacheN' | 'seq'>, samples: number, spec: Pick<ModelSpec, 'hidden'>, maxBufferSize: number | null): number {
  const wanted = Math.min(settings.frozenCacheN ?? samples, samples);
  const perSample = settings.seq * spec.hidden * 4;
  return maxBufferSize ? Math.min(wanted, Math.floor(maxBufferSize / perSample)) : wanted;
}

/** The memory planner's settings for a run of `settings` with `samples` training samples (null = unknown: none cached). */
export function memoryPlanSettings(spec: ModelSpec, settings: Settings, samples: number | null, steps: number, maxBufferSize: number | null): PlanSettings {
  const trainFrom = resolveTrainFrom(settings, spec.numLayers);
  const n = samples ?? 0;
  // streamed frozen layers: every training sample is cached, in host memory
  const frozenCacheN = trainFrom === 0 ? 0 : settings.streamFrozen ? n : frozenCacheSamples(settings, n, spec, maxBufferSize);
  return {
    trainFrom, microbatch: settings.microbatch, seq: settings.seq, frac: settings.frac, frozenCacheN,
    quantizeExperts: quantSetting(settings), trainShared: settings.trainShared, perEntryStep: settings.perEntryStep,
    streamFrozen: settings.streamFrozen && trainFrom > 0,
    // 4-bit runs size their overlays for the run's reselections
    steps, reselectEvery: settings.reselectEvery,
  };
}

/** Training samples a run of `settings` draws from `trainTokens` tokens (records: at least this many), for the plan. */
export function plannedSamples(settings: Settings, trainTokens: number, pretokenized = false): number {
  return trainSampleCount({ ...settings, sampling: sampleRuleOf(settings, pretokenized), steps: resolveSteps(settings, trainTokens) }, trainTokens);
}

// ---------------------------------------------------------------------------------------------
// Weights

export function quantSetting(s: Pick<Settings, 'quantizeExperts' | 'quantGroupSize'>): QuantSetting {
  return s.quantizeExperts ? { groupSize: s.quantGroupSize } : null;
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

// ---------------------------------------------------------------------------------------------
// The run

/** What a checkpoint records about its run (runTraining's `settings`), read back by savedSettings. */
export type SavedSettings = TrainSettings & {
  quantizeExperts: QuantSetting;
  streamFrozen?: boolean;
  samples: SampleRule;
  /** null: a checkpoint from before data fingerprints. */
  data: DataFingerprints | null;
};

export interface RunSetup {
  steps: number;
  trainFrom: number;
  rule: SampleRule;
  /** Frozen layers streamed from storage (STREAM_FROZEN with layers below TRAIN_FROM). */
  streamed: boolean;
  trainSet: SampleSet;
  inDomain: SampleSet;
  heldout: SampleSet | null;
  train: TrainSettings;
  quant: QuantSetting;
  load: LoadOptions;
  /** What the checkpoint records. */
  checkpoint: SavedSettings;
  /** The memory plan's settings (the GPU_GIB check). */
  plan: PlanSettings;
}

export interface SetupArgs {
  settings: Settings;
  run: RunSettings;
  spec: ModelSpec;
  data: RunData;
  padId: number;
  /** The adapter's maxBufferSize (caps the frozen cache), null = unknown. */
  maxBufferSize: number | null;
}

/** The run: every setting checked against the model, the data turned into sample sets, the engine's settings. */
export function setupRun(a: SetupArgs): RunSetup {
  const { settings, run, spec, data } = a;
  const problems = modelProblems(settings, spec);
  for (const [what, st] of [['training data', data.train], ['in-domain eval split', data.eval], ['held-out data', data.heldout]] as const) {
    const p = st && vocabProblem(what, st, spec.vocab);
    if (p) problems.push(p);
  }
  if (problems.length) throw new SettingsError(problems.join('\n'));
  const steps = resolveSteps(settings, data.train.ids.length);
  const trainFrom = resolveTrainFrom(settings, spec.numLayers);
  const rule = sampleRuleOf(settings, data.pretokenized);
  const trained = settings.trainOnPrompt ? scoreAllTokens(data.train) : data.train;
  const trainSet = rule === 'records' ? recordSamples(trained, settings.seq, a.padId)
    : trainSamples(trained, { sampling: rule, seq: settings.seq, steps, microbatch: settings.microbatch, accum: settings.accum, seed: settings.seed }, a.padId);
  // the windows as training samples: the in-domain eval (no split) reuses their frozen cache when it scores the same tokens
  const inDomain = data.eval ? windowSamples(data.eval, settings.seq, a.padId)
    : rule === 'windows' && trained === data.train ? trainSet : windowSamples(data.train, settings.seq, a.padId);
  const heldout = data.heldout ? windowSamples(data.heldout, settings.seq, a.padId) : null;
  const streamed = settings.streamFrozen && trainFrom > 0; // every sample cached (host memory) by the layer-major pass
  const plan = memoryPlanSettings(spec, settings, trainSet.count, steps, a.maxBufferSize);
  const quant = quantSetting(settings);
  const train: TrainSettings = {
    frac: settings.frac, steps, microbatch: settings.microbatch, accum: settings.accum, seq: settings.seq, lrPeak: settings.lrPeak,
    wd: settings.wd, trainFrom, reselectEvery: settings.reselectEvery, evalEvery: settings.evalEvery, nImportance: settings.nImportance,
    frozenCacheN: plan.frozenCacheN, seed: settings.seed, evalWindows: run.evalWindows,
    keepAdamState: settings.keepAdamState, trainShared: settings.trainShared, perEntryStep: settings.perEntryStep,
    accumulatedReselect: settings.accumulatedReselect,
    // the Trainer visits records like windows: a seeded order, reshuffled each epoch
    sampling: rule === 'random' ? 'random' : 'windows',
    ...(run.gpuGib !== null ? { gpuBytes: Math.floor(run.gpuGib * 2 ** 30) } : {}),
    ...(run.expertChunk !== null ? { expertChunk: run.expertChunk } : {}),
  };
  const fingerprints: DataFingerprints = {
    train: dataFingerprint(trained), eval: data.eval ? dataFingerprint(data.eval) : null, heldout: data.heldout ? dataFingerprint(data.heldout) : null,
  };
  return {
    steps, trainFrom, rule, streamed, trainSet, inDomain, heldout, train, quant,
    load: loadOptions(spec.numLayers, trainFrom, quant, settings.trainShared, settings.streamFrozen),
    checkpoint: { ...train, quantizeExperts: quant, streamFrozen: streamed, samples: rule, data: fingerprints },
    plan: run.expertChunk !== null ? { ...plan, expertChunk: run.expertChunk } : plan,
  };
}

/**
 * Refuses (PlanError, with settings that fit) a run whose memory plan exceeds GPU_GIB; before anything is loaded. A 4-bit
 * run that fits only with its trained layers' 4-bit experts in host memory (plan/memory.ts fitSettings) gets them:
 * r.plan and r.load say so (the same results).
 */
export function checkFits(spec: ModelSpec, r: RunSetup): void {
  const budget = r.train.gpuBytes;
  if (budget === undefined) return;
  const s = fitSettings(spec, r.plan, budget);
  assertFits(spec, s, budget);
  if (s.hostExperts) {
    r.plan = { ...r.plan, hostExperts: true };
    r.load.hostExperts = new Set(hostedLayers(spec, s));
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and resume

/** Settings a resume must keep (they change the math), with the names a refusal uses. */
export const RESUME_SETTINGS = [
  ['frac', 'FRAC'], ['steps', 'STEPS'], ['microbatch', 'MICROBATCH'], ['accum', 'ACCUM'], ['seq', 'SEQ'], ['lrPeak', 'LR_PEAK'],
  ['wd', 'WD'], ['trainFrom', 'TRAIN_FROM'], ['reselectEvery', 'RESELECT_EVERY'], ['nImportance', 'N_IMPORTANCE'], ['seed', 'SEED'],
  ['evalWindows', 'EVAL_WINDOWS'], ['keepAdamState', 'KEEP_ADAM_STATE'], ['perEntryStep', 'PER_ENTRY_STEP'],
  ['accumulatedReselect', 'ACCUMULATED_RESELECT'], ['trainShared', 'TRAIN_SHARED'],
] as const satisfies readonly (readonly [keyof TrainSettings, string])[];

const REQUIRED = ['frac', 'steps', 'microbatch', 'accum', 'seq', 'lrPeak', 'wd', 'trainFrom', 'reselectEvery', 'nImportance', 'seed'] as const;

/** The settings stored in a checkpoint, checked; what older checkpoints lack reads as those runs ran. */
export function savedSettings(raw: Record<string, unknown>): SavedSettings {
  for (const k of REQUIRED) {
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
  const sampling = raw.sampling === 'random' ? 'random' : 'windows';
  const samples: SampleRule = raw.samples === 'records' || raw.samples === 'random' || raw.samples === 'windows' ? raw.samples : sampling;
  const d = raw.data as DataFingerprints | undefined;
  const data = d && typeof d === 'object' && typeof d.train?.hash === 'string' ? d : null;
  return {
    ...(raw as unknown as TrainSettings), quantizeExperts: quant, sampling, samples, data,
    evalWindows: typeof raw.evalWindows === 'number' ? raw.evalWindows : null,
    keepAdamState: raw.keepAdamState === true, trainShared: raw.trainShared === true, perEntryStep: raw.perEntryStep === true,
    accumulatedReselect: raw.accumulatedReselect === true,
  };
}

const quantText = (q: QuantSetting): string => (q ? `4-bit experts (QUANTIZE_EXPERTS on, QUANT_GROUP ${q.groupSize})` : 'unquantized experts (QUANTIZE_EXPERTS off)');
const show = (v: unknown): string => (typeof v === 'boolean' ? (v ? 'on' : 'off') : v === null || v === undefined ? 'all' : String(v));
const dataText = (f: DataFingerprint | null): string => (f ? `${f.tokens} tokens in ${f.documents} records, hash ${f.hash}` : 'none');

/** What differs between a checkpoint's run and the run set up now (empty: it may resume), and warnings. */
export function resumeDifferences(saved: SavedSettings, now: SavedSettings): { differences: string[]; warnings: string[] } {
  const differences: string[] = [];
  const warnings: string[] = [];
  for (const [k, label] of RESUME_SETTINGS) {
    const was = typeof saved[k] === 'boolean' || typeof now[k] === 'boolean' ? !!saved[k] : saved[k] ?? null;
    const is = typeof saved[k] === 'boolean' || typeof now[k] === 'boolean' ? !!now[k] : now[k] ?? null;
    if (was !== is) differences.push(`${label}: ${show(was)} in the checkpoint, ${show(is)} now`);
  }
  // The trained values only continue on the base they were trained over (4-bit bases differ from bf16 and by group size).
  if ((saved.quantizeExperts?.groupSize ?? null) !== (now.quantizeExperts?.groupSize ?? null)) {
    differences.push(`experts: ${quantText(saved.quantizeExperts)} in the checkpoint, ${quantText(now.quantizeExperts)} now`);
  }
  if (saved.samples !== now.samples) differences.push(`training samples: ${saved.samples} in the checkpoint, ${now.samples} now`);
  if (!saved.data) {
    warnings.push('the checkpoint was written before data fingerprints: its training and evaluation data cannot be compared with the data given now');
  } else if (now.data) {
    for (const part of ['train', 'eval', 'heldout'] as const) {
      const a = saved.data[part];
      const b = now.data[part];
      if ((a?.hash ?? null) !== (b?.hash ?? null) || (a?.tokens ?? null) !== (b?.tokens ?? null)) {
        const what = part === 'train' ? 'training data' : part === 'eval' ? 'in-domain eval split' : 'held-out data';
        differences.push(`${what}: ${dataText(a)} in the checkpoint, ${dataText(b)} now`);
      }
    }
  }
  return { differences, warnings };
}

/** Throws, listing every difference, when `now` cannot continue the checkpointed run; returns the warnings. */
export function checkResume(saved: SavedSettings, now: SavedSettings): string[] {
  const { differences, warnings } = resumeDifferences(saved, now);
  if (differences.length) {
    throw new SettingsError(`the run cannot resume: a resume continues the same run, and ${differences.length === 1 ? 'this differs' : `${differences.length} things differ`} from its checkpoint ` +
      `(free to change: EVAL_EVERY, CHECKPOINT_EVERY, FROZEN_CACHE_N, STREAM_FROZEN, GPU_GIB, EXPERT_CHUNK, the output folder):\n  - ${differences.join('\n  - ')}`);
  }
  return warnings;
}

/**
 * loadWeights' options for restoring a checkpointed run (export): the weights it was trained over. Nothing runs the
 * frozen layers in an export, so they stay in storage.
 */
export function savedLoadOptions(saved: SavedSettings, numLayers: number): LoadOptions {
  return loadOptions(numLayers, saved.trainFrom, saved.quantizeExperts, !!saved.trainShared, true);
}
