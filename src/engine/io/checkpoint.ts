// A model checkpoint in Hugging Face layout: `model.safetensors`, or shards listed by `model.safetensors.index.json`.
// Opens every shard's header once, checks the index against them, and reads tensors by name from whichever shard holds them.

import type { ByteSource, Bytes } from './byte-source.ts';
import type { FileSet } from './folder.ts';
import { openSafetensors, SafetensorsError, type SafetensorsFile, type TensorInfo } from './safetensors.ts';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export interface Checkpoint {
  /** Every tensor, by name; TensorInfo.file is the shard's path within the folder. */
  tensors: Map<string, TensorInfo>;
  /** The opened safetensors files, by path within the folder. */
  files: Map<string, SafetensorsFile>;
  readTensor(name: string): Promise<Bytes>;
  readTensorRange(name: string, byteOffset: number, byteLength: number): Promise<Bytes>;
  /** Closes the sources that hold OS handles. */
  close(): Promise<void>;
}

/** name → shard path from an index file, validated. */
async function readWeightMap(folder: FileSet): Promise<Map<string, string> | null> {
  const source = await folder.open(INDEX_FILE);
  if (!source) return null;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await source.read(0, await source.size())));
  } catch (e) {
    throw new SafetensorsError(INDEX_FILE, `not valid UTF-8 JSON: ${(e as Error).message}`);
  } finally {
    await source.close?.();
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new SafetensorsError(INDEX_FILE, '"weight_map" is missing or not an object');
  }
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string') throw new SafetensorsError(INDEX_FILE, `shard ${JSON.stringify(shard)} is not a file name`, name);
    out.set(name, shard);
  }
  return out;
}

function checkpointOf(files: Map<string, SafetensorsFile>, tensors: Map<string, TensorInfo>): Checkpoint {
  const fileOf = (name: string): SafetensorsFile => {
    const t = tensors.get(name);
    if (!t) throw new SafetensorsError('checkpoint', 'no such tensor', name);
    return files.get(t.file)!;
  };
  return {
    tensors, files,
    readTensor: async (name) => fileOf(name).readTensor(name),
    readTensorRange: async (name, byteOffset, byteLength) => fileOf(name).readTensorRange(name, byteOffset, byteLength),
    close: async () => { await Promise.all([...files.values()].map((f) => f.source.close?.())); },
  };
}

/** openSafetensors, closing the source if the header is bad. */
async function openOrClose(source: ByteSource): Promise<SafetensorsFile> {
  try {
    return await openSafetensors(source);
  } catch (e) {
    await source.close?.();
    throw e;
  }
}

/** Opens `model.safetensors` if the folder has it, else the shards named by `model.safetensors.index.json`. */
export async function openCheckpoint(folder: FileSet): Promise<Checkpoint> {
  const single = await folder.open(SINGLE_FILE);
  if (single) {
    const file = await openOrClose(single);
    const tensors = new Map([...file.tensors].map(([k, t]) => [k, { ...t, file: SINGLE_FILE }]));
    return checkpointOf(new Map([[SINGLE_FILE, file]]), tensors);
  }
  const weightMap = await readWeightMap(folder);
  if (!weightMap) throw new SafetensorsError(folder.name, `neither ${SINGLE_FILE} nor ${INDEX_FILE} is there`);

  const firstTensorOf = new Map<string, string>(); // shard → one tensor the index puts there
  for (const [name, shard] of weightMap) if (!firstTensorOf.has(shard)) firstTensorOf.set(shard, name);
  const opened = await Promise.allSettled([...firstTensorOf].map(async ([shard, tensor]): Promise<[string, SafetensorsFile]> => {
    const source = await folder.open(shard);
    if (!source) {
      throw new SafetensorsError(INDEX_FILE, `shard "${shard}" is missing from ${folder.name} (it should hold tensor "${tensor}")`);
    }
    return [shard, await openOrClose(source)];
  }));
  const files = new Map<string, SafetensorsFile>();
  for (const r of opened) if (r.status === 'fulfilled') files.set(...r.value);
  try {
    const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const tensors = new Map<string, TensorInfo>();
    for (const [name, shard] of weightMap) {
      const t = files.get(shard)!.tensors.get(name);
      if (!t) throw new SafetensorsError(shard, `listed in ${INDEX_FILE} but not in this shard`, name);
      tensors.set(name, { ...t, file: shard });
    }
    return checkpointOf(files, tensors);
  } catch (e) {
    await Promise.all([...files.values()].map((f) => f.source.close?.()));
    throw e;
  }
}
