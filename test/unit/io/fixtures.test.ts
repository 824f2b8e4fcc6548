// Reading the real Hugging Face fixtures from ../shared: the single-file qwen3_moe model and the 4-shard demo model.
// Counts and shapes come from each config.json; bf16 values are checked against field arithmetic and transformers' hidden.0.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/engine/io/checkpoint.ts';
import { decodeF32, decodeInt } from '../../../src/engine/io/dtype.ts';
import { openSafetensors } from '../../../src/engine/io/safetensors.ts';
import { fileSource } from '../../../src/node/file-source.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { recordingFolder } from './helpers.ts';

// The repository's own copies (CI and users have no ../shared).
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const QWEN = join(ROOT, 'test/fixtures/qwen3_moe');
const DEMO = join(ROOT, 'public/models/usaf-demo-moe');

interface QwenConfig {
  num_hidden_layers: number; num_experts: number; hidden_size: number; moe_intermediate_size: number;
  num_attention_heads: number; num_key_value_heads: number; head_dim: number; vocab_size: number;
}
const config = (dir: string): QwenConfig => JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as QwenConfig;

/** Qwen3-MoE checkpoint names and shapes, from the config alone. */
function expectedQwen3Moe(c: QwenConfig): Map<string, number[]> {
  const m = new Map<string, number[]>([
    ['model.embed_tokens.weight', [c.vocab_size, c.hidden_size]], ['lm_head.weight', [c.vocab_size, c.hidden_size]],
    ['model.norm.weight', [c.hidden_size]],
  ]);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    m.set(`${p}input_layernorm.weight`, [c.hidden_size]).set(`${p}post_attention_layernorm.weight`, [c.hidden_size]);
    m.set(`${p}self_attn.q_proj.weight`, [c.num_attention_heads * c.head_dim, c.hidden_size]);
    m.set(`${p}self_attn.k_proj.weight`, [c.num_key_value_heads * c.head_dim, c.hidden_size]);
    m.set(`${p}self_attn.v_proj.weight`, [c.num_key_value_heads * c.head_dim, c.hidden_size]);
    m.set(`${p}self_attn.o_proj.weight`, [c.hidden_size, c.num_attention_heads * c.head_dim]);
    m.set(`${p}self_attn.q_norm.weight`, [c.head_dim]).set(`${p}self_attn.k_norm.weight`, [c.head_dim]);
    m.set(`${p}mlp.gate.weight`, [c.num_experts, c.hidden_size]);
    for (let e = 0; e < c.num_experts; e++) {
      m.set(`${p}mlp.experts.${e}.gate_proj.weight`, [c.moe_intermediate_size, c.hidden_size]);
      m.set(`${p}mlp.experts.${e}.up_proj.weight`, [c.moe_intermediate_size, c.hidden_size]);
      m.set(`${p}mlp.experts.${e}.down_proj.weight`, [c.hidden_size, c.moe_intermediate_size]);
    }
  }
  return m;
}

/** bf16 → number by reading the u16 with a DataView and applying sign * (1 + m/128) * 2^(e - 127). */
function manualBf16(bytes: Uint8Array): number[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.byteLength / 2 }, (_, i) => {
    const b = dv.getUint16(2 * i, true);
    const sign = b >> 15 ? -1 : 1;
    const e = (b >> 7) & 0xff;
    const m = b & 0x7f;
    if (e === 0xff) return m ? NaN : sign * Infinity;
    return e === 0 ? sign * (m / 128) * 2 ** -126 : sign * (1 + m / 128) * 2 ** (e - 127);
  });
}

describe('qwen3_moe fixture (single file)', () => {
  it('has every tensor the config implies, all bf16 with the right shapes', async () => {
    const ckpt = await openCheckpoint(nodeFolder(QWEN));
    const want = expectedQwen3Moe(config(QWEN));
    expect(ckpt.tensors.size).toBe(want.size);
    for (const [name, shape] of want) expect(ckpt.tensors.get(name), name).toMatchObject({ dtype: 'BF16', shape });
    expect(ckpt.files.get('model.safetensors')!.metadata).toEqual({ format: 'pt' });

    const name = 'model.layers.1.mlp.gate.weight';
    const bytes = await ckpt.readTensor(name);
    const f = ckpt.files.get('model.safetensors')!;
    const t = ckpt.tensors.get(name)!;
    const disk = readFileSync(join(QWEN, 'model.safetensors'));
    expect(bytes).toEqual(new Uint8Array(disk.subarray(f.dataStart + t.begin, f.dataStart + t.end)));
    const decoded = Array.from(decodeF32('BF16', bytes));
    expect(decoded).toEqual(manualBf16(bytes));
    expect(decoded.some((v) => v !== 0)).toBe(true);
    await ckpt.close();
  });

  it('embedding rows decode to exactly transformers\' hidden.0 for the reference input_ids', async () => {
    const ckpt = await openCheckpoint(nodeFolder(QWEN));
    const ref = await openSafetensors(fileSource(join(QWEN, 'reference.safetensors')));
    const hidden = config(QWEN).hidden_size;
    const emb = decodeF32('BF16', await ckpt.readTensor('model.embed_tokens.weight'));
    const ids = decodeInt(ref.tensors.get('input_ids')!.dtype, await ref.readTensor('input_ids'));
    const h0 = decodeF32('F32', await ref.readTensor('hidden.0'));
    expect(h0.length).toBe(ids.length * hidden);
    const gathered = new Float32Array(h0.length);
    Array.from(ids).forEach((id, i) => gathered.set(emb.subarray(id * hidden, (id + 1) * hidden), i * hidden));
    expect(gathered).toEqual(h0);
    await Promise.all([ckpt.close(), ref.source.close?.()]);
  });
});

describe('usaf-demo-moe (4 shards + index)', () => {
  const index = (): { metadata: { total_size: number }; weight_map: Record<string, string> } =>
    JSON.parse(readFileSync(join(DEMO, 'model.safetensors.index.json'), 'utf8')) as never;

  it('opens every shard, matches the index and the config, and reads only headers on open', async () => {
    const folder = recordingFolder(nodeFolder(DEMO));
    const ckpt = await openCheckpoint(folder);
    const { metadata, weight_map: weightMap } = index();
    const want = expectedQwen3Moe(config(DEMO));
    expect(ckpt.files.size).toBe(4);
    expect(ckpt.tensors.size).toBe(want.size);
    expect(Object.keys(weightMap).length).toBe(want.size);
    let total = 0;
    for (const [name, shape] of want) {
      expect(ckpt.tensors.get(name), name).toMatchObject({ dtype: 'BF16', shape, file: weightMap[name] });
      total += ckpt.tensors.get(name)!.byteLength;
    }
    expect(total).toBe(metadata.total_size);

    for (const [shard, f] of ckpt.files) {
      expect(folder.sources.get(shard)!.calls).toEqual([{ offset: 0, length: 8 }, { offset: 8, length: f.headerSize }]);
    }
    const name = 'model.layers.7.self_attn.v_proj.weight';
    const t = ckpt.tensors.get(name)!;
    const src = folder.sources.get(t.file)!;
    src.calls.length = 0;
    const bytes = await ckpt.readTensor(name);
    expect(src.calls).toEqual([{ offset: ckpt.files.get(t.file)!.dataStart + t.begin, length: t.byteLength }]);
    expect(Array.from(decodeF32('BF16', bytes))).toEqual(manualBf16(bytes));

    src.calls.length = 0;
    const part = await ckpt.readTensorRange(name, 1000, 64);
    expect(src.calls).toEqual([{ offset: ckpt.files.get(t.file)!.dataStart + t.begin + 1000, length: 64 }]);
    expect(part).toEqual(bytes.subarray(1000, 1064));
    await ckpt.close();
  });
});

describe('node sources', () => {
  it('fileSource reads exact ranges, rejects reads past the end, and reopens after close', async () => {
    const path = join(DEMO, 'model-00004-of-00004.safetensors');
    const disk = readFileSync(path);
    const src = fileSource(path);
    expect(src.name).toBe('model-00004-of-00004.safetensors');
    expect(await src.size()).toBe(disk.byteLength);
    expect(await src.read(1234, 777)).toEqual(new Uint8Array(disk.subarray(1234, 2011)));
    await expect(src.read(disk.byteLength - 4, 8)).rejects.toThrow(/runs past the end/);
    await src.close!();
    expect(await src.read(disk.byteLength - 3, 3)).toEqual(new Uint8Array(disk.subarray(disk.byteLength - 3)));
    await src.close!();
  });

  it('nodeFolder gives null for a missing file and refuses paths leaving the folder', async () => {
    const folder = nodeFolder(DEMO);
    expect(await folder.open('nope.safetensors')).toBeNull();
    expect(await folder.open('config.json/x')).toBeNull();
    await expect(folder.open('../demo/config.json')).rejects.toThrow(/leaves the folder/);
  });
});
