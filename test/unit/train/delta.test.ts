// Sparse delta: makeDelta → applyDelta gives back the changed values bit for bit (f32), only differing entries are
// stored, routers in full; tampered files, deltas for another base and malformed indices are refused with the reason.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint, type Checkpoint } from '../../../src/engine/io/checkpoint.ts';
import { encodeBf16 } from '../../../src/engine/io/dtype.ts';
import { fileMapFolder } from '../../../src/engine/io/folder.ts';
import { openSafetensors } from '../../../src/engine/io/safetensors.ts';
import { encodeSafetensors } from '../../../src/engine/io/safetensors-write.ts';
import { memorySink } from '../../../src/engine/io/sink.ts';
import {
  applyDelta, crc32, DELTA_FILE, DeltaError, hex32, isRouterName, makeDelta, readDeltaInfo,
} from '../../../src/engine/train/delta.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { memorySource } from '../../../src/engine/io/byte-source.ts';
import { concat, rawFile } from '../io/helpers.ts';
import { decoded, DEMO_DIR, FIXTURE_DIR, sparselyChanged } from '../../helpers/train-io.ts';

const EXPERTS = [
  'model.layers.5.mlp.experts.2.gate_proj.weight', // [128, 256]
  'model.layers.5.mlp.experts.9.down_proj.weight', // [256, 128]
  'model.layers.7.mlp.experts.15.up_proj.weight',
];
const ROUTER = 'model.layers.5.mlp.gate.weight'; // [16, 256]

let base: Checkpoint;
let config: Uint8Array;
let changed: Map<string, Float32Array>;
let delta: Uint8Array;

/** Bit-exact equality of two f32 arrays, naming the first difference. */
function expectSameBits(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < g.length; i++) if (g[i] !== w[i]) throw new Error(`${what}[${i}]: ${got[i]} != ${want[i]}`);
}

beforeAll(async () => {
  base = await openCheckpoint(nodeFolder(DEMO_DIR));
  config = await readFile(join(DEMO_DIR, 'config.json'));
  changed = new Map();
  for (const [i, name] of EXPERTS.entries()) changed.set(name, await sparselyChanged(base, name, 0.01, 7 + i));
  // a tensor whose values are not representable in bf16 (f32 master weights): stored and returned exactly
  const fine = await decoded(base, EXPERTS[0]);
  changed.get(EXPERTS[0])![5] = fine[5] + 1e-6 * Math.abs(fine[5]) + 1e-9;
  changed.set(ROUTER, await sparselyChanged(base, ROUTER, 0.3, 99));
  const { chunks } = await makeDelta(base, changed, { baseConfig: config, frac: 0.005, steps: 180, extra: { run: 'r1' } });
  delta = concat(chunks);
});
afterAll(async () => { await base.close(); });

describe('crc32', () => {
  it('matches the standard check value and continues across pieces', () => {
    const s = new TextEncoder().encode('123456789');
    expect(hex32(crc32(s))).toBe('cbf43926');
    expect(crc32(s.subarray(4), crc32(s.subarray(0, 4)))).toBe(crc32(s));
    const long = Uint8Array.from({ length: 1037 }, (_, i) => (i * 31 + 7) & 0xff);
    expect(crc32(long.subarray(333), crc32(long.subarray(0, 333)))).toBe(crc32(long));
  });
});

describe('makeDelta / applyDelta (demo model)', () => {
  it('round trip: applyDelta gives back exactly the changed values', async () => {
    const out = await applyDelta(base, delta, { baseConfig: config });
    expect([...out.keys()].sort()).toEqual([...changed.keys()].sort());
    for (const [name, v] of changed) expectSameBits(out.get(name)!, v, name);
  });

  it('stores only the differing entries (I32 ascending indices + F32 values), the router dense, and its metadata', async () => {
    const f = await openSafetensors(memorySource(delta, DELTA_FILE));
    const info = await readDeltaInfo(delta);
    expect(info).toMatchObject({ format: 'usaf-delta', version: '1', frac: 0.005, steps: 180, extra: { run: 'r1' } });
    expect(info.base.tensors).toBe(base.tensors.size);
    expect(info.base.config).toMatch(/^[0-9a-f]{8}$/);
    for (const name of EXPERTS) {
      const baseVals = await decoded(base, name);
      const want: number[] = [];
      changed.get(name)!.forEach((v, i) => { if (v !== baseVals[i]) want.push(i); });
      expect(want.length).toBeGreaterThan(100);
      expect(info.tensors[name]).toMatchObject({ kind: 'sparse', dtype: 'BF16', shape: base.tensors.get(name)!.shape, count: want.length });
      const idx = f.tensors.get(`${name}::indices`)!;
      expect({ dtype: idx.dtype, shape: idx.shape }).toEqual({ dtype: 'I32', shape: [want.length] });
      expect([...new Uint32Array((await f.readTensor(`${name}::indices`)).buffer)]).toEqual(want);
      expect(f.tensors.get(`${name}::values`)!.dtype).toBe('F32');
    }
    expect(isRouterName(ROUTER)).toBe(true);
    expect(isRouterName(EXPERTS[0])).toBe(false);
    expect(info.tensors[ROUTER]).toMatchObject({ kind: 'dense', count: 16 * 256 });
    expect(f.tensors.get(ROUTER)).toMatchObject({ dtype: 'F32', shape: [16, 256] });
    // ~1 % of 3 x 32768 entries x 8 bytes + the 16 KiB router: far below the tensors' own size
    expect(delta.byteLength).toBeLessThan(40_000);
  });

  it('an unchanged tensor gives an empty sparse entry and applies back to the base values', async () => {
    const name = 'model.layers.4.mlp.experts.1.gate_proj.weight';
    const same = await decoded(base, name);
    const { chunks, info } = await makeDelta(base, new Map([[name, same]]));
    expect(info.tensors[name]).toMatchObject({ kind: 'sparse', count: 0 });
    const out = await applyDelta(base, concat(chunks));
    expect(Buffer.from(encodeBf16(out.get(name)!)).equals(Buffer.from(await base.readTensor(name)))).toBe(true);
  });
});

describe('applyDelta refuses', () => {
  it('a flipped data byte (CRC)', async () => {
    const bad = delta.slice();
    bad[bad.length - 3] ^= 0x10; // inside the last tensor's data
    await expect(applyDelta(base, bad)).rejects.toThrow(/do(es)? not match (its|their) CRC \(corrupt or tampered file\)/);
  });

  it('a truncated file', async () => {
    const err = await applyDelta(base, delta.subarray(0, delta.length - 100)).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaError);
    expect((err as Error).message).toMatch(/not a readable safetensors file \(truncated or corrupt\?\)/);
  });

  it('a file that is not a usaf delta, or of another version', async () => {
    const f = await openSafetensors(memorySource(delta, DELTA_FILE));
    const dataStart = f.dataStart;
    const header = JSON.parse(new TextDecoder().decode(delta.subarray(8, dataStart)));
    const rebuilt = (meta: Record<string, string>): Uint8Array =>
      rawFile(JSON.stringify({ ...header, __metadata__: meta }), delta.subarray(dataStart));
    await expect(applyDelta(base, rebuilt({ ...header.__metadata__, format: 'pt' }))).rejects.toThrow('metadata format is "pt", not "usaf-delta"');
    await expect(applyDelta(base, rebuilt({ ...header.__metadata__, version: '3' }))).rejects.toThrow('version "3" is not supported');
    await expect(applyDelta(base, rebuilt({ ...header.__metadata__, version: '2' }))).rejects.toThrow('version 2 holds differences from the original model');
    const { tensors: _t, ...noTensors } = header.__metadata__;
    await expect(applyDelta(base, rebuilt(noTensors))).rejects.toThrow('metadata "tensors" is missing');
  });

  it('a base whose changed tensor differs from the one it was made from', async () => {
    const files = new Map<string, Blob>();
    const index = JSON.parse(await readFile(join(DEMO_DIR, 'model.safetensors.index.json'), 'utf8'));
    for (const shard of new Set<string>(Object.values(index.weight_map))) {
      const bytes = new Uint8Array(await readFile(join(DEMO_DIR, shard)));
      const f = await openSafetensors(memorySource(bytes, shard));
      const t = f.tensors.get(EXPERTS[1]);
      if (t) bytes[f.dataStart + t.begin + 10] ^= 0x01; // one base weight moved by one bf16 ulp
      files.set(shard, new Blob([bytes]));
    }
    files.set('model.safetensors.index.json', new Blob([JSON.stringify(index)]));
    const other = await openCheckpoint(fileMapFolder(files));
    await expect(applyDelta(other, delta)).rejects.toThrow(
      `"${EXPERTS[1]}" in this base differs from the base the delta was made from`);
  });

  it('another model, or the same tensors with another config', async () => {
    const qwen = await openCheckpoint(nodeFolder(FIXTURE_DIR('qwen3_moe')));
    await expect(applyDelta(qwen, delta)).rejects.toThrow(/which this base model does not have \(a delta for another model\?\)|is BF16 \[.*\] in this base/);
    await qwen.close();
    const cfg = JSON.parse(new TextDecoder().decode(config));
    await expect(applyDelta(base, delta, { baseConfig: JSON.stringify({ ...cfg, rope_theta: 1e6 }) }))
      .rejects.toThrow('made for a model with a different config.json');
    // the same config in another key order and spacing is accepted
    const reordered = JSON.stringify(Object.fromEntries(Object.entries(cfg).reverse()), null, 4);
    await expect(applyDelta(base, delta, { baseConfig: reordered })).resolves.toBeInstanceOf(Map);
  });

  it('a base with an extra tensor (fingerprint)', async () => {
    const sink = memorySink();
    const files = new Map<string, Blob>();
    const index = JSON.parse(await readFile(join(DEMO_DIR, 'model.safetensors.index.json'), 'utf8'));
    for (const shard of new Set<string>(Object.values(index.weight_map))) files.set(shard, new Blob([await readFile(join(DEMO_DIR, shard))]));
    await sink.write('extra.safetensors', encodeSafetensors([{ name: 'model.extra.weight', dtype: 'F32', shape: [1], data: new Uint8Array(4) }]));
    files.set('extra.safetensors', sink.blob('extra.safetensors'));
    index.weight_map['model.extra.weight'] = 'extra.safetensors';
    files.set('model.safetensors.index.json', new Blob([JSON.stringify(index)]));
    const other = await openCheckpoint(fileMapFolder(files));
    await expect(applyDelta(other, delta)).rejects.toThrow(new RegExp(`made for a different model: its base has ${base.tensors.size} tensors .* this one ${base.tensors.size + 1} `));
  });

  it('indices out of order or out of range even with consistent CRCs', async () => {
    const name = EXPERTS[2];
    const baseBytes = await base.readTensor(name);
    const make = async (indices: number[]): Promise<Uint8Array> => {
      const good = await makeDelta(base, new Map([[name, await sparselyChanged(base, name, 0.001, 5)]]));
      const f = await openSafetensors(memorySource(concat(good.chunks), DELTA_FILE));
      const ib = new Uint8Array(Uint32Array.from(indices).buffer);
      const vb = new Uint8Array(Float32Array.from(indices, () => 0.5).buffer);
      const entry = { ...good.info.tensors[name], count: indices.length, crc: hex32(crc32(vb, crc32(ib))), baseCrc: hex32(crc32(baseBytes)) };
      const meta = { ...f.metadata, tensors: JSON.stringify({ [name]: entry }) };
      return concat(encodeSafetensors([
        { name: `${name}::indices`, dtype: 'I32', shape: [indices.length], data: ib },
        { name: `${name}::values`, dtype: 'F32', shape: [indices.length], data: vb },
      ], meta));
    };
    await expect(applyDelta(base, await make([3, 9, 100]))).resolves.toBeInstanceOf(Map); // the builder itself is sound
    await expect(applyDelta(base, await make([3, 9, 9]))).rejects.toThrow('index 9 at position 2 is not above the previous 9');
    await expect(applyDelta(base, await make([3, 32768]))).rejects.toThrow('index 32768 at position 1 is out of range (32768 elements)');
  });
});

describe('makeDelta refuses', () => {
  it('unknown tensors, wrong sizes and non-finite values', async () => {
    await expect(makeDelta(base, new Map([['nope', new Float32Array(1)]]))).rejects.toThrow('changed tensor "nope" is not in the base checkpoint');
    await expect(makeDelta(base, new Map([[EXPERTS[0], new Float32Array(3)]]))).rejects.toThrow('3 values, shape [128, 256] needs 32768');
    const v = changed.get(EXPERTS[0])!.slice();
    v[4] = Infinity;
    await expect(makeDelta(base, new Map([[EXPERTS[0], v]]))).rejects.toThrow('non-finite value Infinity (entry 4)');
  });
});
