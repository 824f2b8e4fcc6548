// Qwen3-MoE: GQA with per-head q/k RMSNorm, softmax top-k routing, optional dense layers (mlp_only_layers).
import { everyLayer, mhaAttention, qwenSlidingWindow, sparseStepKinds } from '../config-parts.ts';
import { defineFamily, HF_NAMING } from './adapter.ts';

export const qwen3Moe = defineFamily({
  arch: 'qwen3_moe',
  displayName: 'Qwen3-MoE',
  status: 'supported',
  summary: 'GQA with per-head q/k RMSNorm, softmax top-k routing',
  examples: ['Qwen/Qwen3-30B-A3B', 'Qwen/Qwen3-235B-A22B'],
  defaults: { numKvHeads: 4, rmsEps: 1e-6, maxPos: 32768, ropeTheta: 10000, intermediate: 6144, normTopkProb: false, alwaysNormTopk: false },
  ropeInterleave: () => false,
  attention: (cfg, ctx) => mhaAttention(cfg, ctx, () => ({ bias: ctx.attnBias, outBias: ctx.attnBias, qkNorm: 'per_head', clipQkv: null })),
  expertWidthKey: 'moe_intermediate_size',
  moe: (_cfg, base) => base,
  layerKinds: sparseStepKinds,
  windows: (cfg, n) => everyLayer(n, qwenSlidingWindow(cfg)),
  denseWidthIsExpertWidth: false,
  mtpLayers: () => 0,
  naming: HF_NAMING,
});
