// Import of a Hub checkpoint into the stored 4-bit format (FORMAT.md "Stored 4-bit checkpoint"), streamed tensor by
// tensor through a FileSink: routed experts quantized on the GPU a layer at a time, everything else bf16; resumable by shard.
//
// Host memory held at once: one MoE layer's 4-bit buffers (read back from the GPU, kept until both are written) plus
// one source tensor (a per-expert projection, or a fused layer's whole gate_up/down tensor) and its converted copy.

import type { GpuContext } from '../gpu/device.ts';
import type { Bytes } from '../io/byte-source.ts';
import { INDEX_FILE, type Checkpoint } from '../io/checkpoint.ts';
import { decodeF32, encodeBf16, type Dtype } from '../io/dtype.ts';
import type { FileSet } from '../io/folder.ts';
import { openSafetensors } from '../io/safetensors.ts';
import { safetensorsHeader } from '../io/safetensors-write.ts';
import { asBytes, joinPath, type FileSink } from '../io/sink.ts';
import type { ModelSpec, TensorEntry } from '../model/spec.ts';
import { globalTensors, layerTensors } from '../model/tensors.ts';
import { COPIED_FILES, DEFAULT_MAX_SHARD_BYTES, shardName } from '../train/export.ts';
import { F32_ROLES, readWeight } from '../train/weights.ts';
import { loadExpertsQ4, readExpertsQ4 } from './experts-q4.ts';
import { checkGpuGroup, DEFAULT_GROUP, q4ExpertLayouts } from './format.ts';
import { q4ExpertNames, storedQ4Metadata } from './stored-q4.ts';
import { fingerprintOf, hashingCheckpoint, readConfig, STORED_ORIGINAL_KEY, STORED_SOURCE_KEY } from '../train/fingerprint.ts';

export interface ImportProgress {
  /** Tensors written (or found already written by an earlier run), of totalTensors. */
  tensors: number;
  totalTensors: number;
  /** Tensor data bytes written (or found), of totalBytes. */
  bytes: number;
  totalBytes: number;
  /** Source tensor bytes read so far in this run. */
  bytesRead: number;
  /** The source file (shard) of the tensor read last, e.g. "model-00002-of-00004.safetensors"; '' before any read. */
  source: string;
}

export interface ImportOptions {
  groupSize?: number;
  /** Folder inside the sink ('' = its root). */
  dir?: string;
  /** Cap on one shard's tensor data (default 2 GB); a tensor larger than this gets a shard of its own. */
  maxShardBytes?: number;
  copyFiles?: readonly string[];
  /**
   * What the sink holds already (the same folder, readable): shards there whose header and size are the ones this
   * import would write are kept, not redone. Sink writes are atomic, so a shard present is a shard complete.
   */
  resumeFrom?: FileSet;
  /** Where the original is (a folder path or URL), recorded so an export can name it in the merge command it prints. */
  source?: string;
  /** Called after each tensor; throwing from it interrupts the import (the shard being written is discarded). */
  onProgress?: (p: ImportProgress) => void;
}

export interface ImportResult {
  shards: string[];
  index: string;
  copied: string[];
  /** Shards kept from an earlier, interrupted run. */
  resumedShards: number;
  tensors: number;
  /** Tensor data bytes of the store, and source bytes read by this run. */
  bytesOut: number;
  bytesRead: number;
  groupSize: number;
}

/** One tensor of the store: its header entry and how to produce its bytes. */
interface OutTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  bytes: number;
  make: () => Promise<Bytes>;
}

// ---------------------------------------------------------------------------------------------
// The plan: every output tensor in spec order (globals, then layer by layer), the two 4-bit buffers where the experts were

/** Called after each source tensor is read: its bytes and its file within the source folder. */
type ReadCount = (bytes: number, file: string) => void;

function plainTensor(src: Checkpoint, spec: ModelSpec, e: TensorEntry, count: ReadCount): OutTensor {
  const info = src.tensors.get(e.name);
  if (!info) throw new Error(`source checkpoint has no tensor "${e.name}" (expected by the ${spec.arch} spec)`);
  // bf16 sources are copied as they are; f32 roles (norms, biases, router) keep a wider source as f32; the rest become bf16
  const dtype: Dtype = info.dtype !== 'BF16' && F32_ROLES.has(e.role) ? 'F32' : 'BF16';
  const n = e.shape.reduce((a, b) => a * b, 1);
  return {
    name: e.name, dtype, shape: e.shape, bytes: n * (dtype === 'F32' ? 4 : 2),
    make: async () => {
      const r = await readWeight(src, e, spec.quantization);
      count(info.byteLength, info.file);
      if (r.dtype === dtype) return asBytes(r.bytes);
      const f = decodeF32(r.dtype, r.bytes);
      return dtype === 'F32' ? asBytes(new Uint8Array(f.buffer, f.byteOffset, f.byteLength)) : asBytes(encodeBf16(f));
    },
  };
}

function planTensors(gpu: GpuContext, spec: ModelSpec, src: Checkpoint, G: number, count: ReadCount): OutTensor[] {
  const lay = q4ExpertLayouts(spec, G);
  const out = globalTensors(spec).map((e) => plainTensor(src, spec, e, count));
  for (let L = 0; L < spec.numLayers; L++) {
    const entries = layerTensors(spec, L);
    const experts = entries.filter((e) => e.role.startsWith('expert.'));
    // the layer's buffers, quantized when the first of the two is needed and dropped once both are written
    let held: Promise<{ gateUp: Uint8Array; down: Uint8Array }> | null = null;
    const layerBytes = (which: 'gateUp' | 'down') => async (): Promise<Bytes> => {
      held ??= (async () => {
        const ex = await loadExpertsQ4(gpu, spec, L, experts, async (e) => {
          const r = await readWeight(src, e, spec.quantization);
          const info = src.tensors.get(e.name)!;
          count(info.byteLength, info.file);
          return r;
        }, G);
        try {
          return await readExpertsQ4(gpu, ex);
        } finally {
          ex.gate.buf.destroy();
          ex.down.buf.destroy();
        }
      })();
      const b = (await held)[which];
      if (which === 'down') held = null; // down is always written after gate|up (or gate|up was kept by a resumed shard)
      return asBytes(b);
    };
    let placed = false;
    for (const e of entries) {
      if (!e.role.startsWith('expert.')) { out.push(plainTensor(src, spec, e, count)); continue; }
      if (placed) continue;
      placed = true;
      const names = q4ExpertNames(spec, L);
      out.push({ name: names.gateUp, dtype: 'U32', shape: [lay.gateUp.bytes / 4], bytes: lay.gateUp.bytes, make: layerBytes('gateUp') });
      out.push({ name: names.down, dtype: 'U32', shape: [lay.down.bytes / 4], bytes: lay.down.bytes, make: layerBytes('down') });
    }
  }
  return out;
}

/** Greedy packing in order into shards of at most `cap` data bytes (a larger tensor alone). */
function packShards(tensors: OutTensor[], cap: number): OutTensor[][] {
  if (!(cap > 0)) throw new RangeError(`maxShardBytes must be positive, got ${cap}`);
  const shards: OutTensor[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    if (shards[shards.length - 1].length > 0 && size + t.bytes > cap) { shards.push([]); size = 0; }
    shards[shards.length - 1].push(t);
    size += t.bytes;
  }
  return shards;
}

/** True when `folder` holds `path` with exactly this header and the size it implies. */
async function shardPresent(folder: FileSet, path: string, header: Bytes, dataBytes: number): Promise<boolean> {
  const src = await folder.open(path);
  if (!src) return false;
  try {
    if ((await src.size()) !== header.byteLength + dataBytes) return false;
    await openSafetensors(src); // validates the header against the size
    const got = await src.read(0, header.byteLength);
    return got.every((b, i) => b === header[i]);
  } catch {
    return false;
  } finally {
    await src.close?.();
  }
}

/**
 * Bytes importQ4 will write for `src` with these options: every shard (headers included) and the index, not the copied
 * files. Computed from the headers alone (nothing is read or quantized), so a store can check it fits before starting.
 */
export function importQ4Size(spec: ModelSpec, src: Checkpoint, options: Pick<ImportOptions, 'groupSize' | 'maxShardBytes'> = {}): number {
  const G = options.groupSize ?? DEFAULT_GROUP;
  const metadata = storedQ4Metadata({ groupSize: G, expertLayout: spec.expertLayout });
  // the tensors' make() (the only user of the GPU) is never called here
  const tensors = planTensors(undefined as unknown as GpuContext, spec, src, G, () => undefined);
  const shards = packShards(tensors, options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
  let total = 0;
  for (const list of shards) {
    const { header, dataBytes } = safetensorsHeader(list.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })), metadata);
    total += header.byteLength + dataBytes;
  }
  // the index: one line per tensor (name and shard), and the original's fingerprint, whose size is known from the
  // headers (CRCs and the config hash are 8 hex digits), each of its lines indented 4 more inside the index
  const print = JSON.stringify({ tensors: [...src.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape], crc: '00000000' })), config: '00000000' }, null, 2);
  const printBytes = new TextEncoder().encode(print).byteLength + 4 * print.split('\n').length;
  return total + 256 + tensors.reduce((n, t) => n + t.name.length + 48, 0) + printBytes;
}

// ---------------------------------------------------------------------------------------------
// Import

/**
 * Writes `src` (with config/tokenizer files from `srcFolder`) into `sink` as a stored 4-bit checkpoint: shards
 * `model-0000i-of-0000n.safetensors`, then `model.safetensors.index.json` last (an interrupted import has no index).
 * Deterministic: the same source, spec and options give the same bytes.
 */
export async function importQ4(gpu: GpuContext, spec: ModelSpec, sink: FileSink, original: Checkpoint, srcFolder: FileSet, options: ImportOptions = {}): Promise<ImportResult> {
  const G = options.groupSize ?? DEFAULT_GROUP;
  checkGpuGroup(G);
  const metadata = storedQ4Metadata({ groupSize: G, expertLayout: spec.expertLayout });
  let bytesRead = 0;
  let source = '';
  const { ckpt: src, crcs } = hashingCheckpoint(original); // every source tensor read whole is hashed for the fingerprint
  const tensors = planTensors(gpu, spec, src, G, (n, file) => {
    bytesRead += n;
    source = file;
  });
  const shards = packShards(tensors, options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
  const progress: ImportProgress = { tensors: 0, totalTensors: tensors.length, bytes: 0, totalBytes: tensors.reduce((n, t) => n + t.bytes, 0), bytesRead: 0, source: '' };
  const report = (t: OutTensor): void => {
    progress.tensors++;
    progress.bytes += t.bytes;
    progress.bytesRead = bytesRead;
    progress.source = source;
    options.onProgress?.({ ...progress });
  };

  const copied: string[] = [];
  let config: Bytes | null = null;
  for (const path of options.copyFiles ?? COPIED_FILES) {
    const from = await srcFolder.open(path);
    if (!from) continue;
    try {
      const bytes = await from.read(0, await from.size());
      if (path === 'config.json') config = bytes;
      await sink.write(joinPath(options.dir, path), [bytes]);
    } finally {
      await from.close?.();
    }
    copied.push(joinPath(options.dir, path));
  }

  const weightMap: Record<string, string> = {};
  const paths: string[] = [];
  let resumedShards = 0;
  for (let s = 0; s < shards.length; s++) {
    const file = shardName(s, shards.length);
    const path = joinPath(options.dir, file);
    const list = shards[s];
    const { header, dataBytes } = safetensorsHeader(list.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })), metadata);
    for (const t of list) weightMap[t.name] = file;
    paths.push(path);
    if (options.resumeFrom && await shardPresent(options.resumeFrom, path, header, dataBytes)) {
      resumedShards++;
      for (const t of list) report(t);
      continue;
    }
    async function* chunks(): AsyncGenerator<Bytes> {
      yield header;
      for (const t of list) {
        const b = await t.make();
        if (b.byteLength !== t.bytes) throw new Error(`import: tensor "${t.name}" came out as ${b.byteLength} bytes, expected ${t.bytes}`);
        yield b;
        report(t);
      }
    }
    await sink.write(path, chunks());
  }

  const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
  const { format: _pt, ...usaf } = metadata;
  // the original's fingerprint (tensors not read above, e.g. in resumed shards or not in the spec, are hashed now)
  const fingerprint = await fingerprintOf(original, config ?? await readConfig(srcFolder), crcs);
  const index = JSON.stringify({ metadata: { total_size: progress.totalBytes, ...usaf, [STORED_ORIGINAL_KEY]: fingerprint, ...(options.source !== undefined ? { [STORED_SOURCE_KEY]: options.source } : {}) }, weight_map: sorted }, null, 2);
  const indexPath = joinPath(options.dir, INDEX_FILE);
  await sink.write(indexPath, [asBytes(new TextEncoder().encode(`${index}\n`))]);
  await sink.commit?.();
  return { shards: paths, index: indexPath, copied, resumedShards, tensors: tensors.length, bytesOut: progress.totalBytes, bytesRead, groupSize: G };
}
