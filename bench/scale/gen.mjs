// A synthetic Qwen3-30B-A3B checkpoint in Hub layout: the real config (src/presets/configs/Qwen3-30B-A3B.json) with
// num_hidden_layers cut to `layers`, the real tensor names, shapes and dtype (bf16), several shards + index, a WordLevel
// tokenizer.json covering the whole vocabulary, and random values from a seeded xorshift generator, written tensor by
// tensor in chunks (host memory: one chunk, never a tensor or a shard). `small` keeps every width but the number of
// experts (8) and the vocabulary (8,192): for developing the rehearsal, never reported as the flagship's width.

import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
export const FLAGSHIP_CONFIG = join(ROOT, 'src/presets/configs/Qwen3-30B-A3B.json');
const CHUNK = 1 << 22; // bf16 values per write (8 MiB)

/** config.json of the synthetic model. */
export function scaleConfig({ layers, small }) {
  const c = JSON.parse(readFileSync(FLAGSHIP_CONFIG, 'utf8'));
  c.num_hidden_layers = layers;
  c.max_window_layers = layers;
  if (small) {
    c.num_experts = 8;
    c.vocab_size = 8192;
    c.bos_token_id = 8192 - 3;
    c.eos_token_id = 8192 - 1;
  }
  return c;
}

/** [name, shape, kind] in the Hub checkpoint's order; kind picks the value distribution. */
export function tensorList(c) {
  const H = c.hidden_size;
  const D = c.head_dim;
  const out = [['model.embed_tokens.weight', [c.vocab_size, H], 'w']];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    out.push([`${p}.input_layernorm.weight`, [H], 'norm']);
    for (let e = 0; e < c.num_experts; e++) {
      out.push([`${p}.mlp.experts.${e}.down_proj.weight`, [H, c.moe_intermediate_size], 'w']);
      out.push([`${p}.mlp.experts.${e}.gate_proj.weight`, [c.moe_intermediate_size, H], 'w']);
      out.push([`${p}.mlp.experts.${e}.up_proj.weight`, [c.moe_intermediate_size, H], 'w']);
    }
    out.push([`${p}.mlp.gate.weight`, [c.num_experts, H], 'w']);
    out.push([`${p}.post_attention_layernorm.weight`, [H], 'norm']);
    out.push([`${p}.self_attn.k_norm.weight`, [D], 'norm']);
    out.push([`${p}.self_attn.k_proj.weight`, [c.num_key_value_heads * D, H], 'w']);
    out.push([`${p}.self_attn.o_proj.weight`, [H, c.num_attention_heads * D], 'w']);
    out.push([`${p}.self_attn.q_norm.weight`, [D], 'norm']);
    out.push([`${p}.self_attn.q_proj.weight`, [c.num_attention_heads * D, H], 'w']);
    out.push([`${p}.self_attn.v_proj.weight`, [c.num_key_value_heads * D, H], 'w']);
  }
  out.push(['model.norm.weight', [H], 'norm']);
  out.push(['lm_head.weight', [c.vocab_size, H], 'w']);
  return out;
}

const numel = (shape) => shape.reduce((a, b) => a * b, 1);

/**
 * Seeded xorshift32 filling bf16 bit patterns: weights |x| in [2^-9, 2^-5) with a random sign and mantissa (about the
 * scale of a trained model's), norms in [1, 1.0547).
 */
function makeRng(seed) {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
  return function fill(u16, kind) {
    const n = u16.length;
    for (let i = 0; i < n; i += 2) {
      s ^= s << 13; s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5; s >>>= 0;
      const lo = s & 0xffff;
      const hi = s >>> 16;
      if (kind === 'norm') {
        u16[i] = 0x3f80 | (lo & 0x7);
        if (i + 1 < n) u16[i + 1] = 0x3f80 | (hi & 0x7);
      } else {
        // sign | exponent 118..121 | 7-bit mantissa
        u16[i] = (lo & 0x8000) | ((118 + ((lo >>> 7) & 3)) << 7) | (lo & 0x7f);
        if (i + 1 < n) u16[i + 1] = (hi & 0x8000) | ((118 + ((hi >>> 7) & 3)) << 7) | (hi & 0x7f);
      }
    }
  };
}

function safetensorsHeader(entries) {
  const json = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [name, shape] of entries) {
    const n = numel(shape) * 2;
    json[name] = { dtype: 'BF16', shape, data_offsets: [off, off + n] };
    off += n;
  }
  let text = JSON.stringify(json);
  text += ' '.repeat((8 - ((8 + Buffer.byteLength(text)) % 8)) % 8);
  const h = Buffer.alloc(8 + Buffer.byteLength(text));
  h.writeBigUInt64LE(BigInt(Buffer.byteLength(text)), 0);
  h.write(text, 8);
  return h;
}

/** A WordLevel tokenizer over the whole vocabulary: "w<id>" for every id, Qwen's two special tokens at their ids. */
function tokenizerFiles(c) {
  const specials = new Map([[c.bos_token_id, '<|endoftext|>'], [c.eos_token_id, '<|im_end|>']]);
  const parts = [];
  for (let i = 0; i < c.vocab_size; i++) parts.push(`${JSON.stringify(specials.get(i) ?? (i === 0 ? '<unk>' : `w${i}`))}:${i}`);
  const added = [...specials].map(([id, content]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const tok = `{"version":"1.0","truncation":null,"padding":null,"added_tokens":${JSON.stringify(added)},"normalizer":null,`
    + `"pre_tokenizer":{"type":"WhitespaceSplit"},"post_processor":null,"decoder":null,`
    + `"model":{"type":"WordLevel","vocab":{${parts.join(',')}},"unk_token":"<unk>"}}`;
  const cfg = { tokenizer_class: 'PreTrainedTokenizerFast', eos_token: '<|im_end|>', bos_token: null, pad_token: '<|endoftext|>', unk_token: '<unk>', model_max_length: 131072 };
  return { 'tokenizer.json': tok, 'tokenizer_config.json': JSON.stringify(cfg, null, 2) };
}

/**
 * Writes the checkpoint into `dir` (created); shards hold at most `shardBytes` of tensor data. Returns
 * {files, bytes, tensors, params}.
 */
export function generateCheckpoint(dir, { layers, small = false, seed = 1, shardBytes = small ? 100e6 : 1.5e9 }) {
  mkdirSync(dir, { recursive: true });
  const c = scaleConfig({ layers, small });
  const list = tensorList(c);
  const shards = [];
  let cur = [];
  let curBytes = 0;
  for (const t of list) {
    const n = numel(t[1]) * 2;
    if (cur.length && curBytes + n > shardBytes) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += n;
  }
  shards.push(cur);
  const fill = makeRng(seed);
  const buf = new Uint16Array(CHUNK);
  const weightMap = {};
  let total = 0;
  const files = [];
  shards.forEach((entries, s) => {
    const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const fd = openSync(join(dir, name), 'w');
    try {
      writeSync(fd, safetensorsHeader(entries));
      for (const [tname, shape, kind] of entries) {
        weightMap[tname] = name;
        let left = numel(shape);
        total += left * 2;
        while (left > 0) {
          const m = Math.min(left, CHUNK);
          const view = buf.subarray(0, m);
          fill(view, kind);
          writeSync(fd, new Uint8Array(view.buffer, 0, m * 2));
          left -= m;
        }
      }
    } finally {
      closeSync(fd);
    }
    files.push(name);
  });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: c.bos_token_id, eos_token_id: c.eos_token_id, do_sample: false }, null, 2));
  for (const [f, text] of Object.entries(tokenizerFiles(c))) writeFileSync(join(dir, f), text);
  return { files, bytes: total, tensors: list.length, params: total / 2, config: c };
}

/** Training text in the tokenizer's words: `tokens` random ids below the specials, in documents of `perDoc`. */
export function writeDataset(path, c, { tokens = 256, perDoc = 64, seed = 7 } = {}) {
  let s = seed >>> 0 || 1;
  const lines = [];
  for (let d = 0; d < tokens / perDoc; d++) {
    const words = [];
    for (let i = 0; i < perDoc; i++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      words.push(`w${1 + (s % (c.bos_token_id - 1))}`);
    }
    lines.push(JSON.stringify({ text: words.join(' ') }));
  }
  writeFileSync(path, lines.join('\n') + '\n');
}

if (import.meta.main || process.argv[1] === import.meta.filename) {
  const [dir, layers = '2'] = process.argv.slice(2);
  if (!dir) {
    console.error('usage: node bench/scale/gen.mjs DIR [layers]   (SCALE_SMALL=1: 8 experts, vocab 8,192)');
    process.exit(2);
  }
  const t0 = Date.now();
  const r = generateCheckpoint(dir, { layers: Number(layers), small: process.env.SCALE_SMALL === '1' });
  console.log(JSON.stringify({ dir, files: r.files.length, bytes: r.bytes, tensors: r.tensors, sec: (Date.now() - t0) / 1000 }));
}
