// Contract: what one MoE family (a config.json `model_type`) tells the generic model code: registry entry, transformers'
// defaults, how its config's parts are read, and its checkpoint tensor naming. One object per family, in families/<arch>.ts.
import type { RawConfig } from '../config-read.ts';
import type { AttentionSpec, ExpertLayout, MoeSpec, RopeSpec } from '../spec.ts';

export type ArchStatus = 'supported' | 'experimental' | 'planned';

/** The value transformers uses for each optional config.json key when the key is absent (its configuration class). */
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

/** What the attention hook gets: the dims and fields every family reads the same way. */
export interface AttentionContext {
  hidden: number;
  numHeads: number;
  /** `attention_bias` (default false). */
  attnBias: boolean;
  rope: RopeSpec;
}

/** Checkpoint names of the MoE block of layer L: `model.layers.L.<moeBlock>.experts.E.<proj>.weight`, shared MLP beside. */
export interface TensorNaming {
  moeBlock(layout: ExpertLayout): string;
  /** gate, up, down projection names of one routed expert (per-expert layout). */
  expertProjections(layout: ExpertLayout): readonly [gate: string, up: string, down: string];
  /** Block name of the shared MLP (null: the family has none). Qwen2-MoE's sigmoid gate is `shared_expert_gate`. */
  sharedBlock: string | null;
}

export interface FamilyAdapter<A extends string = string> {
  /** config.json `model_type`. */
  arch: A;
  displayName: string;
  status: ArchStatus;
  /** What sets the family apart, one line for the UI. */
  summary: string;
  /** Published Hub checkpoints of this family. */
  examples: readonly string[];
  defaults: ArchDefaults;
  /** RoPE rotates adjacent pairs (DeepSeek `rope_interleave`) instead of halves. */
  ropeInterleave(cfg: RawConfig): boolean;
  attention(cfg: RawConfig, ctx: AttentionContext): { attention: AttentionSpec; headDim: number };
  /** Key of the routed-expert width. */
  expertWidthKey: 'intermediate_size' | 'moe_intermediate_size';
  /** Routing and shared experts beyond softmax top-k (`base` has those read generically). */
  moe(cfg: RawConfig, base: MoeSpec): MoeSpec;
  /** 'moe' | 'dense' for each layer index. */
  layerKinds(cfg: RawConfig, numLayers: number): ('moe' | 'dense')[];
  /** Sliding-attention window of each layer (null = full attention). */
  windows(cfg: RawConfig, numLayers: number): (number | null)[];
  /** The dense MLP width is the expert width (families with no dense layers) instead of `intermediate_size`. */
  denseWidthIsExpertWidth: boolean;
  /** Multi-token-prediction layers stored after the last layer (DeepSeek num_nextn_predict_layers). */
  mtpLayers(cfg: RawConfig): number;
  naming: TensorNaming;
}

/** Types an adapter object, keeping its `arch` literal (for ArchName). */
export function defineFamily<const A extends string>(adapter: FamilyAdapter<A>): FamilyAdapter<A> {
  return adapter;
}

/** The naming every family shares in transformers' own layout: `mlp.experts.E.{gate,up,down}_proj`. */
export const HF_NAMING: TensorNaming = {
  moeBlock: () => 'mlp',
  expertProjections: () => ['gate_proj', 'up_proj', 'down_proj'],
  sharedBlock: null,
};
