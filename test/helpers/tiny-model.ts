// Tiny random Qwen3-MoE checkpoints for tests: config.json + model.safetensors (bf16, seeded) in a temp dir, in the config
// variants real users have (tied embeddings, dense layers, norm_topk_prob, Hub vs transformers-5 keys, fused experts).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeBf16, encodeBf16 } from '../../src/engine/io/dtype.ts';
import { encodeSafetensors, type TensorData } from '../../src/engine/io/safetensors-write.ts';
import { allTensors, parseConfig, type ModelSpec, type TensorRole } from '../../src/engine/model/index.ts';
import { refForward, type RefForwardResult, type RefTensors } from '../../src/engine/ref/model.ts';
import { randint, randn } from './random.ts';

/** The awkward default sizes: hidden 80, head_dim 24, 5 heads / 1 KV head, 6 experts top-3, vocab 97, batch 2 × seq 13. */
export const TINY = {
  hidden: 80, headDim: 24, heads: 5, kvHeads: 1, experts: 6, topK: 3, expertIntermediate: 36, intermediate: 60, vocab: 97,
  layers: 3, batch: 2, seq: 13,
} as const;

export interface TinyModelOptions {
  seed?: number;
  layers?: number;
  /** tie_word_embeddings: no lm_head.weight, the embedding is the LM head. */
  tied?: boolean;
  mlpOnlyLayers?: number[];
  decoderSparseStep?: number;
  /** norm_topk_prob (default true). */
  normTopkProb?: boolean;
  /** 'hub': rope_theta / num_experts / torch_dtype; 'hf5': rope_parameters / num_local_experts / dtype (transformers 5). */
  keys?: 'hub' | 'hf5';
  /** 'fused': experts stored as experts.gate_up_proj [E, 2*IE, H] + experts.down_proj [E, H, IE]. */
  expertLayout?: 'per_expert' | 'fused';
  /** attention_bias: q/k/v/o projections carry biases. */
  attentionBias?: boolean;
  ropeTheta?: number;
  /** Standard deviation of the router weights (default 0.3: top-k margins well above f32 noise). */
  routerStd?: number;
}

export interface TinyModel {
  dir: string;
  config: Record<string, unknown>;
  spec: ModelSpec;
  /** The bf16 values the file holds, decoded, by checkpoint name. */
  tensors: RefTensors;
  ids: Uint32Array; // [batch * seq]
  batch: number;
  seq: number;
  seed: number;
  /** Layer kinds the options imply (worked out here, apart from parseConfig). */
  kinds: ('moe' | 'dense')[];
  dispose(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------------
// config

function configOf(o: TinyModelOptions): Record<string, unknown> {
  const hf5 = o.keys === 'hf5';
  const theta = o.ropeTheta ?? 10000;
  const cfg: Record<string, unknown> = {
    architectures: ['Qwen3MoeForCausalLM'],
    model_type: 'qwen3_moe',
    attention_bias: o.attentionBias ?? false,
    attention_dropout: 0,
    decoder_sparse_step: o.decoderSparseStep ?? 1,
    head_dim: TINY.headDim,
    hidden_act: 'silu',
    hidden_size: TINY.hidden,
    initializer_range: 0.02,
    intermediate_size: TINY.intermediate,
    max_position_embeddings: 64,
    mlp_only_layers: o.mlpOnlyLayers ?? [],
    moe_intermediate_size: TINY.expertIntermediate,
    norm_topk_prob: o.normTopkProb ?? true,
    num_attention_heads: TINY.heads,
    num_experts_per_tok: TINY.topK,
    num_hidden_layers: o.layers ?? TINY.layers,
    num_key_value_heads: TINY.kvHeads,
    rms_norm_eps: 1e-6,
    sliding_window: null,
    tie_word_embeddings: o.tied ?? false,
    use_sliding_window: false,
    vocab_size: TINY.vocab,
  };
  if (hf5) {
    cfg.rope_parameters = { rope_theta: theta, rope_type: 'default' };
    cfg.num_local_experts = TINY.experts;
    cfg.dtype = 'bfloat16';
    cfg.transformers_version = '5.17.0';
  } else {
    cfg.rope_theta = theta;
    cfg.rope_scaling = null;
    cfg.num_experts = TINY.experts;
    cfg.torch_dtype = 'bfloat16';
    cfg.transformers_version = '4.51.0';
  }
  return cfg;
}

function kindsOf(o: TinyModelOptions): ('moe' | 'dense')[] {
  const step = o.decoderSparseStep ?? 1;
  const only = new Set(o.mlpOnlyLayers ?? []);
  return Array.from({ length: o.layers ?? TINY.layers }, (_, i) => (!only.has(i) && (i + 1) % step === 0 ? 'moe' : 'dense'));
}

// ---------------------------------------------------------------------------------------------------------------
// weights

const NORMS = new Set<TensorRole>(['input_norm', 'post_attn_norm', 'final_norm', 'attn.q_norm', 'attn.k_norm']);

/** Values of one tensor: norms 1 + 0.2·N(0,1) (away from their init so mistakes show), the rest N(0, std of its role). */
function values(role: TensorRole, shape: number[], seed: number, routerStd: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  if (NORMS.has(role)) return randn(n, seed, 0.2).map((x) => 1 + x);
  const fanIn = shape[shape.length - 1]!;
  const std = role === 'embed' ? 0.5 : role === 'router' ? routerStd : role.endsWith('_bias') ? 0.1 : 1 / Math.sqrt(fanIn);
  return randn(n, seed, std);
}

/** Writes a tiny model to a fresh temp dir. */
export async function writeTinyModel(o: TinyModelOptions = {}): Promise<TinyModel> {
  const seed = o.seed ?? 1;
  const config = configOf(o);
  const layout = o.expertLayout ?? 'per_expert';
  const spec = parseConfig(config, { expertLayout: layout });
  const tensors: RefTensors = new Map();
  const files: TensorData[] = allTensors(spec, layout).map((e, i) => {
    const data = encodeBf16(values(e.role, e.shape, seed * 7919 + i, o.routerStd ?? 0.3));
    tensors.set(e.name, Float64Array.from(decodeBf16(data)));
    return { name: e.name, dtype: 'BF16', shape: e.shape, data };
  });
  const dir = await mkdtemp(join(tmpdir(), 'usaf-tiny-'));
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeFile(join(dir, 'model.safetensors'), Buffer.concat(encodeSafetensors(files, { format: 'pt' })));
  const { batch, seq } = TINY;
  return {
    dir, config, spec, tensors, batch, seq, seed, kinds: kindsOf(o),
    ids: randint(batch * seq, TINY.vocab, seed + 17),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * A tiny model whose routing is well separated: refForward's smallest top-k margin must be >= minGap, else the model
 * is regenerated with another seed (up to `tries` times). Returns the model and its float64 reference forward.
 */
export async function tinyModelWithMargin(o: TinyModelOptions = {}, minGap = 1e-4, tries = 8): Promise<{ model: TinyModel; ref: RefForwardResult }> {
  const seed0 = o.seed ?? 1;
  for (let i = 0; i < tries; i++) {
    const model = await writeTinyModel({ ...o, seed: seed0 + 101 * i });
    const ref = refForward(model.spec, model.tensors, model.ids, model.batch, model.seq);
    if (ref.minTopkGap >= minGap) return { model, ref };
    await model.dispose();
  }
  throw new Error(`no seed of ${tries} gave top-k margins >= ${minGap}`);
}

// ---------------------------------------------------------------------------------------------------------------
// reference dump

/**
 * Writes `ref` as a reference.safetensors in the HF fixtures' layout: input_ids (I32 [batch, seq]), hidden.i, mlp_input.i
 * ([batch, seq, H]), router_logits.i ([T, E], MoE layers only), logits ([batch, seq, V]), loss ([1]), all F32.
 */
export async function writeReference(path: string, spec: ModelSpec, ref: RefForwardResult, ids: Uint32Array, batch: number, seq: number): Promise<string[]> {
  const T = batch * seq;
  const f32 = (name: string, shape: number[], x: ArrayLike<number>): TensorData =>
    ({ name, dtype: 'F32', shape, data: new Uint8Array(Float32Array.from(x).buffer) });
  const out: TensorData[] = [{ name: 'input_ids', dtype: 'I32', shape: [batch, seq], data: new Uint8Array(Int32Array.from(ids).buffer) }];
  ref.hidden.forEach((h, i) => out.push(f32(`hidden.${i}`, [batch, seq, spec.hidden], h)));
  ref.mlpInput.forEach((h, i) => out.push(f32(`mlp_input.${i}`, [batch, seq, spec.hidden], h)));
  ref.routerLogits.forEach((l, i) => l && out.push(f32(`router_logits.${i}`, [T, spec.moe.numExperts], l)));
  if (ref.logits) out.push(f32('logits', [batch, seq, spec.vocab], ref.logits));
  out.push(f32('loss', [1], [ref.loss]));
  await writeFile(path, Buffer.concat(encodeSafetensors(out)));
  return out.map((t) => t.name).filter((n) => n !== 'input_ids');
}
