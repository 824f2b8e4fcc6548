// Contract: a rough memory plan from the sizes the engine allocates (weights as loadWeights stores them, the Trainer's
// copies, selections and optimizer state, activations of MICROBATCH × SEQ tokens, the frozen cache). An estimate only.

import type { GpuContext } from '../engine/gpu/device.ts';
import { globalTensors, type ModelSpec } from '../engine/model/index.ts';
import { activeCount } from '../engine/train/schedule.ts';
import { attentionWidths } from '../engine/train/forward.ts';
import { resolveSteps, resolveTrainFrom, type Settings } from '../presets/schema.ts';
import type { MemoryPlan, PlanItem } from './protocol.ts';

/** Tensor roles loadWeights keeps in f32 (the rest of the frozen weights is bf16). */
const F32_ROLES = new Set([
  'input_norm', 'post_attn_norm', 'final_norm', 'attn.q_norm', 'attn.k_norm', 'attn.q_a_norm', 'attn.kv_a_norm',
  'attn.q_bias', 'attn.k_bias', 'attn.v_bias', 'attn.o_bias', 'attn.q_a_bias', 'attn.kv_a_bias',
  'router', 'router.bias_correction', 'shared.expert_gate',
]);

const numel = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Frozen-cache samples the worker allocates: FROZEN_CACHE_N (auto = every training window), within one GPU buffer. */
export function frozenCacheSamples(settings: Settings, trainWindows: number, spec: ModelSpec, maxBufferSize: number | null): number {
  const wanted = Math.min(settings.frozenCacheN ?? trainWindows, trainWindows);
  const perSample = settings.seq * spec.hidden * 4;
  return maxBufferSize ? Math.min(wanted, Math.floor(maxBufferSize / perSample)) : wanted;
}

/** f32 elements of one layer's forward activations (LayerActs) for T tokens. */
function layerActElements(spec: ModelSpec, T: number): number {
  const { hidden: H, numHeads: NH } = spec;
  const { numExperts: E, topK: K, expertIntermediate: IE } = spec.moe;
  const w = attentionWidths(spec);
  return T * (5 * H + 2 * w.q + 2 * w.k + w.v + w.o + 2 * NH + 2 + 2 * E + 4 * K + 3 * K * IE + K * H);
}

/** f32 elements of the backward workspace (BackwardWork) for T tokens. */
function backwardElements(spec: ModelSpec, T: number): number {
  const { hidden: H, numHeads: NH } = spec;
  const { numExperts: E, topK: K, expertIntermediate: IE } = spec.moe;
  const w = attentionWidths(spec);
  return T * (4 * H + K + E + 2 * K * H + 2 * K * IE + w.o + 2 * w.q + 2 * w.k + w.v + NH);
}

export function estimatePlan(args: { gpu: GpuContext | null; spec: ModelSpec; settings: Settings; trainTokens: number | null }): MemoryPlan {
  const { gpu, spec, settings: s } = args;
  const trainFrom = resolveTrainFrom(s, spec.numLayers);
  const trained = spec.layers.filter((l) => l.index >= trainFrom && l.mlp === 'moe').map((l) => l.index);
  const trainedSet = new Set(trained);
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const H = spec.hidden;
  const per = E * IE * H; // one selection tensor's worth of experts: [E, IE, H]

  // Weights as loadWeights stores them: bf16 (2 bytes) except small f32 roles and the trained layers' experts.
  let weights = 0;
  for (const L of spec.layers) {
    for (const t of L.tensors) {
      const f32 = F32_ROLES.has(t.role) || (t.role.startsWith('expert.') && trainedSet.has(L.index));
      weights += numel(t.shape) * (f32 ? 4 : 2);
    }
  }
  for (const t of globalTensors(spec)) weights += numel(t.shape) * (F32_ROLES.has(t.role) ? 4 : 2);

  // Per trained layer: [gate | up] and W0 copies, dense gradient scratch, selections (idx, master, m, v, grad), router state.
  const kG = activeCount(s.frac, 2 * per);
  const kD = activeCount(s.frac, per);
  const copies = trained.length * (2 * per + 2 * per + per) * 4;
  const scratch = trained.length * (3 * per + E * H) * 4;
  const optimizer = trained.length * (5 * (kG + kD) + E * H) * 4;

  const T = s.microbatch * s.seq;
  const layersActs = (1 + (spec.numLayers - trainFrom)) * layerActElements(spec, T) + (spec.numLayers - trainFrom) * T * H;
  const activations = (layersActs + backwardElements(spec, T) + T * (3 * H + 8) + T * Math.min(spec.vocab, 16384)) * 4;

  const windows = args.trainTokens ? Math.ceil(args.trainTokens / s.seq) : null;
  const maxBuffer = gpu?.info.maxBufferSize ?? null;
  const cacheN = trainFrom > 0 && windows !== null ? frozenCacheSamples(s, windows, spec, maxBuffer) : 0;
  const cache = cacheN * s.seq * H * 4;

  const items: PlanItem[] = [
    { label: 'Model weights (bf16; trained experts, norms, routers f32)', bytes: weights, where: 'gpu' },
    { label: `Trained layers ${trainFrom}–${spec.numLayers - 1}: expert copies and base weights W0`, bytes: copies, where: 'gpu' },
    { label: 'Gradient scratch (dense expert and router gradients)', bytes: scratch, where: 'gpu' },
    { label: `Masters and Adam state (${(kG + kD).toLocaleString('en-US')} entries per layer) and router momentum`, bytes: optimizer, where: 'gpu' },
    { label: `Activations (${s.microbatch} × ${s.seq} tokens)`, bytes: activations, where: 'gpu' },
    { label: `Frozen cache (${cacheN.toLocaleString('en-US')} sequences)`, bytes: cache, where: 'gpu' },
  ];
  const gpuBytes = items.reduce((n, i) => n + i.bytes, 0);

  const notes = ['Estimate from the sizes the engine allocates (weights, trained-layer copies, optimizer state, activations, frozen cache); the real use is shown as "GPU memory" while a run goes.'];
  let fits = true;
  if (gpu) {
    const bind = gpu.info.maxStorageBufferBindingSize;
    const biggestBound = 2 * per * 4; // a trained layer's [gate | up] in f32
    if (trained.length && biggestBound > bind) {
      fits = false;
      notes.push(`A trained layer's experts need a ${Math.ceil(biggestBound / 2 ** 20)} MiB buffer binding; this GPU allows ${Math.floor(bind / 2 ** 20)} MiB.`);
    }
    if (cache > gpu.info.maxBufferSize) notes.push('The frozen cache is capped at the largest buffer this GPU allows.');
  } else {
    notes.push('No GPU: training needs WebGPU.');
  }
  if (windows === null) notes.push('Choose a training dataset to size the frozen cache and EPOCHS.');
  if (s.quantizeExperts) notes.push('QUANTIZE_EXPERTS is not applied by this engine build yet: the frozen experts stay in bf16.');
  if (s.keepAdamState || s.perEntryStep || s.accumulatedReselect) notes.push('The improvements over the seed are not applied by this engine build yet: the run follows METHOD.md.');
  return {
    fits,
    gpuBytes,
    gpuBudgetBytes: null,
    items,
    notes,
    trainableParams: trained.length * (kG + kD + E * H),
    steps: args.trainTokens ? resolveSteps(s, args.trainTokens) : s.steps,
  };
}
