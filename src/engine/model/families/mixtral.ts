// Mixtral: GQA without biases or q/k norms, softmax top-2 always renormalized, every layer MoE; the Hub's original
// checkpoints name the block `block_sparse_moe` with experts' w1 (gate), w3 (up), w2 (down).
import { everyLayer, mhaAttention } from '../config-parts.ts';
import { readInt } from '../config-read.ts';
import { defineFamily } from './adapter.ts';

export const mixtral = defineFamily({
  arch: 'mixtral',
  displayName: 'Mixtral',
  status: 'supported',
  summary: 'GQA, 8 experts with top-2 softmax routing (renormalized)',
  examples: ['mistralai/Mixtral-8x7B-v0.1', 'mistralai/Mixtral-8x22B-v0.1'],
  defaults: { numKvHeads: 8, rmsEps: 1e-5, maxPos: 4096 * 32, ropeTheta: 1e6, intermediate: 14336, normTopkProb: true, alwaysNormTopk: true },
  ropeInterleave: () => false,
  attention: (cfg, ctx) => mhaAttention(cfg, ctx, () => ({ bias: false, outBias: false, qkNorm: 'none', clipQkv: null })),
  expertWidthKey: 'intermediate_size',
  moe: (_cfg, base) => base,
  layerKinds: (_cfg, n) => everyLayer(n, 'moe'),
  windows: (cfg, n) => everyLayer(n, cfg.sliding_window == null ? null : readInt(cfg, 'sliding_window')),
  denseWidthIsExpertWidth: true,
  mtpLayers: () => 0,
  // Fused (transformers 5) checkpoints use `mlp.experts.gate_up_proj` like every family.
  naming: {
    moeBlock: (layout) => (layout === 'per_expert' ? 'block_sparse_moe' : 'mlp'),
    expertProjections: (layout) => (layout === 'per_expert' ? ['w1', 'w3', 'w2'] : ['gate_proj', 'up_proj', 'down_proj']),
    sharedBlock: null,
  },
});
