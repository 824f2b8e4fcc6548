// The scale rehearsal's faithfulness checker (bench/scale/check.mjs) on tiny random checkpoints written here: a merge
// made by the rule passes; one flipped byte outside the delta's entries, a trained entry left at the original, a
// wrong rounding (truncation instead of nearest-even), a missing tensor and a changed tokenizer each fail it. And the
// generator's tensor list is the one the qwen3_moe family names for Qwen3-30B-A3B's config.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @ts-expect-error plain JavaScript module without types
import { checkFaithful, bf16Rne } from '../../../bench/scale/check.mjs';
// @ts-expect-error plain JavaScript module without types
import { scaleConfig, tensorList } from '../../../bench/scale/gen.mjs';
import { parseConfig } from '../../../src/engine/model/config.ts';
import { allTensors } from '../../../src/engine/model/tensors.ts';

type T = { dtype: string; shape: number[]; data: Uint8Array };

function writeSafetensors(path: string, tensors: Record<string, T>, metadata: Record<string, string>): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const [n, t] of Object.entries(tensors)) {
    header[n] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), ...Object.values(tensors).map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))]));
}

const u8 = (a: Uint16Array | Uint32Array | Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const f32Bits = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0]!;
const bf16Value = (h: number): number => new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;

function hub(dir: string, tensors: Record<string, Uint16Array>, tokenizer = '{"model":{}}'): void {
  mkdirSync(dir, { recursive: true });
  const names = Object.keys(tensors);
  const shards = [names.slice(0, 1), names.slice(1)];
  const weightMap: Record<string, string> = {};
  shards.forEach((ns, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(dir, file), Object.fromEntries(ns.map((n) => [n, { dtype: 'BF16', shape: [tensors[n]!.length], data: u8(tensors[n]!) }])), { format: 'pt' });
    for (const n of ns) weightMap[n] = file;
  });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  writeFileSync(join(dir, 'config.json'), '{"model_type":"qwen3_moe"}');
  writeFileSync(join(dir, 'tokenizer.json'), tokenizer);
}

describe('bench/scale/check.mjs', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const randomBf16 = (n: number) => Uint16Array.from({ length: n }, () => (f32Bits((rand() - 0.5) * 0.1) >>> 16));

  const root = mkdtempSync(join(tmpdir(), 'scale-check-'));
  const original = { 'a.weight': randomBf16(1000), 'b.weight': randomBf16(3000), 'gate.weight': randomBf16(64) };
  const idx = Uint32Array.from([3, 17, 18, 400, 2999]);
  const diff = Float32Array.from(idx, () => (rand() - 0.5) * 0.02);
  const dense = Float32Array.from({ length: 64 }, () => (rand() - 0.5) * 0.01);
  hub(join(root, 'original'), original);
  const deltaPath = join(root, 'delta.safetensors');
  writeSafetensors(deltaPath, {
    'b.weight::diff': { dtype: 'F32', shape: [idx.length], data: u8(diff) },
    'b.weight::indices': { dtype: 'I32', shape: [idx.length], data: u8(idx) },
    'gate.weight::diff': { dtype: 'F32', shape: [64], data: u8(dense) },
  }, { format: 'usaf-delta', version: '2' });

  /** The merged tensors by the rule, computed here with an independent rounding (via f64 → nearest-even on bits). */
  const rne = (x: number): number => {
    const b = f32Bits(Math.fround(x));
    const lower = b >>> 16;
    const rest = b & 0xffff;
    return (rest > 0x8000 || (rest === 0x8000 && (lower & 1)) ? lower + 1 : lower) & 0xffff;
  };
  const merged = (): Record<string, Uint16Array> => {
    const b = original['b.weight'].slice();
    idx.forEach((i, k) => { b[i] = rne(Math.fround(bf16Value(b[i]!) + diff[k]!)); });
    const g = Uint16Array.from(original['gate.weight'], (h, i) => rne(Math.fround(bf16Value(h) + dense[i]!)));
    return { 'a.weight': original['a.weight'].slice(), 'b.weight': b, 'gate.weight': g };
  };
  const check = (name: string, m: Record<string, Uint16Array>, tokenizer?: string) => {
    hub(join(root, name), m, tokenizer);
    return checkFaithful(join(root, 'original'), join(root, name), deltaPath);
  };

  it('rounds to nearest even', () => {
    expect(bf16Rne(1 + 2 ** -8)).toBe(0x3f80); // tie, even below
    expect(bf16Rne(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie, even above
    expect(bf16Rne(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
  });

  it('passes a merge made by the rule', () => {
    const r = check('good', merged());
    expect(r.trained_entries).toBe(idx.length + 64);
    expect(r).toMatchObject({ faithful: true, outside_mismatches: 0, trained_mismatches: 0, trained_tensors: 2 });
  });

  it('fails one flipped byte outside the trained entries', () => {
    const m = merged();
    m['b.weight']![4]! ^= 1;
    expect(check('flip', m)).toMatchObject({ faithful: false, outside_mismatches: 1 });
  });

  it('fails a trained entry left at its original value, and truncation instead of rounding', () => {
    const m = merged();
    m['b.weight']![17] = original['b.weight'][17]!;
    expect(check('left', m).faithful).toBe(false);
    const t = merged();
    let wrong = 0;
    idx.forEach((i, k) => {
      const trunc = f32Bits(Math.fround(bf16Value(original['b.weight'][i]!) + diff[k]!)) >>> 16;
      if (trunc !== t['b.weight']![i]) wrong++;
      t['b.weight']![i] = trunc;
    });
    expect(wrong).toBeGreaterThan(0);
    expect(check('trunc', t)).toMatchObject({ faithful: false, trained_mismatches: wrong });
  });

  it('fails a missing tensor and a changed tokenizer', () => {
    const { 'a.weight': _, ...rest } = merged();
    expect(check('missing', rest)).toMatchObject({ faithful: false, missing: ['a.weight'] });
    expect(check('tok', merged(), '{"model":{"x":1}}')).toMatchObject({ faithful: false, files: { 'tokenizer.json': false } });
  });
});

describe('bench/scale/gen.mjs', () => {
  it('names and shapes every tensor as the qwen3_moe family expects for Qwen3-30B-A3B (2 layers)', () => {
    const c = scaleConfig({ layers: 2, small: false });
    expect(c).toMatchObject({ num_experts: 128, hidden_size: 2048, moe_intermediate_size: 768, vocab_size: 151936, num_key_value_heads: 4 });
    const ours = new Map((tensorList(c) as [string, number[]][]).map(([n, s]) => [n, s.join('x')]));
    const want = new Map(allTensors(parseConfig(c)).map((t) => [t.name, t.shape.join('x')]));
    expect(ours).toEqual(want);
  });
});
