// Contract: the e2e tests' reading of safetensors files and their check of a merged model: the demo's original with, at
// a v2 delta's entries only, bf16(f32(original + d)), recomputed here independently of the app and of usaf merge.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

export const BASE = 'public/models/usaf-demo-moe';

// ---------------------------------------------------------------------------------------------
// safetensors

export interface Header {
  size: number;
  dataStart: number;
  tensors: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  metadata: Record<string, string>;
}

export function header(bytes: Uint8Array): Header {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  assert.ok(n > 0 && 8 + n <= bytes.byteLength, `header length ${n} does not fit the ${bytes.byteLength}-byte file`);
  const json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  const { __metadata__: metadata = {}, ...tensors } = json;
  return { size: n, dataStart: 8 + n, tensors: tensors as Header['tensors'], metadata: metadata as Record<string, string> };
}

export function tensorBytes(file: Uint8Array, h: Header, name: string): Uint8Array {
  const t = h.tensors[name];
  assert.ok(t, `no tensor ${name}`);
  return file.subarray(h.dataStart + t.data_offsets[0], h.dataStart + t.data_offsets[1]);
}

/** A tensor's bytes in the base demo model (sharded, as the Hub stores it). */
export function baseTensor(name: string): Uint8Array {
  const index = JSON.parse(readFileSync(`${BASE}/model.safetensors.index.json`, 'utf8')) as { weight_map: Record<string, string> };
  const file = new Uint8Array(readFileSync(`${BASE}/${index.weight_map[name]}`));
  return tensorBytes(file, header(file), name);
}

export const equal = (a: Uint8Array, b: Uint8Array): boolean => a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);

// ---------------------------------------------------------------------------------------------
// The merged model against the original and the delta, recomputed here

/** f32 → bf16 bits, round to nearest, ties to even (finite values). */
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

const bf16Value = (bits: number): number => new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;

/**
 * `files` (a merged Hub folder) is the demo's original with, at the v2 delta's entries only, bf16(f32(original + d)):
 * config and tokenizer byte for byte, every tensor of the index in BF16, headers and sizes consistent, trained entries
 * present (an export that lost them fails), every other entry bit-identical to the original.
 */
export function checkMerged(files: Map<string, Uint8Array>, deltaFile: Uint8Array): void {
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    assert.ok(equal(files.get(f)!, new Uint8Array(readFileSync(`${BASE}/${f}`))), `${f} is the base model's`);
  }
  const dh = header(deltaFile);
  const parts = JSON.parse(dh.metadata.tensors!) as Record<string, { kind: 'sparse' | 'dense' }>;
  const index = JSON.parse(new TextDecoder().decode(files.get('model.safetensors.index.json'))) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  const baseIndex = JSON.parse(readFileSync(`${BASE}/model.safetensors.index.json`, 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  assert.deepEqual(Object.keys(index.weight_map).sort(), Object.keys(baseIndex.weight_map).sort());
  assert.equal(index.metadata.total_size, baseIndex.metadata.total_size);
  let changedEntries = 0;
  for (const shard of new Set(Object.values(index.weight_map))) {
    const file = files.get(shard);
    assert.ok(file, `shard ${shard} is there (got ${[...files.keys()].join(', ')})`);
    const h = header(file);
    assert.equal(h.metadata.format, 'pt');
    const names = Object.keys(h.tensors);
    assert.deepEqual(names.sort(), Object.keys(index.weight_map).filter((n) => index.weight_map[n] === shard).sort());
    assert.equal(file.byteLength, h.dataStart + Math.max(...names.map((n) => h.tensors[n]!.data_offsets[1])), `${shard}: header and size agree`);
    for (const n of names) {
      assert.equal(h.tensors[n]!.dtype, 'BF16', n);
      const got = tensorBytes(file, h, n);
      const want = baseTensor(n).slice();
      const part = parts[n];
      if (part) {
        const u16 = new Uint16Array(want.buffer);
        const diff = new Float32Array(tensorBytes(deltaFile, dh, `${n}::diff`).slice().buffer);
        const at = part.kind === 'dense' ? null : new Uint32Array(tensorBytes(deltaFile, dh, `${n}::indices`).slice().buffer);
        for (let k = 0; k < diff.length; k++) {
          const i = at ? at[k]! : k;
          const merged = bf16Bits(Math.fround(bf16Value(u16[i]!) + diff[k]!));
          if (merged !== u16[i]) changedEntries++;
          u16[i] = merged;
        }
      }
      assert.ok(equal(got, want), `${n}: the original, with bf16(original + d) at the delta's entries`);
    }
  }
  assert.ok(changedEntries > 0, 'training changed some entries of the merged model');
}

