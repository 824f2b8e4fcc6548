// Hub export: the demo model with a few changed tensors, written through a sink and reopened with openCheckpoint:
// unchanged tensors byte-identical, changed ones = bf16(new values) (f16/f32/f64 on a small model), index and files right.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memorySource } from '../../../src/engine/io/byte-source.ts';
import { openCheckpoint, type Checkpoint } from '../../../src/engine/io/checkpoint.ts';
import { decodeF32, encodeBf16 } from '../../../src/engine/io/dtype.ts';
import { fileMapFolder } from '../../../src/engine/io/folder.ts';
import { openSafetensors } from '../../../src/engine/io/safetensors.ts';
import { encodeSafetensors } from '../../../src/engine/io/safetensors-write.ts';
import { memorySink } from '../../../src/engine/io/sink.ts';
import { f16Bits } from '../../../src/engine/quant/format.ts';
import { exportModel, planShards, shardName, type ExportProgress } from '../../../src/engine/train/export.ts';
import { nodeFileSink } from '../../../src/node/file-sink.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { randn } from '../../helpers/random.ts';
import { DEMO_DIR, sparselyChanged, tempFolder } from '../../helpers/train-io.ts';

const CHANGED = [
  'model.layers.6.mlp.experts.3.gate_proj.weight', // [128, 256]
  'model.layers.6.mlp.experts.11.down_proj.weight', // [256, 128]
  'model.layers.7.mlp.experts.0.up_proj.weight',
  'model.layers.6.mlp.gate.weight', // router [16, 256]
];

let base: Checkpoint;
let changed: Map<string, Float32Array>;

beforeAll(async () => {
  base = await openCheckpoint(nodeFolder(DEMO_DIR));
  changed = new Map();
  for (const [i, name] of CHANGED.entries()) changed.set(name, await sparselyChanged(base, name, i === 3 ? 1 : 0.02, 100 + i));
});
afterAll(async () => { await base.close(); });

/** Every tensor of `out` against the base: changed ones equal bf16(new), all others byte-identical. */
async function checkAgainstBase(out: Checkpoint): Promise<void> {
  expect([...out.tensors.keys()].sort()).toEqual([...base.tensors.keys()].sort());
  for (const [name, t] of base.tensors) {
    const o = out.tensors.get(name)!;
    expect({ dtype: o.dtype, shape: o.shape }).toEqual({ dtype: t.dtype, shape: t.shape });
    const got = await out.readTensor(name);
    const want = changed.has(name) ? encodeBf16(changed.get(name)!) : await base.readTensor(name);
    if (!Buffer.from(got).equals(Buffer.from(want))) throw new Error(`tensor ${name} differs from what was expected`);
  }
  // a changed tensor really did change
  const name = CHANGED[0];
  expect(Buffer.from(await out.readTensor(name)).equals(Buffer.from(await base.readTensor(name)))).toBe(false);
}

describe('exportModel (demo model, per-expert bf16)', () => {
  it('through a memory sink in several shards: reopens with the right tensors, index, config and tokenizer', async () => {
    const sink = memorySink('export');
    const progress: ExportProgress[] = [];
    const res = await exportModel(sink, base, nodeFolder(DEMO_DIR), changed, {
      maxShardBytes: 9_000_000, onProgress: (p) => progress.push(p),
    });
    const n = res.shards.length;
    expect(n).toBe(4); // 32.6 MB of tensors in shards of at most 9 MB
    expect(res.shards).toEqual(Array.from({ length: n }, (_, i) => `model-0000${i + 1}-of-0000${n}.safetensors`));
    expect(res.copied.sort()).toEqual(['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']);
    for (const f of res.copied) expect(Buffer.from(sink.bytes(f)).equals(await readFile(join(DEMO_DIR, f)))).toBe(true);

    const index = JSON.parse(new TextDecoder().decode(sink.bytes('model.safetensors.index.json')));
    const baseIndex = JSON.parse(await readFile(join(DEMO_DIR, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(baseIndex.metadata.total_size);
    expect(Object.keys(index.weight_map)).toEqual(Object.keys(index.weight_map).sort());
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(res.shards));
    for (const s of res.shards) {
      const f = await openSafetensors(memorySource(sink.bytes(s), s));
      expect(f.metadata).toEqual({ format: 'pt' });
      expect([...f.tensors.values()].reduce((a, t) => a + t.byteLength, 0)).toBeLessThanOrEqual(9_000_000);
      for (const name of f.tensors.keys()) expect(index.weight_map[name]).toBe(s);
    }

    const out = await openCheckpoint(sink.folder());
    await checkAgainstBase(out);

    const last = progress[progress.length - 1];
    expect(last).toEqual({ file: res.shards.at(-1), bytes: res.totalSize, totalBytes: res.totalSize, tensors: base.tensors.size, totalTensors: base.tensors.size });
    for (let i = 1; i < progress.length; i++) expect(progress[i].bytes).toBeGreaterThanOrEqual(progress[i - 1].bytes);
  });

  it('through the Node sink into a folder, one shard by default, still in the sharded layout', async () => {
    const t = await tempFolder('export');
    try {
      const res = await exportModel(nodeFileSink(t.dir, { fsync: false }), base, nodeFolder(DEMO_DIR), changed, { dir: 'out', chunkBytes: 1 << 20 });
      expect(res.shards).toEqual(['out/model-00001-of-00001.safetensors']);
      const out = await openCheckpoint(nodeFolder(join(t.dir, 'out')));
      await checkAgainstBase(out);
      await out.close();
    } finally {
      await t.remove();
    }
  });

  it('refuses unknown names, wrong sizes and non-finite values before writing anything', async () => {
    const sink = memorySink();
    const name = CHANGED[0];
    await expect(exportModel(sink, base, nodeFolder(DEMO_DIR), new Map([['model.nope', new Float32Array(3)]])))
      .rejects.toThrow('changed tensor "model.nope" is not in the base checkpoint');
    await expect(exportModel(sink, base, nodeFolder(DEMO_DIR), new Map([[name, new Float32Array(5)]])))
      .rejects.toThrow(`changed tensor "${name}": 5 values, shape [128, 256] needs 32768`);
    const bad = changed.get(name)!.slice();
    bad[77] = NaN;
    await expect(exportModel(sink, base, nodeFolder(DEMO_DIR), new Map([[name, bad]]))).rejects.toThrow('value NaN at flat index 77');
    expect(sink.files.size).toBe(0);
  });
});

describe('exportModel (small synthetic model)', () => {
  it('writes changed tensors in their own dtype (f16, f32, f64 round-trip), a tensor over the cap alone', async () => {
    const a = randn(30, 1), b = randn(7 * 3, 2), c = randn(5, 3), d = randn(11, 4);
    const f16 = new Uint16Array(Array.from(a, f16Bits));
    const tensors = [
      { name: 'w.f16', dtype: 'F16' as const, shape: [30], data: new Uint8Array(f16.buffer) },
      { name: 'w.f32', dtype: 'F32' as const, shape: [7, 3], data: new Uint8Array(b.slice().buffer as ArrayBuffer) },
      { name: 'w.f64', dtype: 'F64' as const, shape: [5], data: new Uint8Array(Float64Array.from(c).buffer) },
      { name: 'w.bf16', dtype: 'BF16' as const, shape: [11], data: encodeBf16(d) },
    ];
    const folder = fileMapFolder(new Map([
      ['model.safetensors', new Blob(encodeSafetensors(tensors))], ['config.json', new Blob(['{"a":1}'])],
    ]));
    const small = await openCheckpoint(folder);
    const next = new Map([
      ['w.f16', randn(30, 11)], ['w.f32', randn(21, 12)], ['w.f64', randn(5, 13)],
    ]);
    const sink = memorySink();
    const res = await exportModel(sink, small, folder, next, { maxShardBytes: 50 });
    expect(res.copied).toEqual(['config.json']);
    // storage order f16 (60 B, over the cap: alone), f32 (84 B, alone), f64 (40) + bf16 (22) would be 62 > 50: apart
    expect(planShards(small.tensors.values(), 50).map((s) => s.map((t) => t.name))).toEqual([['w.f16'], ['w.f32'], ['w.f64'], ['w.bf16']]);
    expect(res.shards).toEqual([0, 1, 2, 3].map((i) => shardName(i, 4)));
    const out = await openCheckpoint(sink.folder());
    const f16out = new Uint16Array((await out.readTensor('w.f16')).buffer);
    expect([...f16out]).toEqual(Array.from(next.get('w.f16')!, f16Bits));
    expect(decodeF32('F32', await out.readTensor('w.f32'))).toEqual(next.get('w.f32'));
    expect(decodeF32('F64', await out.readTensor('w.f64'))).toEqual(next.get('w.f64'));
    expect(await out.readTensor('w.bf16')).toEqual(tensors[3].data);
    expect(out.tensors.get('w.f32')!.shape).toEqual([7, 3]);
  });
});
