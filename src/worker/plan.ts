// Contract: the app's memory plan = the engine's planner (engine/plan: planMemory, suggestSettings), fed with the
// settings as the worker runs them (TRAIN_FROM and FROZEN_CACHE_N resolved) and judged against this GPU's limits.

import type { GpuInfo } from '../engine/gpu/device.ts';
import type { ModelSpec } from '../engine/model/index.ts';
import { fitSettings, KINDS, planMemory, suggestSettings, type Kind, type MemoryPlan as EnginePlan, type PlanSettings } from '../engine/plan/memory.ts';
import { memoryPlanSettings, plannedSamples } from '../engine/train/setup.ts';
import { activeCount } from '../engine/train/schedule.ts';
import { resolveSteps, type Settings } from '../presets/schema.ts';
import type { MemoryPlan, PlanItem } from './protocol.ts';

/**
 * The planner's settings for a run of `settings` on `spec` (trainTokens: the training set's size, null = unknown), as
 * engine/train/setup.ts sets the run up (for pre-tokenized records the sample count is a lower bound).
 */
export function planSettings(spec: ModelSpec, settings: Settings, trainTokens: number | null, maxBufferSize: number | null, pretokenized = false): PlanSettings {
  const samples = trainTokens === null ? null : plannedSamples(settings, trainTokens, pretokenized);
  return memoryPlanSettings(spec, settings, samples, trainTokens === null ? settings.steps : resolveSteps(settings, trainTokens), maxBufferSize);
}

const KIND_LABEL: Record<Kind, string> = {
  weights: 'Weights (frozen bf16; trained layers\' experts f32, with base copies W0)',
  masters: 'Selections: indices and master values',
  optimizer: 'Adam moments and router momentum',
  activations: 'Activations',
  cache: 'Frozen cache',
  workspace: 'Workspace (gradients, backward, loss)',
};

const WEIGHTS_Q4 = 'Weights (routed experts of every layer in 4 bits, also the trained layers\' base W0; the rest bf16, routers f32)';

const GiB = 2 ** 30;
const gib = (b: number): string => `${(b / GiB).toFixed(b < 10 * GiB ? 2 : 1)} GiB`;

/** Buffers this GPU cannot create or bind (each item is one createBuffer; all but the frozen cache are bound whole). */
function limitProblems(p: EnginePlan, info: GpuInfo): string[] {
  const out: string[] = [];
  const biggest = [...p.items].sort((a, b) => b.bytes - a.bytes)[0];
  if (biggest && biggest.bytes > info.maxBufferSize) {
    out.push(`The largest buffer (${biggest.label}, ${gib(biggest.bytes)}) exceeds this GPU's maxBufferSize (${gib(info.maxBufferSize)}).`);
  }
  const bound = p.items.filter((i) => i.kind !== 'cache').sort((a, b) => b.bytes - a.bytes)[0];
  if (bound && bound.bytes > info.maxStorageBufferBindingSize) {
    out.push(`The largest bound buffer (${bound.label}, ${gib(bound.bytes)}) exceeds this GPU's maxStorageBufferBindingSize (${gib(info.maxStorageBufferBindingSize)}).`);
  }
  return out;
}

function suggestionText(spec: ModelSpec, s: PlanSettings, budget: number, groupSize: number): string {
  const fit = (y: PlanSettings) => `TRAIN_FROM ${y.trainFrom}, MICROBATCH ${y.microbatch}, ${y.streamFrozen ? 'STREAM_FROZEN on' : `FROZEN_CACHE_N ${y.frozenCacheN}`}`;
  const x = suggestSettings(spec, s, budget);
  // 4-bit experts, when they keep more layers trained than what fits unquantized
  const q = s.quantizeExperts ? null : suggestSettings(spec, { ...s, quantizeExperts: { groupSize } }, budget);
  if (x && (!q || x.trainFrom <= q.trainFrom)) return `Closest settings that fit ${gib(budget)}: ${fit(x)}.`;
  if (q) return `${x ? `Unquantized, only ${fit(x)} fits ${gib(budget)}` : `Nothing fits ${gib(budget)} with unquantized experts`}; with QUANTIZE_EXPERTS on: ${fit(q)}.`;
  return `Nothing fits in ${gib(budget)}: not even the top layer at MICROBATCH 1.`;
}

export interface AppPlanArgs {
  gpu: GpuInfo | null;
  spec: ModelSpec;
  settings: Settings;
  /** Tokens of the training set (sizes the frozen cache and EPOCHS); null = no dataset chosen. */
  trainTokens: number | null;
  /** The training set is pre-tokenized records (trained record by record). */
  pretokenized?: boolean;
  /** GPU memory to fit in (WebGPU does not report it: the user or the preset says it); null = unknown. */
  gpuMemoryBytes: number | null;
}

export function appPlan(a: AppPlanArgs): MemoryPlan {
  // 4-bit: the expert chunks the worker's Trainer takes (the largest that fit the GPU memory given, within the adapter's
  // buffer limits; all experts when no memory is given)
  const lim = a.gpu ? Math.min(a.gpu.maxStorageBufferBindingSize, a.gpu.maxBufferSize) : undefined;
  const s = fitSettings(a.spec, planSettings(a.spec, a.settings, a.trainTokens, a.gpu?.maxBufferSize ?? null, a.pretokenized), a.gpuMemoryBytes ?? undefined, lim);
  const p = planMemory(a.spec, s);
  const items: PlanItem[] = KINDS.filter((k) => p.gpu[k] > 0).map((k) => ({
    label: k === 'cache' ? `${KIND_LABEL[k]} (${s.frozenCacheN.toLocaleString('en-US')} sequences)`
      : k === 'weights' && s.quantizeExperts ? WEIGHTS_Q4
      : k === 'activations' ? `${KIND_LABEL[k]} (${s.microbatch} × ${s.seq} tokens)` : KIND_LABEL[k],
    bytes: p.gpu[k], where: 'gpu',
  }));
  items.push({ label: 'Importance scores at the start (transient)', bytes: p.transient, where: 'gpu' });
  if (p.hostVisible) items.push({ label: 'Trained layers\' 4-bit experts, kept in host memory (copied to the GPU as each layer runs)', bytes: p.hostVisible, where: 'cpu' });
  items.push({ label: s.streamFrozen ? 'Host memory (the frozen cache, plus the largest tensor while loading or a checkpoint)' : 'Host memory (largest tensor while loading, or a checkpoint)', bytes: p.ram, where: 'cpu' });
  // the app stores every model with its routed experts in 4 bits (src/store): this much browser storage
  items.push({ label: `Model in browser storage (experts in 4 bits, groups of ${p.storage.group})`, bytes: p.storage.q4, where: 'disk' });

  const notes: string[] = [];
  const problems = a.gpu ? limitProblems(p, a.gpu) : [];
  notes.push(...problems);
  const budget = a.gpuMemoryBytes;
  const fitsBudget = budget === null || p.fits(budget);
  if (budget === null) notes.push('WebGPU does not report how much memory the GPU has: enter it to check the total.');
  else if (!fitsBudget) notes.push(`Peak ${gib(p.peak)} does not fit in ${gib(budget)}. ${suggestionText(a.spec, s, budget, a.settings.quantGroupSize)}`);
  if (s.trainFrom > 0 && s.streamFrozen) {
    const cached = a.trainTokens === null ? '' : ` (${s.frozenCacheN.toLocaleString('en-US')} sequences)`;
    notes.push(`STREAM_FROZEN: the frozen layers stay in storage; before training each is read once and every training sequence goes through it. Their outputs${cached} are kept in host memory.`);
  } else if (s.trainFrom > 0) {
    const sf = p.streamedFrozen;
    notes.push(`With STREAM_FROZEN on (frozen layers read once from storage instead of resident on the GPU), the peak would be ${gib(sf.peak)}${budget === null ? '' : sf.fits(budget) ? ', which fits' : ', which does not fit either'}.`);
  }
  if (!a.gpu) notes.push('No GPU: training needs WebGPU.');
  if (a.trainTokens === null) notes.push('Choose a training dataset (for this model) to size the frozen cache and EPOCHS.');

  const { numExperts: E, expertIntermediate: IE } = a.spec.moe;
  const per = E * IE * a.spec.hidden;
  const moeTrained = a.spec.layers.filter((l) => l.index >= s.trainFrom && l.mlp === 'moe').length;
  return {
    fits: fitsBudget && problems.length === 0,
    gpuBytes: p.peak,
    gpuBudgetBytes: budget,
    items,
    notes,
    trainableParams: moeTrained * (activeCount(s.frac, 2 * per) + activeCount(s.frac, per) + E * a.spec.hidden),
    steps: a.trainTokens !== null ? resolveSteps(a.settings, a.trainTokens) : a.settings.steps,
    trainFrom: s.trainFrom,
  };
}
