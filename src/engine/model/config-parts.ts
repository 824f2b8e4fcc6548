// Contract: per-architecture pieces of parseConfig — attention, MoE routing and the dense/MoE layer pattern —
// each read from a raw config with transformers' semantics and defaults; throws ConfigError on bad fields.
import { ConfigError, readBool, readInt, readLayerList, readNum, readStr, type RawConfig } from './config-read.ts';
import { DEEPSEEK, QWEN2_MAX_WINDOW_LAYERS, QWEN2_SHARED_INTERMEDIATE, SLIDING_WINDOW_DEFAULT, type ArchDefaults } from './arch-defaults.ts';
import { yarnMscale } from './rope.ts';
import type { ArchName, AttentionSpec, MoeSpec, RopeSpec } from './spec.ts';

export const EXPERT_COUNT_KEYS = ['num_experts', 'num_local_experts', 'n_routed_experts'] as const;

export interface Dims {
  hidden: number;
  numHeads: number;
}

/** Attention block plus the head geometry (numKvHeads, headDim) it implies. */
export function parseAttention(cfg: RawConfig, arch: ArchName, d: Dims, def: ArchDefaults, rope: RopeSpec):
  { attention: AttentionSpec; numKvHeads: number; headDim: number } {
  const kvDefault = cfg.num_key_value_heads === null || def.numKvHeads === 'heads' ? d.numHeads : def.numKvHeads;
  const numKvHeads = readInt(cfg, 'num_key_value_heads', kvDefault);
  if (d.numHeads % numKvHeads !== 0) {
    throw new ConfigError('num_key_value_heads', `num_attention_heads (${d.numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  const attnBias = readBool(cfg, 'attention_bias', false);
  if (arch === 'deepseek_v3') {
    const qLora = cfg.q_lora_rank === null ? null : readInt(cfg, 'q_lora_rank', DEEPSEEK.qLoraRank);
    const mla = {
      qLoraRank: qLora,
      kvLoraRank: readInt(cfg, 'kv_lora_rank', undefined, 1, 'MLA attention'),
      qkRopeHeadDim: readInt(cfg, 'qk_rope_head_dim', undefined, 1, 'MLA attention'),
      qkNopeHeadDim: readInt(cfg, 'qk_nope_head_dim', undefined, 1, 'MLA attention'),
      vHeadDim: readInt(cfg, 'v_head_dim', undefined, 1, 'MLA attention'),
    };
    const headDim = mla.qkNopeHeadDim + mla.qkRopeHeadDim;
    const sc = rope.scaling;
    const m = sc && sc.mscaleAllDim ? yarnMscale(sc.factor, sc.mscaleAllDim) : 1;
    const attention: AttentionSpec = {
      kind: 'mla', qkNorm: 'none', bias: attnBias, outBias: attnBias, clipQkv: null, mla, softmaxScale: (m * m) / Math.sqrt(headDim),
    };
    return { attention, numKvHeads, headDim };
  }
  let headDim: number;
  if (cfg.head_dim !== undefined && cfg.head_dim !== null) headDim = readInt(cfg, 'head_dim');
  else if (d.hidden % d.numHeads === 0) headDim = d.hidden / d.numHeads;
  else throw new ConfigError('head_dim', `missing "head_dim" and hidden_size (${d.hidden}) is not divisible by num_attention_heads (${d.numHeads})`);
  const bias = arch === 'qwen2_moe' ? readBool(cfg, 'qkv_bias', true) : arch === 'mixtral' ? false : attnBias;
  const outBias = arch === 'qwen3_moe' || arch === 'olmoe' ? attnBias : false;
  const qkNorm = arch === 'qwen3_moe' ? 'per_head' : arch === 'olmoe' ? 'full' : 'none';
  const clipQkv = arch === 'olmoe' && cfg.clip_qkv !== undefined && cfg.clip_qkv !== null ? readNum(cfg, 'clip_qkv') : null;
  return { attention: { kind: 'mha', qkNorm, bias, outBias, clipQkv, softmaxScale: 1 / Math.sqrt(headDim) }, numKvHeads, headDim };
}

/** Routed experts, router semantics and shared experts. */
export function parseMoe(cfg: RawConfig, arch: ArchName, def: ArchDefaults): MoeSpec {
  const numExperts = readInt(cfg, EXPERT_COUNT_KEYS, undefined, 1, arch);
  const topK = readInt(cfg, 'num_experts_per_tok', undefined, 1, arch);
  if (topK > numExperts) throw new ConfigError('num_experts_per_tok', `num_experts_per_tok (${topK}) exceeds the number of experts (${numExperts})`);
  const widthKey = arch === 'mixtral' || arch === 'olmoe' ? 'intermediate_size' : 'moe_intermediate_size';
  const expertIntermediate = readInt(cfg, widthKey, undefined, 1, `${arch} experts`);
  const normTopkProb = def.alwaysNormTopk ? true : readBool(cfg, 'norm_topk_prob', def.normTopkProb);
  const base: MoeSpec = {
    numExperts, topK, expertIntermediate, normTopkProb, scoring: 'softmax', nGroup: 1, topkGroup: 1,
    routedScalingFactor: 1, hasCorrectionBias: false, sharedExperts: null,
  };
  if (arch === 'qwen2_moe') {
    const intermediate = readInt(cfg, 'shared_expert_intermediate_size', QWEN2_SHARED_INTERMEDIATE);
    return { ...base, sharedExperts: { count: 1, intermediate, gated: true } };
  }
  if (arch !== 'deepseek_v3') return base;
  const scoring = readStr(cfg, 'scoring_func') ?? 'sigmoid';
  if (scoring !== 'sigmoid' && scoring !== 'softmax') throw new ConfigError('scoring_func', `field "scoring_func" must be "sigmoid" or "softmax", got "${scoring}"`);
  const nGroup = readInt(cfg, 'n_group', DEEPSEEK.nGroup);
  const topkGroup = readInt(cfg, 'topk_group', DEEPSEEK.topkGroup);
  if (numExperts % nGroup !== 0) throw new ConfigError('n_group', `n_routed_experts (${numExperts}) must be divisible by n_group (${nGroup})`);
  if (topkGroup > nGroup) throw new ConfigError('topk_group', `topk_group (${topkGroup}) exceeds n_group (${nGroup})`);
  if (topK > topkGroup * (numExperts / nGroup)) {
    throw new ConfigError('num_experts_per_tok', `num_experts_per_tok (${topK}) exceeds the experts in topk_group (${topkGroup}) groups of ${numExperts / nGroup}`);
  }
  const nShared = readInt(cfg, 'n_shared_experts', DEEPSEEK.nShared, 0);
  return {
    ...base, scoring, nGroup, topkGroup,
    routedScalingFactor: readNum(cfg, 'routed_scaling_factor', DEEPSEEK.routedScalingFactor),
    hasCorrectionBias: true,
    sharedExperts: nShared > 0 ? { count: nShared, intermediate: expertIntermediate * nShared, gated: false } : null,
  };
}

/** 'moe' | 'dense' for each layer index. */
export function parseLayerKinds(cfg: RawConfig, arch: ArchName, numLayers: number): ('moe' | 'dense')[] {
  const idx = Array.from({ length: numLayers }, (_, i) => i);
  if (arch === 'mixtral' || arch === 'olmoe') return idx.map(() => 'moe');
  if (arch === 'deepseek_v3') {
    const firstK = readInt(cfg, 'first_k_dense_replace', DEEPSEEK.firstKDense, 0);
    const freq = readInt(cfg, 'moe_layer_freq', DEEPSEEK.moeLayerFreq);
    return idx.map((i) => (i >= firstK && i % freq === 0 ? 'moe' : 'dense'));
  }
  const mlpOnly = new Set(readLayerList(cfg, 'mlp_only_layers', numLayers));
  const step = readInt(cfg, 'decoder_sparse_step', 1);
  return idx.map((i) => (!mlpOnly.has(i) && (i + 1) % step === 0 ? 'moe' : 'dense'));
}

/** Sliding-attention window of each layer (null = full attention). */
export function parseWindows(cfg: RawConfig, arch: ArchName, numLayers: number): (number | null)[] {
  const all = (w: number | null) => Array.from({ length: numLayers }, () => w);
  if (arch === 'mixtral') return all(cfg.sliding_window == null ? null : readInt(cfg, 'sliding_window'));
  if (arch !== 'qwen3_moe' && arch !== 'qwen2_moe') return all(null);
  if (!readBool(cfg, 'use_sliding_window', false)) return all(null);
  const w = readInt(cfg, 'sliding_window', SLIDING_WINDOW_DEFAULT);
  if (arch === 'qwen3_moe') return all(w);
  const types = cfg.layer_types;
  if (Array.isArray(types)) {
    if (types.length !== numLayers) throw new ConfigError('layer_types', `field "layer_types" must list ${numLayers} layers, got ${types.length}`);
    return types.map((t) => (t === 'sliding_attention' ? w : null));
  }
  const maxWindow = readInt(cfg, 'max_window_layers', QWEN2_MAX_WINDOW_LAYERS, 0);
  return Array.from({ length: numLayers }, (_, i) => ((i + 1) % 2 === 1 && i < maxWindow ? w : null));
}
