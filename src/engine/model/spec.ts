// Contract: the normalized, architecture-independent description of a supported MoE decoder (ModelSpec).
// Pure data types only; built by parseConfig (config.ts), tensor names/shapes listed by tensors.ts.
//
// Dimension legend (used in every shape comment of this folder):
//   H   hidden size                      I   dense MLP intermediate size
//   IE  routed-expert intermediate size  IS  shared-expert intermediate size
//   E   routed experts per MoE layer     K   experts selected per token (top-k)
//   V   vocabulary size                  NH  attention (query) heads
//   NKV key/value heads                  D   head dim (for MLA: qk head dim = nope + rope)
//   QR  MLA q_lora_rank                  KR  MLA kv_lora_rank
//   DR  MLA qk_rope_head_dim             DN  MLA qk_nope_head_dim     DV  MLA v_head_dim
// Linear weights are stored [out, in] (PyTorch nn.Linear convention).

import type { FamilyArch } from './families/index.ts';

/** config.json `model_type` values this engine understands: one per adapter in families/. */
export type ArchName = FamilyArch;

/** How routed-expert weights are stored in a checkpoint. */
export type ExpertLayout = 'per_expert' | 'fused';

/** RoPE frequency scaling (from `rope_scaling` / `rope_parameters`); null when rope_type is 'default'. */
export interface RopeScaling {
  /** 'yarn' | 'linear' | 'dynamic' (others are rejected by parseConfig). */
  type: 'yarn' | 'linear' | 'dynamic';
  factor: number;
  /** original_max_position_embeddings (falls back to max_position_embeddings). */
  originalMaxPos: number;
  /** YaRN ramp bounds (transformers defaults 32 / 1). */
  betaFast: number;
  betaSlow: number;
  /** YaRN attention-magnitude factors (defaults 1 / 0; 0 means "not set"). */
  mscale: number;
  mscaleAllDim: number;
}

export interface RopeSpec {
  theta: number;
  /** true: rotate adjacent pairs (2i, 2i+1) (DeepSeek `rope_interleave`); false: rotate halves (i, i+D/2). */
  interleave: boolean;
  /** Rotated width per head when only part of the head is rotated (MLA: DR); absent = whole head (D). */
  partialDim?: number;
  scaling: RopeScaling | null;
}

export interface MlaSpec {
  /** null: queries use a plain q_proj [NH*D, H] instead of q_a/q_b. */
  qLoraRank: number | null;
  kvLoraRank: number;
  qkRopeHeadDim: number;
  qkNopeHeadDim: number;
  vHeadDim: number;
}

export interface AttentionSpec {
  kind: 'mha' | 'mla';
  /** RMSNorm on q/k: 'per_head' over D (Qwen3), 'full' over the whole projection NH*D / NKV*D (OLMoE). */
  qkNorm: 'none' | 'per_head' | 'full';
  /** q/k/v projections carry a bias (Qwen2-MoE qkv_bias, attention_bias elsewhere; MLA: q_a/q/kv_a). */
  bias: boolean;
  /** o_proj carries a bias (attention_bias on Qwen3/OLMoE/DeepSeek). */
  outBias: boolean;
  /** OLMoE clip_qkv: clamp q, k, v to [-c, c]; null = no clipping. */
  clipQkv: number | null;
  mla?: MlaSpec;
  /** Multiplier applied to q·k before softmax (D^-0.5; MLA with YaRN also × mscale²). */
  softmaxScale: number;
}

export interface SharedExpertSpec {
  /** Number of shared experts fused into one MLP (DeepSeek n_shared_experts; Qwen2-MoE: 1). */
  count: number;
  /** IS: width of the (fused) shared MLP. */
  intermediate: number;
  /** Output multiplied by sigmoid(shared_expert_gate · x) (Qwen2-MoE). */
  gated: boolean;
}

export interface MoeSpec {
  numExperts: number;
  topK: number;
  expertIntermediate: number;
  /** Renormalize the top-k weights to sum to 1. */
  normTopkProb: boolean;
  scoring: 'softmax' | 'sigmoid';
  /** Group-limited routing (DeepSeek): E experts in nGroup groups, pick topkGroup groups first. 1/1 = off. */
  nGroup: number;
  topkGroup: number;
  /** Multiplier applied to the routed-expert weights (DeepSeek 2.5; 1 elsewhere). */
  routedScalingFactor: number;
  /** Router carries `e_score_correction_bias` [E] added to scores for selection only (DeepSeek-V3). */
  hasCorrectionBias: boolean;
  sharedExperts: SharedExpertSpec | null;
}

export type TensorRole =
  | 'embed' | 'final_norm' | 'lm_head'
  | 'input_norm' | 'post_attn_norm'
  | 'attn.q' | 'attn.k' | 'attn.v' | 'attn.o'
  | 'attn.q_bias' | 'attn.k_bias' | 'attn.v_bias' | 'attn.o_bias'
  | 'attn.q_norm' | 'attn.k_norm'
  | 'attn.q_a' | 'attn.q_a_bias' | 'attn.q_a_norm' | 'attn.q_b'
  | 'attn.kv_a' | 'attn.kv_a_bias' | 'attn.kv_a_norm' | 'attn.kv_b'
  | 'router' | 'router.bias_correction'
  | 'expert.gate' | 'expert.up' | 'expert.down'
  | 'expert.gate_up_fused' | 'expert.down_fused'
  | 'shared.gate' | 'shared.up' | 'shared.down' | 'shared.expert_gate'
  | 'dense.gate' | 'dense.up' | 'dense.down';

export interface TensorEntry {
  role: TensorRole;
  /** Checkpoint name, e.g. `model.layers.3.mlp.experts.7.up_proj.weight`. */
  name: string;
  shape: number[];
  /** Routed-expert index for per-expert roles ('expert.gate' | 'expert.up' | 'expert.down'). */
  expert?: number;
}

export interface LayerSpec {
  index: number;
  mlp: 'moe' | 'dense';
  /** Sliding attention window for this layer, null = full causal attention. */
  slidingWindow: number | null;
  /** Every tensor of the layer, in the spec's expertLayout. */
  tensors: TensorEntry[];
}

export interface ModelSpec {
  arch: ArchName;
  hidden: number;
  numLayers: number;
  vocab: number;
  numHeads: number;
  numKvHeads: number;
  /** D (MLA: DN + DR; the value width is attention.mla.vHeadDim). */
  headDim: number;
  rmsEps: number;
  maxPos: number;
  rope: RopeSpec;
  tieEmbeddings: boolean;
  attention: AttentionSpec;
  moe: MoeSpec;
  /** I: width of the dense MLP layers (only used by layers with mlp 'dense'). */
  denseIntermediate: number;
  /** Expert storage the `layers[].tensors` names follow (parseConfig default 'per_expert'). */
  expertLayout: ExpertLayout;
  layers: LayerSpec[];
  /** Multi-token-prediction layers stored after the last layer (DeepSeek num_nextn_predict_layers); not part of the spec's tensors. */
  mtpLayers: number;
  /** `quantization_config.quant_method` (e.g. 'fp8' with extra `*_scale_inv` tensors not listed here), null = plain weights. */
  quantization: string | null;
  /** `torch_dtype` / `dtype` as declared by the config, null if absent. */
  dtype: string | null;
}
