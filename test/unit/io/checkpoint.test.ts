// Checkpoint opening over in-memory folders: single file, sharded via an index, and every index/shard inconsistency.
// Folders are fileMapFolder over Blobs built with the writer, so the same code path as a browser file drop is used.

import { describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/engine/io/checkpoint.ts';
import { fileMapFolder } from '../../../src/engine/io/folder.ts';
import { SafetensorsError } from '../../../src/engine/io/safetensors.ts';
import { encodeSafetensors, type TensorData } from '../../../src/engine/io/safetensors-write.ts';
import { randomBytes } from './helpers.ts';

const t = (name: string, n: number, seed: number): TensorData => ({ name, dtype: 'BF16', shape: [n], data: randomBytes(2 * n, seed) });
const A = t('model.embed_tokens.weight', 6, 1);
const B = t('model.layers.0.mlp.gate.weight', 4, 2);
const C = t('model.norm.weight', 3, 3);

function sharded(opts: { dropShard?: string; indexExtra?: Record<string, string> } = {}): Map<string, Blob> {
  const shards: Record<string, TensorData[]> = { 's-1.safetensors': [A, B], 's-2.safetensors': [C] };
  const files = new Map<string, Blob>();
  const weightMap: Record<string, string> = {};
  for (const [file, ts] of Object.entries(shards)) {
    if (file !== opts.dropShard) files.set(file, new Blob(encodeSafetensors(ts)));
    for (const x of ts) weightMap[x.name] = file;
  }
  Object.assign(weightMap, opts.indexExtra);
  files.set('model.safetensors.index.json', new Blob([JSON.stringify({ metadata: { total_size: 26 }, weight_map: weightMap })]));
  return files;
}

async function failure(p: Promise<unknown>): Promise<SafetensorsError> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(SafetensorsError);
  return e as SafetensorsError;
}

describe('openCheckpoint', () => {
  it('reads a sharded checkpoint through its index', async () => {
    const ckpt = await openCheckpoint(fileMapFolder(sharded(), 'demo'));
    expect([...ckpt.files.keys()].sort()).toEqual(['s-1.safetensors', 's-2.safetensors']);
    expect([...ckpt.tensors.keys()].sort()).toEqual([A.name, B.name, C.name].sort());
    expect(ckpt.tensors.get(C.name)).toMatchObject({ file: 's-2.safetensors', dtype: 'BF16', shape: [3], begin: 0 });
    for (const x of [A, B, C]) expect(await ckpt.readTensor(x.name)).toEqual(x.data);
    expect(await ckpt.readTensorRange(B.name, 2, 4)).toEqual(B.data.subarray(2, 6));
    await expect(ckpt.readTensor('missing')).rejects.toThrow(/"missing"/);
    await ckpt.close();
  });

  it('prefers model.safetensors when present', async () => {
    const files = sharded();
    files.set('model.safetensors', new Blob(encodeSafetensors([C])));
    const ckpt = await openCheckpoint(fileMapFolder(files));
    expect([...ckpt.tensors.keys()]).toEqual([C.name]);
    expect(ckpt.tensors.get(C.name)!.file).toBe('model.safetensors');
    expect(await ckpt.readTensor(C.name)).toEqual(C.data);
  });

  it('a shard named in the index but missing names the shard and a tensor it should hold', async () => {
    const e = await failure(openCheckpoint(fileMapFolder(sharded({ dropShard: 's-2.safetensors' }), 'demo')));
    expect(e.message).toBe('model.safetensors.index.json: shard "s-2.safetensors" is missing from demo ' +
      `(it should hold tensor "${C.name}")`);
  });

  it('a tensor in the index but absent from its shard names both', async () => {
    const e = await failure(openCheckpoint(fileMapFolder(sharded({ indexExtra: { 'lm_head.weight': 's-1.safetensors' } }))));
    expect(e.message).toBe('s-1.safetensors: tensor "lm_head.weight": listed in model.safetensors.index.json but not in this shard');
  });

  it('a broken shard header names that shard', async () => {
    const files = sharded();
    files.set('s-1.safetensors', new Blob([new Uint8Array(12)]));
    expect((await failure(openCheckpoint(fileMapFolder(files)))).message).toMatch(/^s-1\.safetensors: /);
  });

  it('no checkpoint, a bad index', async () => {
    expect((await failure(openCheckpoint(fileMapFolder(new Map(), 'empty')))).message)
      .toBe('empty: neither model.safetensors nor model.safetensors.index.json is there');
    const bad = new Map<string, Blob>([['model.safetensors.index.json', new Blob(['{"weight_map": '])]]);
    expect((await failure(openCheckpoint(fileMapFolder(bad)))).message).toContain('model.safetensors.index.json: not valid');
    const noMap = new Map<string, Blob>([['model.safetensors.index.json', new Blob(['{"metadata": {}}'])]]);
    expect((await failure(openCheckpoint(fileMapFolder(noMap)))).message).toContain('"weight_map" is missing');
  });
});
