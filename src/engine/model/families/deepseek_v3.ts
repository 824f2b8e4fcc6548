// DeepSeek-V3 (and Moonlight): MLA attention with interleaved RoPE, sigmoid group-limited routing with
// e_score_correction_bias and routed_scaling_factor, n_shared_experts fused into one shared MLP, first_k_dense_replace
// dense layers, multi-token-prediction layers after the last one (not loaded).
import { everyLayer, mlaAttention } from '../config-parts.ts';
import { ConfigError, readBool, readInt, readNum, readStr, type RawConfig } from '../config-read.ts';
import type { MoeSpec } from '../spec.ts';
import { defineFamily, HF_NAMING } from './adapter.ts';

/** transformers' DeepseekV3Config defaults. */
const DEFAULTS = { qLoraRank: 1536, nGroup: 8, topkGroup: 4, routedScalingFactor: 2.5, firstKDense: 3, nShared: 1, moeLayerFreq: 1 } as const;

function moe(cfg: RawConfig, base: MoeSpec): MoeSpec {
  const { numExperts, topK, expertIntermediate } = base;
  const scoring = readStr(cfg, 'scoring_func') ?? 'sigmoid';
  if (scoring !== 'sigmoid' && scoring !== 'softmax') throw new ConfigError('scoring_func', `field "scoring_func" must be "sigmoid" or "softmax", got "${scoring}"`);
  const nGroup = readInt(cfg, 'n_group', DEFAULTS.nGroup);
  const topkGroup = readInt(cfg, 'topk_group', DEFAULTS.topkGroup);
  if (numExperts % nGroup !== 0) throw new ConfigError('n_group', `n_routed_experts (${numExperts}) must be divisible by n_group (${nGroup})`);
  if (topkGroup > nGroup) throw new ConfigError('topk_group', `topk_group (${topkGroup}) exceeds n_group (${nGroup})`);
  if (topK > topkGroup * (numExperts / nGroup)) {
    throw new ConfigError('num_experts_per_tok', `num_experts_per_tok (${topK}) exceeds the experts in topk_group (${topkGroup}) groups of ${numExperts / nGroup}`);
  }
  const nShared = readInt(cfg, 'n_shared_experts', DEFAULTS.nShared, 0);
  return {
    ...base, scoring, nGroup, topkGroup,
    routedScalingFactor: readNum(cfg, 'routed_scaling_factor', DEFAULTS.routedScalingFactor),
    hasCorrectionBias: true,
    sharedExperts: nShared > 0 ? { count: nShared, intermediate: expertIntermediate * nShared, gated: false } : null,
  };
}

function layerKinds(cfg: RawConfig, numLayers: number): ('moe' | 'dense')[] {
  const firstK = readInt(cfg, 'first_k_dense_replace', DEFAULTS.firstKDense, 0);
  const freq = readInt(cfg, 'moe_layer_freq', DEFAULTS.moeLayerFreq);
  return Array.from({ length: numLayers }, (_, i) => (i >= firstK && i % freq === 0 ? 'moe' : 'dense'));
}

export const deepseekV3 = defineFamily({
  arch: 'deepseek_v3',
  displayName: 'DeepSeek-V3',
  status: 'supported',
  summary: 'MLA attention, sigmoid group-limited routing with bias correction, shared expert, dense first layers',
  examples: ['deepseek-ai/DeepSeek-V3', 'moonshotai/Moonlight-16B-A3B'],
  defaults: { numKvHeads: 128, rmsEps: 1e-6, maxPos: 4096, ropeTheta: 10000, intermediate: 18432, normTopkProb: true, alwaysNormTopk: false },
  ropeInterleave: (cfg) => readBool(cfg, 'rope_interleave', true),
  attention: (cfg, ctx) => mlaAttention(cfg, ctx, DEFAULTS.qLoraRank),
  expertWidthKey: 'moe_intermediate_size',
  moe,
  layerKinds,
  windows: (_cfg, n) => everyLayer(n, null),
  denseWidthIsExpertWidth: false,
  mtpLayers: (cfg) => readInt(cfg, 'num_nextn_predict_layers', 0, 0),
  naming: { ...HF_NAMING, sharedBlock: 'shared_experts' },
});
