// Contract: parseConfig's key styles, transformers defaults, layer patterns and errors; detectExpertLayout,
// withExpertLayout and the registry. Inputs are small edits of the fixture / published configs.
import { describe, expect, it } from 'vitest';
import {
  ConfigError, countParams, parseConfig, UnsupportedModelError, withExpertLayout,
} from '../../../src/engine/model/config.ts';
import { ARCHITECTURES, SUPPORTED_MODEL_TYPES } from '../../../src/engine/model/registry.ts';
import { allTensors, detectExpertLayout, layerTensors } from '../../../src/engine/model/tensors.ts';
import { loadJson } from './load.ts';

type Cfg = Record<string, unknown>;
const cfg = (rel: string): Cfg => structuredClone(loadJson(rel)) as Cfg;
const qwen30b = () => cfg('./configs/Qwen3-30B-A3B.json');
const without = (c: Cfg, ...keys: string[]): Cfg => {
  const out = { ...c };
  for (const k of keys) delete out[k];
  return out;
};

/** What transformers 5 `save_pretrained` writes for a Hub-style config. */
function toTransformers5(c: Cfg): Cfg {
  const out = without(c, 'rope_theta', 'rope_scaling', 'num_experts', 'torch_dtype');
  const scaling = (c.rope_scaling ?? {}) as Cfg;
  const { type, ...rest } = scaling;
  out.rope_parameters = { ...rest, rope_theta: c.rope_theta, rope_type: type ?? 'default' };
  if (c.num_experts !== undefined) out.num_local_experts = c.num_experts;
  out.dtype = c.torch_dtype;
  return out;
}

function throws(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('key styles', () => {
  it('Qwen3-30B-A3B in transformers-5 keys gives the identical spec', () => {
    const t5 = toTransformers5(qwen30b());
    expect(t5.rope_parameters).toEqual({ rope_theta: 1e6, rope_type: 'default' });
    expect(t5.num_local_experts).toBe(128);
    expect(parseConfig(t5)).toEqual(parseConfig(qwen30b()));
  });

  it('DeepSeek-V3 YaRN rope_scaling ≡ rope_parameters', () => {
    const hub = cfg('./configs/DeepSeek-V3.json');
    expect(parseConfig(toTransformers5(hub))).toEqual(parseConfig(hub));
  });

  it('the transformers-5 fixtures read the same in Hub keys', () => {
    for (const name of ['mixtral', 'deepseek_v3']) {
      const t5 = cfg(`./fixtures/${name}.config.json`);
      const rp = t5.rope_parameters as Cfg;
      const hub = { ...without(t5, 'rope_parameters'), rope_theta: rp.rope_theta, rope_scaling: null };
      expect(parseConfig(hub)).toEqual(parseConfig(t5));
    }
  });

  it('rope_parameters nested per layer type', () => {
    const c = { ...qwen30b(), rope_parameters: { full_attention: { rope_theta: 5e5, rope_type: 'default' } } };
    expect(parseConfig(without(c, 'rope_theta')).rope.theta).toBe(5e5);
  });
});

describe('transformers defaults for absent keys', () => {
  it('qwen3_moe: head_dim = hidden/heads, norm_topk_prob false, 4 kv heads, theta 1e4, eps 1e-6', () => {
    const s = parseConfig(without(qwen30b(), 'head_dim', 'norm_topk_prob', 'num_key_value_heads', 'rope_theta', 'rms_norm_eps', 'mlp_only_layers', 'decoder_sparse_step'));
    expect(s.headDim).toBe(2048 / 32);
    expect(s.moe.normTopkProb).toBe(false);
    expect(s.numKvHeads).toBe(4);
    expect(s.rope.theta).toBe(10000);
    expect(s.rmsEps).toBe(1e-6);
    expect(s.layers.every((l) => l.mlp === 'moe')).toBe(true);
  });

  it('mixtral: theta 1e6, eps 1e-5, head_dim null → hidden/heads, kv null → heads', () => {
    const c = without(cfg('./fixtures/mixtral.config.json'), 'rope_parameters', 'rms_norm_eps');
    const s = parseConfig({ ...c, num_key_value_heads: null });
    expect(s.rope.theta).toBe(1e6);
    expect(s.rmsEps).toBe(1e-5);
    expect(s.headDim).toBe(16);
    expect(s.numKvHeads).toBe(4);
  });

  it('olmoe: kv heads default to heads, clip_qkv read when set', () => {
    const s = parseConfig({ ...without(cfg('./configs/OLMoE-1B-7B-0924.json'), 'num_key_value_heads'), clip_qkv: 8 });
    expect(s.numKvHeads).toBe(16);
    expect(s.attention.clipQkv).toBe(8);
  });

  it('qwen2_moe: qkv_bias defaults to true (Hub files have no key)', () => {
    expect(parseConfig(cfg('./configs/Qwen1.5-MoE-A2.7B.json')).attention.bias).toBe(true);
    expect(parseConfig({ ...cfg('./configs/Qwen1.5-MoE-A2.7B.json'), qkv_bias: false }).attention.bias).toBe(false);
  });

  it('deepseek_v3: routing defaults; q_lora_rank null → plain q_proj; no shared experts', () => {
    const base = without(cfg('./configs/DeepSeek-V3.json'), 'n_group', 'topk_group', 'routed_scaling_factor', 'scoring_func', 'first_k_dense_replace');
    const s = parseConfig(base);
    expect(s.moe).toMatchObject({ nGroup: 8, topkGroup: 4, routedScalingFactor: 2.5, scoring: 'sigmoid' });
    expect(s.layers.filter((l) => l.mlp === 'dense')).toHaveLength(3);
    const lite = parseConfig({ ...base, q_lora_rank: null, n_shared_experts: 0 });
    const roles = layerTensors(lite, 5).map((t) => t.role);
    expect(roles).toContain('attn.q');
    expect(roles).not.toContain('attn.q_a');
    expect(roles.some((r) => r.startsWith('shared.'))).toBe(false);
    expect(layerTensors(lite, 5).find((t) => t.role === 'attn.q')!.shape).toEqual([128 * 192, 7168]);
  });
});

describe('layer patterns and optional tensors', () => {
  it('qwen: mlp_only_layers and decoder_sparse_step', () => {
    const s = parseConfig({ ...cfg('./fixtures/qwen3_moe.config.json'), mlp_only_layers: [3], decoder_sparse_step: 2 });
    expect(s.layers.map((l) => l.mlp)).toEqual(['dense', 'moe', 'dense', 'dense']);
    expect(layerTensors(s, 0).filter((t) => t.role.startsWith('dense.')).map((t) => [t.name, t.shape])).toEqual([
      ['model.layers.0.mlp.gate_proj.weight', [96, 64]],
      ['model.layers.0.mlp.up_proj.weight', [96, 64]],
      ['model.layers.0.mlp.down_proj.weight', [64, 96]],
    ]);
  });

  it('deepseek: moe_layer_freq', () => {
    const s = parseConfig({ ...cfg('./fixtures/deepseek_v3.config.json'), moe_layer_freq: 2 });
    expect(s.layers.map((l) => l.mlp)).toEqual(['dense', 'dense', 'moe', 'dense']);
  });

  it('tied embeddings drop lm_head', () => {
    const s = parseConfig({ ...cfg('./fixtures/qwen3_moe.config.json'), tie_word_embeddings: true });
    expect(allTensors(s).some((t) => t.name === 'lm_head.weight')).toBe(false);
    expect(countParams(s).lmHead).toBe(0);
  });

  it('attention_bias adds q/k/v/o biases (qwen3_moe)', () => {
    const s = parseConfig({ ...cfg('./fixtures/qwen3_moe.config.json'), attention_bias: true });
    const b = layerTensors(s, 0).filter((t) => t.name.endsWith('.bias')).map((t) => [t.role, t.shape]);
    expect(b).toEqual([['attn.q_bias', [64]], ['attn.k_bias', [32]], ['attn.v_bias', [32]], ['attn.o_bias', [64]]]);
  });

  it('withExpertLayout re-derives the layer tensors', () => {
    const s = parseConfig(cfg('./fixtures/qwen2_moe.config.json'));
    const f = withExpertLayout(s, 'fused');
    expect(f.expertLayout).toBe('fused');
    expect(f.layers[1]!.tensors.filter((t) => t.role.startsWith('expert.')).map((t) => t.name)).toEqual([
      'model.layers.1.mlp.experts.gate_up_proj', 'model.layers.1.mlp.experts.down_proj',
    ]);
    expect(countParams(f)).toEqual(countParams(s));
  });
});

describe('errors', () => {
  it('unsupported model_type names it and lists the supported ones', () => {
    const e = throws(() => parseConfig({ ...qwen30b(), model_type: 'llama' }));
    expect(e).toBeInstanceOf(UnsupportedModelError);
    expect(e.message).toContain('"llama"');
    for (const t of ['qwen3_moe', 'mixtral', 'olmoe', 'qwen2_moe', 'deepseek_v3']) expect(e.message).toContain(t);
  });

  it('missing required field names the field', () => {
    const e = throws(() => parseConfig(without(qwen30b(), 'hidden_size')));
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).field).toBe('hidden_size');
    expect(e.message).toMatch(/missing required field "hidden_size"/);
    const x = throws(() => parseConfig(without(qwen30b(), 'num_experts')));
    expect(x.message).toMatch(/"num_experts".*"num_local_experts"/);
    expect(throws(() => parseConfig(without(qwen30b(), 'model_type'))).message).toMatch(/"model_type"/);
    expect(throws(() => parseConfig(without(cfg('./configs/DeepSeek-V3.json'), 'kv_lora_rank'))).message).toMatch(/"kv_lora_rank"/);
    // a dense layer needs intermediate_size
    const d = throws(() => parseConfig(without({ ...qwen30b(), mlp_only_layers: [0] }, 'intermediate_size')));
    expect((d as ConfigError).field).toBe('intermediate_size');
  });

  it('invalid values name the field', () => {
    const cases: [Cfg, string, RegExp][] = [
      [{ ...qwen30b(), hidden_size: '2048' }, 'hidden_size', /integer/],
      [{ ...qwen30b(), num_hidden_layers: 0 }, 'num_hidden_layers', /integer ≥ 1/],
      [{ ...qwen30b(), num_experts_per_tok: 129 }, 'num_experts_per_tok', /exceeds/],
      [{ ...qwen30b(), num_key_value_heads: 5 }, 'num_key_value_heads', /multiple/],
      [{ ...qwen30b(), num_local_experts: 64 }, 'num_local_experts', /disagree/],
      [{ ...qwen30b(), mlp_only_layers: [48] }, 'mlp_only_layers', /layer indices/],
      [{ ...qwen30b(), rope_scaling: { type: 'longrope', factor: 4 } }, 'rope_scaling.type', /not supported/],
      [{ ...qwen30b(), rope_scaling: { type: 'yarn' } }, 'rope_scaling.factor', /missing/],
      [{ ...qwen30b(), norm_topk_prob: 'yes' }, 'norm_topk_prob', /true or false/],
      [{ ...qwen30b(), hidden_act: 'gelu' }, 'hidden_act', /not supported/],
      [{ ...cfg('./configs/DeepSeek-V3.json'), n_group: 7 }, 'n_group', /divisible/],
    ];
    for (const [c, field, msg] of cases) {
      const e = throws(() => parseConfig(c));
      expect(e, field).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).field, field).toBe(field);
      expect(e.message, field).toMatch(msg);
      expect(e.message, field).toContain(field.split('.').pop()!);
    }
    expect(throws(() => parseConfig([])).message).toMatch(/JSON object/);
    expect(throws(() => parseConfig(null))).toBeInstanceOf(ConfigError);
  });
});

describe('detectExpertLayout', () => {
  it('recognizes both layouts and rejects mixed or expert-less name lists', () => {
    expect(detectExpertLayout(['model.layers.0.block_sparse_moe.experts.3.w1.weight'])).toBe('per_expert');
    expect(detectExpertLayout(['model.layers.0.mlp.experts.0.gate_proj.weight'])).toBe('per_expert');
    expect(detectExpertLayout(new Set(['model.layers.0.mlp.experts.gate_up_proj', 'model.layers.0.mlp.experts.down_proj']))).toBe('fused');
    expect(() => detectExpertLayout(['model.layers.0.mlp.experts.gate_up_proj', 'model.layers.1.mlp.experts.0.up_proj.weight'])).toThrow(/mixes/);
    expect(() => detectExpertLayout(['model.embed_tokens.weight'])).toThrow(/no routed-expert/);
  });
});

describe('registry', () => {
  it('lists the five supported families with display names', () => {
    expect([...SUPPORTED_MODEL_TYPES].sort()).toEqual(['deepseek_v3', 'mixtral', 'olmoe', 'qwen2_moe', 'qwen3_moe']);
    for (const a of ARCHITECTURES) {
      expect(a.displayName.length).toBeGreaterThan(0);
      expect(a.status).toBe('supported');
    }
  });
});
