// The arithmetic of a run, counted from the model's shapes, and its time at a measured rate: a rough estimate shown
// before Start. Counts multiply-adds as 2 FLOPs; a backward pass costs twice its forward; embeddings are lookups.
//
// What a run computes (engine/train): once, the frozen layers' outputs for the cached training sequences; N_IMPORTANCE
// forward/backward microbatches to choose the trained entries, and again at each reselection; STEPS × ACCUM forward/
// backward microbatches through the trained layers (and through the frozen layers for sequences not cached); an
// evaluation (forward only, every window of each evaluation set) before training, every EVAL_EVERY steps and after.

import type { ModelSpec } from '../model/spec.ts';
import { countParams } from '../model/params.ts';

export interface RunShape {
  steps: number;
  microbatch: number;
  accum: number;
  seq: number;
  trainFrom: number;
  nImportance: number;
  reselectEvery: number;
  evalEvery: number;
  /** Training sequences whose frozen-layer output is cached (computed once, not per step). */
  frozenCacheN: number;
  /** Tokens scored by one evaluation (in-domain and held-out windows together). */
  evalTokens: number;
}

export interface RunFlops {
  /** Frozen pass over the cached sequences, importance and reselection passes. */
  setup: number;
  train: number;
  evals: number;
  evaluations: number;
  total: number;
}

/** Forward FLOPs per token of layer L at context `seq` (projections, experts, router, causal attention scores). */
function layerFlops(spec: ModelSpec, perLayer: number, seq: number): number {
  const a = spec.attention;
  const headDim = a.mla ? a.mla.qkNopeHeadDim + a.mla.qkRopeHeadDim : spec.headDim;
  // q·k and p·v over on average seq/2 earlier positions
  const scores = 2 * 2 * spec.numHeads * headDim * (seq / 2);
  return 2 * perLayer + scores;
}

export function runFlops(spec: ModelSpec, s: RunShape): RunFlops {
  const c = countParams(spec);
  const n = spec.numLayers;
  // active weights per token and layer, the same for every layer (dense and MoE layers differ little at this precision)
  const perLayer = (c.active - c.embedding - c.lmHead) / n;
  const layer = layerFlops(spec, perLayer, s.seq);
  const head = 2 * spec.hidden * spec.vocab;
  const trained = n - s.trainFrom;
  const frozen = s.trainFrom;
  const tokensPerMicro = s.microbatch * s.seq;
  const micro = s.steps * s.accum;
  // microbatch forward + backward through the trained layers and the head; the frozen layers forward unless cached
  const samples = micro * s.microbatch;
  const uncachedShare = samples > 0 ? Math.max(0, samples - s.frozenCacheN) / samples : 0;
  const fb = (tokens: number, frozenShare: number) => tokens * (3 * (trained * layer + head) + frozenShare * frozen * layer);
  const train = fb(micro * tokensPerMicro, uncachedShare);
  const reselections = s.reselectEvery > 0 ? Math.floor((s.steps - 1) / s.reselectEvery) : 0;
  const setup = Math.min(s.frozenCacheN, samples) * s.seq * frozen * layer + (1 + reselections) * fb(s.nImportance * tokensPerMicro, 1);
  const evaluations = 2 + (s.evalEvery > 0 ? Math.floor((s.steps - 1) / s.evalEvery) : 0);
  const evals = evaluations * s.evalTokens * (n * layer + head);
  return { setup, train, evals, evaluations, total: setup + train + evals };
}

/** Seconds for `flops` at a measured rate (FLOP/s), with the engine's overhead over a plain matrix product. */
export function runSeconds(flops: number, flopsPerSecond: number, overhead = ENGINE_OVERHEAD): number {
  return (flops / flopsPerSecond) * overhead;
}

/**
 * The engine's time per FLOP relative to the probe's plain matrix product (routing, sparse scatter, attention, norms and
 * small expert batches run below a large product's rate; fused expert kernels above it). Not yet calibrated against
 * measured runs: 1, so the estimate is the arithmetic at the probe's rate.
 */
export const ENGINE_OVERHEAD = 1;
