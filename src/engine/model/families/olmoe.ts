// OLMoE: q/k RMSNorm over the whole projection, optional clip_qkv, 64 experts top-8, every layer MoE.
import { everyLayer, mhaAttention, optionalNum } from '../config-parts.ts';
import { defineFamily, HF_NAMING } from './adapter.ts';

export const olmoe = defineFamily({
  arch: 'olmoe',
  displayName: 'OLMoE',
  status: 'supported',
  summary: 'q/k RMSNorm over the whole projection, 64 experts top-8',
  examples: ['allenai/OLMoE-1B-7B-0924'],
  defaults: { numKvHeads: 'heads', rmsEps: 1e-5, maxPos: 4096, ropeTheta: 10000, intermediate: 2048, normTopkProb: false, alwaysNormTopk: false },
  ropeInterleave: () => false,
  attention: (cfg, ctx) => mhaAttention(cfg, ctx, () => ({ bias: ctx.attnBias, outBias: ctx.attnBias, qkNorm: 'full', clipQkv: optionalNum(cfg, 'clip_qkv') })),
  expertWidthKey: 'intermediate_size',
  moe: (_cfg, base) => base,
  layerKinds: (_cfg, n) => everyLayer(n, 'moe'),
  windows: (_cfg, n) => everyLayer(n, null),
  denseWidthIsExpertWidth: true,
  mtpLayers: () => 0,
  naming: HF_NAMING,
});
