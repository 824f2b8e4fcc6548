// The arithmetic of a run, counted from the model's shapes, and its time at a measured rate: a rough estimate shown
// before Start. Counts multiply-adds as 2 FLOPs; a backward pass costs twice its forward; embeddings are lookups.
//
// What a run computes (engine/train): N_IMPORTANCE forward/backward microbatches to choose the trained entries, and again
// at each reselection; STEPS × ACCUM forward/backward microbatches through the trained layers (and forward through the
// frozen layers for sequences not in the frozen cache yet); an evaluation (forward only, every window of each evaluation
// set) before training, every EVAL_EVERY steps and after. On a CPU adapter a small run's time is mostly the fixed cost of
// each kernel dispatch and each wait for the GPU: those are counted too (runCalls), and timed by the probe.

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
  /** Sequences in the training set (a run draws them in turn: none repeats before all are drawn). */
  sequences: number;
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

/** Kernel dispatches and waits for the GPU (readbacks, drains) of each part of a run. */
export interface RunCalls {
  setup: Calls;
  train: Calls;
  evals: Calls;
}

export interface Calls {
  dispatches: number;
  syncs: number;
}

/**
 * Dispatches a training pass makes, as the cost model counts them (usaf bench --cost --synthetic demo, MICROBATCH 1,
 * SEQ 16: 71, 133 and 257 a step for 1, 2 and 4 trained layers): per trained layer 26 forward, 30 backward and 6 in the
 * optimizer; the LM head 4 forward and 4 backward; 1 more a step. A frozen or evaluated layer's forward is the same 26.
 * On a CPU adapter each dispatch costs milliseconds whatever its size, so a small step is counted in dispatches, not FLOPs.
 */
export const DISPATCHES = { forward: 26, backward: 31, lowestBackward: 12, optimizer: 6, head: 4, headBackward: 1, step: 2 } as const;

/** Waits a step makes: one readback (every microbatch's loss rows and the non-finite flag, read a step late). */
const STEP_SYNCS = 1;

/** Forward FLOPs per token of layer L at context `seq` (projections, experts, router, causal attention scores). */
function layerFlops(spec: ModelSpec, perLayer: number, seq: number): number {
  const a = spec.attention;
  const headDim = a.mla ? a.mla.qkNopeHeadDim + a.mla.qkRopeHeadDim : spec.headDim;
  // q·k and p·v over on average seq/2 earlier positions
  const scores = 2 * 2 * spec.numHeads * headDim * (seq / 2);
  return 2 * perLayer + scores;
}

/**
 * Training sequences drawn whose frozen-layer output is computed during the steps: each the first time it is drawn, and
 * again when drawn once more without a place in the frozen cache (FROZEN_CACHE_N of the set's sequences have one).
 */
function frozenRuns(s: RunShape): number {
  const samples = s.steps * s.accum * s.microbatch;
  const distinct = Math.min(samples, s.sequences);
  return distinct + (samples - distinct) * Math.max(0, 1 - s.frozenCacheN / Math.max(1, s.sequences));
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
  // microbatch forward + backward through the trained layers and the head; the frozen layers forward for the sequences
  // not served by the frozen cache (each cached one once, when first drawn: during the steps)
  const fb = (tokens: number) => tokens * 3 * (trained * layer + head);
  const train = fb(micro * tokensPerMicro) + frozenRuns(s) * s.seq * frozen * layer;
  const reselections = s.reselectEvery > 0 ? Math.floor((s.steps - 1) / s.reselectEvery) : 0;
  const setup = (1 + reselections) * (fb(s.nImportance * tokensPerMicro) + s.nImportance * tokensPerMicro * frozen * layer);
  const evaluations = 2 + (s.evalEvery > 0 ? Math.floor((s.steps - 1) / s.evalEvery) : 0);
  const evals = evaluations * s.evalTokens * (n * layer + head);
  return { setup, train, evals, evaluations, total: setup + train + evals };
}

/** The dispatches and waits of a run, counted as runFlops counts its arithmetic. */
export function runCalls(spec: ModelSpec, s: RunShape, evaluations: number): RunCalls {
  const d = DISPATCHES;
  const trained = spec.numLayers - s.trainFrom;
  // the lowest trained layer's backward stops at its router and expert weight gradients (train/backward.ts)
  const pass = trained * d.forward + Math.max(0, trained - 1) * d.backward + (trained > 0 ? d.lowestBackward : 0) + d.head + d.headBackward;
  const micro = s.steps * s.accum;
  // a microbatch with a sequence not cached runs the frozen layers (the cache's copy is one dispatch)
  const frozenPasses = Math.min(micro, Math.ceil(frozenRuns(s) / s.microbatch));
  const train = {
    dispatches: micro * pass + s.steps * (trained * d.optimizer + d.step) + frozenPasses * s.trainFrom * d.forward,
    syncs: s.steps * STEP_SYNCS,
  };
  const reselections = s.reselectEvery > 0 ? Math.floor((s.steps - 1) / s.reselectEvery) : 0;
  const importance = (1 + reselections) * s.nImportance;
  const setup = { dispatches: importance * (pass + s.trainFrom * d.forward), syncs: importance + 1 + reselections };
  // one forward of every layer and the head per microbatch of windows
  const batches = evaluations * Math.ceil(s.evalTokens / s.seq / s.microbatch);
  const evals = { dispatches: batches * (spec.numLayers * d.forward + d.head), syncs: batches };
  return { setup, train, evals };
}

/** What the probe measured on this adapter (probe.ts). */
export interface AdapterRate {
  /** A large matrix product's rate, FLOP/s. */
  flopsPerSecond: number;
  /** Seconds one more dispatch adds to a submit, beyond its arithmetic. */
  dispatchSeconds: number;
  /** Seconds of a submit and wait for the GPU (a readback's round trip). */
  syncSeconds: number;
}

/** Seconds for `flops` in `calls` on the measured adapter: the arithmetic at the probe's rate, plus each dispatch and wait. */
export function runSeconds(flops: number, calls: Calls, rate: AdapterRate): number {
  return flops / rate.flopsPerSecond + calls.dispatches * rate.dispatchSeconds + calls.syncs * rate.syncSeconds;
}
