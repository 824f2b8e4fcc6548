// The settings of a training run (what the Trainer is built from) and the memory plan's view of them.

import type { PlanSettings } from '../plan/memory.ts';
import type { ModelWeights } from './weights.ts';

export type Sampling = 'random' | 'windows';

export interface TrainSettings {
  frac: number;
  steps: number;
  microbatch: number;
  accum: number;
  seq: number;
  lrPeak: number;
  wd: number;
  trainFrom: number;
  reselectEvery: number;
  evalEvery: number;
  nImportance: number;
  /** Samples whose frozen-layer output is cached on the GPU (0 = no cache). */
  frozenCacheN: number;
  seed: number;
  /** Cap on the windows of each eval set (null = all). */
  evalWindows: number | null;
  /** Improvement over the seed (off by default): at reselection, entries that stay active keep their Adam moments and the step count goes on. */
  keepAdamState?: boolean;
  /** Also train the shared experts of the trained layers (DeepSeek-V3, Qwen2-MoE) as selection tensors (shared-train.ts). */
  trainShared?: boolean;
  /**
   * Improvement over the seed (off by default): Adam's bias correction uses each active entry's own update count (grown
   * entries start at 0; kept entries keep theirs with keepAdamState, else all restart at reselection like the moments).
   */
  perEntryStep?: boolean;
  /**
   * Improvement over the seed (off by default): each reselection ranks entries by |gradient| summed over N_IMPORTANCE
   * microbatches (the step's own + N_IMPORTANCE - 1 drawn like the first importance pass) instead of the step's one.
   */
  accumulatedReselect?: boolean;
  /**
   * How training samples are drawn from the token stream (samples.ts trainSamples): 'random' (the seed's: STEPS·MICROBATCH·ACCUM
   * windows of SEQ tokens at uniformly random start positions, drawn from SEED) or 'windows' (the consecutive SEQ-token
   * windows the evaluation scores, shuffled per epoch). Absent = 'windows' (how runs checkpointed before it existed ran).
   */
  sampling?: Sampling;
  /**
   * Trained layers whose importance scores exist at once (default all; 1 with 4-bit experts); each group reruns the passes.
   * With experts in several chunks: always 1 (each chunk of each layer reruns them).
   */
  importanceGroup?: number;
  /**
   * GPU memory the run must fit (WebGPU does not report it): when set, the Trainer refuses settings whose memory plan
   * exceeds it, with a PlanError that proposes settings that fit.
   */
  gpuBytes?: number;
  /**
   * 4-bit experts: experts per chunk of the f32 scratch a trained layer's weights are materialized into, one chunk at a
   * time (results are the same for every chunk size). Default: all experts, or with gpuBytes the largest chunk that fits
   * (plan/memory.ts chooseExpertChunk); either way within the adapter's largest buffer binding.
   */
  expertChunk?: number;
  /**
   * 4-bit experts: the trained layers' expert GEMMs read the 4-bit W0 and add the trained entries as a sparse f32
   * correction (ops/experts_q4.ts) instead of materializing each chunk into an f32 scratch: a normal step moves ~70 GB
   * less on Qwen3-30B-A3B top 8 (docs/cost-model.md) and no f32 expert scratch is held; selections, checkpoints and the
   * export materialize one chunk at a time into a scratch made for that work. On by default; false = the materialized
   * path (the fused path's reference in tests), whose scratch of one chunk is held for the run.
   */
  fusedExperts?: boolean;
}

/** The memory plan's settings of a run (4-bit when the loaded experts are). */
export function planSettings(s: TrainSettings, samples: number, weights?: ModelWeights): PlanSettings {
  if (weights?.layers.some((l) => l.streamed)) s = { ...s, frozenCacheN: samples }; // streamed: every sample cached
  const q4 = weights?.layers.find((l) => l.experts)?.experts?.gate.q4;
  return {
    trainFrom: s.trainFrom, microbatch: s.microbatch, seq: s.seq, frac: s.frac, frozenCacheN: Math.min(s.frozenCacheN, samples),
    quantizeExperts: q4 ? { groupSize: q4.G } : null, steps: s.steps, reselectEvery: s.reselectEvery, importanceGroup: s.importanceGroup,
    trainShared: !!s.trainShared, perEntryStep: !!s.perEntryStep, streamFrozen: !!weights?.layers.some((l) => l.streamed),
    ...(q4 && s.expertChunk !== undefined ? { expertChunk: s.expertChunk } : {}),
    ...(q4 && s.fusedExperts === false ? { fusedExperts: false } : {}),
    ...(q4 ? { hostExperts: !!weights?.slots } : {}),
  };
}
