// Contract: the value transformers uses for each optional config.json key when the key is absent, per
// architecture (from the configuration classes of transformers 5: Qwen3Moe, Mixtral, Olmoe, Qwen2Moe, DeepseekV3).
import type { ArchName } from './spec.ts';

export interface ArchDefaults {
  /** num_key_value_heads when the key is absent; 'heads' = num_attention_heads. (null always → heads.) */
  numKvHeads: number | 'heads';
  rmsEps: number;
  maxPos: number;
  ropeTheta: number;
  /** intermediate_size default (dense MLP width; expert width on Mixtral/OLMoE, where it is required). */
  intermediate: number;
  normTopkProb: boolean;
  /** Router top-k weights are always renormalized, whatever norm_topk_prob says (Mixtral). */
  alwaysNormTopk: boolean;
}

export const ARCH_DEFAULTS: Readonly<Record<ArchName, ArchDefaults>> = {
  qwen3_moe: { numKvHeads: 4, rmsEps: 1e-6, maxPos: 32768, ropeTheta: 10000, intermediate: 6144, normTopkProb: false, alwaysNormTopk: false },
  mixtral: { numKvHeads: 8, rmsEps: 1e-5, maxPos: 4096 * 32, ropeTheta: 1e6, intermediate: 14336, normTopkProb: true, alwaysNormTopk: true },
  olmoe: { numKvHeads: 'heads', rmsEps: 1e-5, maxPos: 4096, ropeTheta: 10000, intermediate: 2048, normTopkProb: false, alwaysNormTopk: false },
  qwen2_moe: { numKvHeads: 16, rmsEps: 1e-6, maxPos: 32768, ropeTheta: 10000, intermediate: 5632, normTopkProb: false, alwaysNormTopk: false },
  deepseek_v3: { numKvHeads: 128, rmsEps: 1e-6, maxPos: 4096, ropeTheta: 10000, intermediate: 18432, normTopkProb: true, alwaysNormTopk: false },
};

/** Further per-family defaults (same source), used by config-parts.ts. */
export const QWEN2_SHARED_INTERMEDIATE = 5632;
export const SLIDING_WINDOW_DEFAULT = 4096;
export const QWEN2_MAX_WINDOW_LAYERS = 28;
export const DEEPSEEK = {
  qLoraRank: 1536,
  nGroup: 8,
  topkGroup: 4,
  routedScalingFactor: 2.5,
  firstKDense: 3,
  nShared: 1,
  moeLayerFreq: 1,
} as const;
