// Synthetic models for benchmarks: a published config (by name, or a config.json path) cut to its top N layers, and a
// Checkpoint whose tensors are random bf16 made on request (nothing downloaded or stored). Benchmark values only: norms
// are 1, every other weight ±[2^-7, 2^-6) with random mantissa and sign.

import { readFile } from 'node:fs/promises';
import type { Checkpoint } from '../engine/io/checkpoint.ts';
import type { TensorInfo } from '../engine/io/safetensors.ts';
import { parseConfig } from '../engine/model/config.ts';
import type { ModelSpec } from '../engine/model/spec.ts';
import { allTensors } from '../engine/model/tensors.ts';

const QWEN3_MOE = {
  architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_act: 'silu', attention_bias: false, decoder_sparse_step: 1,
  mlp_only_layers: [], norm_topk_prob: true, rms_norm_eps: 1e-6, rope_scaling: null, sliding_window: null, use_sliding_window: false,
  tie_word_embeddings: false,
};

/** Hub config.json keys of the models `--synthetic` knows by name. */
export const SYNTHETIC_CONFIGS: Record<string, Record<string, unknown>> = {
  'qwen3-30b-a3b': {
    ...QWEN3_MOE, hidden_size: 2048, head_dim: 128, intermediate_size: 6144, max_position_embeddings: 40960, moe_intermediate_size: 768,
    num_attention_heads: 32, num_key_value_heads: 4, num_experts: 128, num_experts_per_tok: 8, num_hidden_layers: 48, rope_theta: 1e6, vocab_size: 151936,
  },
  // the demo model's shape (usaf-demo-moe), small enough for SwiftShader
  demo: {
    ...QWEN3_MOE, hidden_size: 256, head_dim: 64, intermediate_size: 512, max_position_embeddings: 2048, moe_intermediate_size: 128,
    num_attention_heads: 4, num_key_value_heads: 2, num_experts: 16, num_experts_per_tok: 4, num_hidden_layers: 8, rope_theta: 10000, vocab_size: 4096,
  },
};

/** The named (or config.json) model with only its top `layers` layers (all when null). */
export async function syntheticSpec(nameOrPath: string, layers: number | null): Promise<ModelSpec> {
  const known = SYNTHETIC_CONFIGS[nameOrPath.toLowerCase()];
  if (!known && !nameOrPath.endsWith('.json')) throw new Error(`--synthetic: "${nameOrPath}" is neither ${Object.keys(SYNTHETIC_CONFIGS).join(', ')} nor a config.json`);
  const json = known ?? (JSON.parse(await readFile(nameOrPath, 'utf8')) as Record<string, unknown>);
  const total = Number(json.num_hidden_layers);
  return parseConfig({ ...json, num_hidden_layers: layers === null ? total : Math.min(layers, total) });
}

/** A Checkpoint of random bf16 tensors under the spec's names (deterministic per name); `zeros`: all zero (the cost model's, where values never matter). */
export function syntheticCheckpoint(spec: ModelSpec, zeros = false): Checkpoint {
  const tensors = new Map<string, TensorInfo>();
  for (const e of allTensors(spec)) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    tensors.set(e.name, { name: e.name, dtype: 'BF16', shape: e.shape, begin: 0, end: 2 * n, byteLength: 2 * n, file: 'synthetic' });
  }
  const read = async (name: string): Promise<Uint8Array<ArrayBuffer>> => {
    const info = tensors.get(name);
    if (!info) throw new Error(`synthetic checkpoint has no tensor "${name}"`);
    const words = new Uint32Array(Math.ceil(info.byteLength / 4));
    if (zeros) return new Uint8Array(words.buffer, 0, info.byteLength);
    if (/norm/.test(name)) words.fill(0x3f803f80); // 1.0, 1.0
    else {
      let x = 0x9e3779b9;
      for (let i = 0; i < name.length; i++) x = Math.imul(x ^ name.charCodeAt(i), 0x01000193) >>> 0;
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5; // xorshift32
        words[i] = ((x & 0x807f807f) | 0x3c003c00) >>> 0; // two bf16: sign, exponent 2^-7, random mantissa
      }
    }
    return new Uint8Array(words.buffer, 0, info.byteLength);
  };
  return {
    tensors,
    files: new Map(),
    readTensor: read,
    readTensorRange: async (name, off, len) => (await read(name)).subarray(off, off + len),
    close: async () => {},
  };
}
