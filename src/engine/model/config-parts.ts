// Contract: the pieces of parseConfig every family reads the same way (transformers' semantics and defaults), as helpers the
// family adapters (families/*.ts) call: KV heads, MHA and MLA attention, routed experts, layer patterns, sliding windows.
import { ConfigError, readBool, readInt, readLayerList, readNum, type RawConfig } from './config-read.ts';
import type { ArchDefaults, AttentionContext } from './families/adapter.ts';
import { yarnMscale } from './rope.ts';
import type { AttentionSpec, MoeSpec } from './spec.ts';

export const EXPERT_COUNT_KEYS = ['num_experts', 'num_local_experts', 'n_routed_experts'] as const;
/** transformers' sliding_window default (Qwen3-MoE, Qwen2-MoE). */
export const SLIDING_WINDOW_DEFAULT = 4096;

/** num_key_value_heads (absent → the family default, null → num_attention_heads), dividing num_attention_heads. */
export function readKvHeads(cfg: RawConfig, numHeads: number, def: ArchDefaults): number {
  const kvDefault = cfg.num_key_value_heads === null || def.numKvHeads === 'heads' ? numHeads : def.numKvHeads;
  const numKvHeads = readInt(cfg, 'num_key_value_heads', kvDefault);
  if (numHeads % numKvHeads !== 0) {
    throw new ConfigError('num_key_value_heads', `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  return numKvHeads;
}

/** The family-specific fields of MHA attention, read after the head geometry. */
export type MhaFields = Pick<AttentionSpec, 'bias' | 'outBias' | 'qkNorm' | 'clipQkv'>;

/** Multi-head (GQA) attention: head_dim (default hidden / heads), then `fields()`. */
export function mhaAttention(cfg: RawConfig, ctx: AttentionContext, fields: () => MhaFields): { attention: AttentionSpec; headDim: number } {
  let headDim: number;
  if (cfg.head_dim !== undefined && cfg.head_dim !== null) headDim = readInt(cfg, 'head_dim');
  else if (ctx.hidden % ctx.numHeads === 0) headDim = ctx.hidden / ctx.numHeads;
  else throw new ConfigError('head_dim', `missing "head_dim" and hidden_size (${ctx.hidden}) is not divisible by num_attention_heads (${ctx.numHeads})`);
  return { attention: { kind: 'mha', ...fields(), softmaxScale: 1 / Math.sqrt(headDim) }, headDim };
}

/** Multi-head latent attention (DeepSeek): q/kv LoRA ranks and head widths; YaRN's mscale² enters the softmax scale. */
export function mlaAttention(cfg: RawConfig, ctx: AttentionContext, qLoraRankDefault: number): { attention: AttentionSpec; headDim: number } {
  const qLora = cfg.q_lora_rank === null ? null : readInt(cfg, 'q_lora_rank', qLoraRankDefault);
  const mla = {
    qLoraRank: qLora,
    kvLoraRank: readInt(cfg, 'kv_lora_rank', undefined, 1, 'MLA attention'),
    qkRopeHeadDim: readInt(cfg, 'qk_rope_head_dim', undefined, 1, 'MLA attention'),
    qkNopeHeadDim: readInt(cfg, 'qk_nope_head_dim', undefined, 1, 'MLA attention'),
    vHeadDim: readInt(cfg, 'v_head_dim', undefined, 1, 'MLA attention'),
  };
  const headDim = mla.qkNopeHeadDim + mla.qkRopeHeadDim;
  const sc = ctx.rope.scaling;
  const m = sc && sc.mscaleAllDim ? yarnMscale(sc.factor, sc.mscaleAllDim) : 1;
  const b = ctx.attnBias;
  return { attention: { kind: 'mla', qkNorm: 'none', bias: b, outBias: b, clipQkv: null, mla, softmaxScale: (m * m) / Math.sqrt(headDim) }, headDim };
}

/** Routed experts with softmax top-k routing and no shared experts (what the family's moe hook starts from). */
export function readRoutedMoe(cfg: RawConfig, arch: string, def: ArchDefaults, widthKey: string): MoeSpec {
  const numExperts = readInt(cfg, EXPERT_COUNT_KEYS, undefined, 1, arch);
  const topK = readInt(cfg, 'num_experts_per_tok', undefined, 1, arch);
  if (topK > numExperts) throw new ConfigError('num_experts_per_tok', `num_experts_per_tok (${topK}) exceeds the number of experts (${numExperts})`);
  const expertIntermediate = readInt(cfg, widthKey, undefined, 1, `${arch} experts`);
  const normTopkProb = def.alwaysNormTopk ? true : readBool(cfg, 'norm_topk_prob', def.normTopkProb);
  return {
    numExperts, topK, expertIntermediate, normTopkProb, scoring: 'softmax', nGroup: 1, topkGroup: 1,
    routedScalingFactor: 1, hasCorrectionBias: false, sharedExperts: null,
  };
}

/** The same value for every layer. */
export const everyLayer = <T>(numLayers: number, v: T): T[] => Array.from({ length: numLayers }, () => v);

/** Qwen's pattern: MoE every `decoder_sparse_step` layers (1-based), except the `mlp_only_layers`. */
export function sparseStepKinds(cfg: RawConfig, numLayers: number): ('moe' | 'dense')[] {
  const mlpOnly = new Set(readLayerList(cfg, 'mlp_only_layers', numLayers));
  const step = readInt(cfg, 'decoder_sparse_step', 1);
  return Array.from({ length: numLayers }, (_, i) => (!mlpOnly.has(i) && (i + 1) % step === 0 ? 'moe' : 'dense'));
}

/** Qwen's window: null unless `use_sliding_window`, then `sliding_window` (default 4096). */
export function qwenSlidingWindow(cfg: RawConfig): number | null {
  return readBool(cfg, 'use_sliding_window', false) ? readInt(cfg, 'sliding_window', SLIDING_WINDOW_DEFAULT) : null;
}

/** `key` when present and not null (a number > 0), else null. */
export function optionalNum(cfg: RawConfig, key: string): number | null {
  return cfg[key] !== undefined && cfg[key] !== null ? readNum(cfg, key) : null;
}
