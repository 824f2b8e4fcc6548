// The arithmetic of a run, counted from the model's shapes, and its time at a measured rate: a rough estimate shown
// before Start. Counts multiply-adds as 2 FLOPs; a backward pass costs twice its forward; embeddings are lookups.
//
// What a run computes (engine/train): N_IMPORTANCE forward/backward microbatches to choose the trained entries, and again
// at each reselection; STEPS × ACCUM forward/backward microbatches through the trained layers (and forward through the
// frozen layers for sequences not in the frozen cache yet); an evaluation (forward only, every window of each evaluation
// set) before training, every EVAL_EVERY steps and after. On a CPU adapter a small run's time is mostly the fixed cost of
// each kernel dispatch and each wait for the GPU: those are counted too (runCalls), and timed by the probe; and the first
// use of each distinct kernel compiles its pipeline (on SwiftShader about a second each): counted by RUN_KERNELS, the
// compile timed by the probe. With 4-bit experts the first selection takes its importance one trained layer at a time
// (train/importance.ts: importanceGroup 1), rerunning the N_IMPORTANCE microbatches for each.

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
  /** Windows of SEQ tokens one evaluation scores in each set (in-domain, then held-out if any). */
  evalWindows: number[];
  /** Routed experts in 4 bits (trained layers materialized from the 4-bit base; importance a layer at a time). */
  quantized: boolean;
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
  /** Distinct kernels first used here: each compiles its pipeline once. */
  pipelines: number;
}

/**
 * The distinct kernels (one pipeline each) a run first uses in each part, by name, for a Qwen3-MoE-shaped model: the
 * first evaluation compiles the forward (the expert kernels twice when frozen layers read bf16 experts and the trained
 * layers f32), the importance pass the backward and the selection (4-bit: also the dequantization), the first step the
 * optimizer (4-bit: also the trained entries' Δ). Reselections and later evaluations compile nothing new.
 */
export const RUN_KERNELS = {
  forward: ['embedding.forward', 'rmsnorm.forward', 'matmul.forward', 'rope.forward', 'attention.forward', 'router.matmul', 'router.forward',
    'moe_route.rank', 'moe_route.offsets', 'moe_route.scatter', 'experts.gate_up', 'experts.down', 'experts.combine', 'elementwise.add_in_place', 'xent.rows'],
  /** f32 trained experts: a second variant of each for the frozen layers' (bf16) experts. */
  frozenExperts: ['experts.gate_up', 'experts.down'],
  /** The head's dh GEMM folds the softmax in (a second matmul.backward_input variant), then xent.onehot. */
  importance: ['matmul.backward_input', 'matmul.backward_input', 'xent.onehot', 'rmsnorm.backward_input', 'experts.backward_combine', 'experts.backward_act',
    'experts.backward_input', 'router.backward', 'attention.backward_delta', 'attention.backward_dkdv', 'attention.backward_dkdv_sum', 'attention.backward_dq',
    'rope.backward', 'experts.backward_weight', 'topk.histogram', 'topk.select', 'topk.count', 'topk.compact', 'adam.gather'],
  training: ['sparse_grad', 'adam.check_finite', 'adam.sparse_adam', 'adam.sgd'],
  /** f32 trained experts: the masters scattered into the weights after each update. */
  f32Training: ['adam.scatter'],
  /**
   * 4-bit trained experts (fused, train/q4-base.ts): the trained entries' Δ scattered before the first evaluation; the
   * selection dequantizes a chunk of W0; the steps compute the trained entries' Δ (the GEMMs add it as they stage W0).
   */
  fused: {
    evals: ['adam.scatter'],
    setup: ['dequant'],
    train: ['experts_q4.delta'],
  },
} as const;

/** The kernels a run compiles, by the part of the run that first uses them. */
export function runKernels(s: Pick<RunShape, 'trainFrom' | 'quantized'>): { evals: string[]; setup: string[]; train: string[] } {
  const k = RUN_KERNELS;
  const q = s.quantized;
  return {
    evals: [...k.forward, ...(!q && s.trainFrom > 0 ? k.frozenExperts : []), ...(q ? k.fused.evals : [])],
    setup: [...k.importance, ...(q ? k.fused.setup : [])],
    train: [...k.training, ...(q ? k.fused.train : k.f32Training)],
  };
}

/**
 * Dispatches a training pass makes, as the cost model counts them (usaf bench --cost --synthetic demo, MICROBATCH 1,
 * SEQ 16, 4-bit experts: 42, 97 and 207 a step for 1, 2 and 4 trained layers): per trained layer 22 forward (2 of them
 * the trained entries' Δ), 27 backward (the lowest 7, with the head's last) and 6 in the optimizer; the LM head 4 forward
 * and 1 backward; 2 more a step. A frozen or evaluated layer's forward is counted as the same 22.
 * On a CPU adapter each dispatch costs milliseconds whatever its size, so a small step is counted in dispatches, not FLOPs.
 */
export const DISPATCHES = { forward: 22, backward: 27, lowestBackward: 7, optimizer: 6, head: 4, headBackward: 1, step: 2 } as const;

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

/** Tokens one evaluation runs (padded last windows run whole). */
export function evalTokens(s: Pick<RunShape, 'evalWindows' | 'seq'>): number {
  return s.evalWindows.reduce((a, w) => a + w, 0) * s.seq;
}

/** Microbatches the evaluator runs in one evaluation: each set's windows in batches of MICROBATCH (train/trainer.ts evaluate). */
export function evalBatches(s: Pick<RunShape, 'evalWindows' | 'microbatch'>): number {
  return s.evalWindows.reduce((a, w) => a + Math.ceil(w / s.microbatch), 0);
}

/** Training passes of the first selection: N_IMPORTANCE microbatches, again for each trained MoE layer with 4-bit experts. */
export function importancePasses(spec: ModelSpec, s: Pick<RunShape, 'trainFrom' | 'nImportance' | 'quantized'>): number {
  const moe = spec.layers.slice(s.trainFrom).filter((l) => l.mlp === 'moe').length;
  return s.nImportance * (s.quantized ? Math.max(1, moe) : 1);
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
  // the first selection reruns its microbatches per group of trained layers; the frozen layers run once per microbatch
  const first = importancePasses(spec, s) * fb(tokensPerMicro) + s.nImportance * tokensPerMicro * frozen * layer;
  const setup = first + reselections * (fb(tokensPerMicro) + tokensPerMicro * frozen * layer);
  const evaluations = 2 + (s.evalEvery > 0 ? Math.floor((s.steps - 1) / s.evalEvery) : 0);
  const evals = evaluations * evalTokens(s) * (n * layer + head);
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
  const kernels = runKernels(s);
  const train = {
    dispatches: micro * pass + s.steps * (trained * d.optimizer + d.step) + frozenPasses * s.trainFrom * d.forward,
    syncs: s.steps * STEP_SYNCS,
    pipelines: kernels.train.length,
  };
  const reselections = s.reselectEvery > 0 ? Math.floor((s.steps - 1) / s.reselectEvery) : 0;
  const passes = importancePasses(spec, s) + reselections;
  const setup = {
    dispatches: passes * pass + (s.nImportance + reselections) * s.trainFrom * d.forward,
    syncs: passes + 1 + reselections,
    pipelines: kernels.setup.length,
  };
  // one forward of every layer and the head per microbatch of windows
  const batches = evaluations * evalBatches(s);
  const evals = { dispatches: batches * (spec.numLayers * d.forward + d.head), syncs: batches, pipelines: kernels.evals.length };
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
  /** Seconds to compile one kernel's pipeline. */
  compileSeconds: number;
}

/** Seconds for `flops` in `calls` on the measured adapter: the arithmetic at the probe's rate, plus each dispatch, wait and compile. */
export function runSeconds(flops: number, calls: Calls, rate: AdapterRate): number {
  return flops / rate.flopsPerSecond + calls.dispatches * rate.dispatchSeconds + calls.syncs * rate.syncSeconds + calls.pipelines * rate.compileSeconds;
}
