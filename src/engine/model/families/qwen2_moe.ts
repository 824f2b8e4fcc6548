// Qwen2-MoE / Qwen1.5-MoE: q/k/v biases (qkv_bias), a shared expert gated by sigmoid(shared_expert_gate · x) beside the
// routed experts, sliding windows per layer type (or below max_window_layers).
import { everyLayer, mhaAttention, qwenSlidingWindow, sparseStepKinds } from '../config-parts.ts';
import { ConfigError, readBool, readInt, type RawConfig } from '../config-read.ts';
import { defineFamily, HF_NAMING } from './adapter.ts';

const SHARED_INTERMEDIATE = 5632;
const MAX_WINDOW_LAYERS = 28;

function windows(cfg: RawConfig, numLayers: number): (number | null)[] {
  const w = qwenSlidingWindow(cfg);
  if (w === null) return everyLayer(numLayers, null);
  const types = cfg.layer_types;
  if (Array.isArray(types)) {
    if (types.length !== numLayers) throw new ConfigError('layer_types', `field "layer_types" must list ${numLayers} layers, got ${types.length}`);
    return types.map((t) => (t === 'sliding_attention' ? w : null));
  }
  const maxWindow = readInt(cfg, 'max_window_layers', MAX_WINDOW_LAYERS, 0);
  return Array.from({ length: numLayers }, (_, i) => ((i + 1) % 2 === 1 && i < maxWindow ? w : null));
}

export const qwen2Moe = defineFamily({
  arch: 'qwen2_moe',
  displayName: 'Qwen2-MoE / Qwen1.5-MoE',
  status: 'supported',
  summary: 'q/k/v bias, sigmoid-gated shared expert beside the routed experts',
  examples: ['Qwen/Qwen1.5-MoE-A2.7B', 'Qwen/Qwen2-57B-A14B'],
  defaults: { numKvHeads: 16, rmsEps: 1e-6, maxPos: 32768, ropeTheta: 10000, intermediate: 5632, normTopkProb: false, alwaysNormTopk: false },
  ropeInterleave: () => false,
  attention: (cfg, ctx) => mhaAttention(cfg, ctx, () => ({ bias: readBool(cfg, 'qkv_bias', true), outBias: false, qkNorm: 'none', clipQkv: null })),
  expertWidthKey: 'moe_intermediate_size',
  moe: (cfg, base) => ({
    ...base,
    sharedExperts: { count: 1, intermediate: readInt(cfg, 'shared_expert_intermediate_size', SHARED_INTERMEDIATE), gated: true },
  }),
  layerKinds: sparseStepKinds,
  windows,
  denseWidthIsExpertWidth: false,
  mtpLayers: () => 0,
  naming: { ...HF_NAMING, sharedBlock: 'shared_expert' },
});
