// Hub-format export of a fine-tuned model: the base checkpoint with the changed tensors replaced, as sharded safetensors.
// Streams tensor by tensor through a FileSink (unchanged tensors copied byte for byte in bounded pieces, never the whole model).

import type { ByteSource, Bytes } from '../io/byte-source.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { INDEX_FILE } from '../io/checkpoint.ts';
import { encodeBf16, type Dtype } from '../io/dtype.ts';
import type { FileSet } from '../io/folder.ts';
import type { TensorInfo } from '../io/safetensors.ts';
import { safetensorsHeader } from '../io/safetensors-write.ts';
import { asBytes, joinPath, type FileSink } from '../io/sink.ts';
import { f16Bits } from '../quant/format.ts';
import { crc32 } from './delta.ts';

/** Files copied from the base folder when present (config, generation settings, tokenizer, chat template). */
export const COPIED_FILES: readonly string[] = [
  'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  'added_tokens.json', 'vocab.json', 'merges.txt', 'tokenizer.model', 'chat_template.jinja', 'chat_template.json',
];

export const DEFAULT_MAX_SHARD_BYTES = 2_000_000_000;
/** Size of the pieces an unchanged tensor is copied in. */
export const DEFAULT_CHUNK_BYTES = 64 << 20;

export interface ExportProgress {
  /** Tensor data bytes written so far, out of totalBytes (the index's metadata.total_size). */
  bytes: number;
  totalBytes: number;
  /** Tensors fully written so far, out of totalTensors. */
  tensors: number;
  totalTensors: number;
  /** The shard being written (its path within the sink; '' before the first). */
  file: string;
}

export interface ExportOptions {
  /** Folder inside the sink to write into ('' = its root). */
  dir?: string;
  /** Cap on one shard's tensor data; a tensor larger than this gets a shard of its own. */
  maxShardBytes?: number;
  chunkBytes?: number;
  /** Files copied from the base folder when present (default COPIED_FILES). */
  copyFiles?: readonly string[];
  onProgress?: (p: ExportProgress) => void;
}

export interface ExportResult {
  /** Shard paths within the sink, in order. */
  shards: string[];
  /** Index path within the sink. */
  index: string;
  /** Paths of the files copied from the base folder. */
  copied: string[];
  /** Sum of all tensors' data bytes. */
  totalSize: number;
}

// ---------------------------------------------------------------------------------------------
// Encoding a changed tensor in its original dtype

/** f32 values → raw little-endian bytes of `dtype` (bf16 and f16 round to nearest, ties to even). */
export function encodeAs(dtype: Dtype, values: Float32Array): Bytes {
  switch (dtype) {
    case 'BF16': return encodeBf16(values);
    case 'F16': {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = f16Bits(values[i]);
      return new Uint8Array(out.buffer);
    }
    case 'F32': return new Uint8Array(values.slice().buffer);
    case 'F64': return new Uint8Array(Float64Array.from(values).buffer);
    default: throw new Error(`cannot write trained values as ${dtype}`);
  }
}

const numel = (shape: readonly number[]): number => shape.reduce((n, d) => n * d, 1);

/** Throws unless every changed tensor is in the base, has its element count, a float dtype and finite values. */
export function checkChanged(base: Checkpoint, changed: ReadonlyMap<string, Float32Array>): void {
  for (const [name, values] of changed) {
    const t = base.tensors.get(name);
    if (!t) throw new Error(`changed tensor "${name}" is not in the base checkpoint`);
    if (t.dtype !== 'BF16' && t.dtype !== 'F16' && t.dtype !== 'F32' && t.dtype !== 'F64') {
      throw new Error(`changed tensor "${name}": the base stores it as ${t.dtype}; only BF16, F16, F32 and F64 can be written`);
    }
    if (values.length !== numel(t.shape)) {
      throw new Error(`changed tensor "${name}": ${values.length} values, shape [${t.shape.join(', ')}] needs ${numel(t.shape)}`);
    }
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) throw new Error(`changed tensor "${name}": value ${values[i]} at flat index ${i}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Shard plan and streaming

/** Tensors in base storage order (file, then offset), packed greedily into shards of at most `cap` data bytes. */
export function planShards(tensors: Iterable<TensorInfo>, cap: number): TensorInfo[][] {
  if (!(cap > 0)) throw new RangeError(`maxShardBytes must be positive, got ${cap}`);
  const sorted = [...tensors].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.begin - b.begin));
  const shards: TensorInfo[][] = [];
  let cur: TensorInfo[] = [];
  let size = 0;
  for (const t of sorted) {
    if (cur.length > 0 && size + t.byteLength > cap) { shards.push(cur); cur = []; size = 0; }
    cur.push(t);
    size += t.byteLength;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);
  return shards;
}

export function shardName(i: number, n: number): string {
  const pad = (k: number): string => String(k).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

/** One piece of a shard's data: how to get its bytes, and whether it ends a tensor. */
interface Piece { get: () => Promise<Bytes>; endsTensor: boolean }

/** Yields the pieces' bytes in order, starting each read before the previous piece is consumed (one ahead). */
async function* readAhead(pieces: Iterable<Piece>): AsyncGenerator<{ bytes: Bytes; endsTensor: boolean }> {
  let pending: { bytes: Promise<Bytes>; endsTensor: boolean } | null = null;
  for (const piece of pieces) {
    const next = { bytes: piece.get(), endsTensor: piece.endsTensor };
    next.bytes.catch(() => undefined); // a rejection is seen when awaited; none unhandled if the consumer stops first
    if (pending) yield { bytes: await pending.bytes, endsTensor: pending.endsTensor };
    pending = next;
  }
  if (pending) yield { bytes: await pending.bytes, endsTensor: pending.endsTensor };
}

/** A whole byte source, in pieces. */
async function* sourcePieces(src: ByteSource, chunkBytes: number): AsyncGenerator<Bytes> {
  const size = await src.size();
  for (let at = 0; at < size; at += chunkBytes) yield await src.read(at, Math.min(chunkBytes, size - at));
}

// ---------------------------------------------------------------------------------------------
// Writing a Hub checkpoint, tensor by tensor

/** How a tensor is written: null = copied from the base byte for byte, else a function giving its new bytes. */
export type Replace = (t: TensorInfo) => (() => Promise<Bytes>) | null;

export interface WriteHubOptions extends ExportOptions {
  /** Called with each copied tensor's CRC-32 (of its base bytes) once all of them were read, before its last piece is written. */
  checkCopied?: (t: TensorInfo, crc: number) => void;
  /** Stops between pieces (the shard being written is discarded, no index is written). */
  signal?: AbortSignal;
}

/**
 * Writes `base` into `sink` in Hub layout with the tensors `replace` names rewritten: config/tokenizer files copied,
 * `model-0000i-of-0000n.safetensors` shards (metadata {format: 'pt'}), then `model.safetensors.index.json` last (an
 * interrupted write has no index). Host memory: one replaced tensor (or two copy pieces) plus the piece read ahead.
 */
export async function writeHub(
  sink: FileSink, base: Checkpoint, baseFolder: FileSet, replace: Replace, options: WriteHubOptions = {},
): Promise<ExportResult> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!(chunkBytes > 0)) throw new RangeError(`chunkBytes must be positive, got ${chunkBytes}`);
  const stop = (): void => {
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('export cancelled');
  };

  const shards = planShards(base.tensors.values(), options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
  const totalBytes = shards.flat().reduce((n, t) => n + t.byteLength, 0);
  const progress: ExportProgress = { bytes: 0, totalBytes, tensors: 0, totalTensors: base.tensors.size, file: '' };
  const report = (): void => options.onProgress?.({ ...progress });

  const copied: string[] = [];
  for (const path of options.copyFiles ?? COPIED_FILES) {
    stop();
    const src = await baseFolder.open(path);
    if (!src) continue;
    const out = joinPath(options.dir, path);
    try {
      await sink.write(out, sourcePieces(src, chunkBytes));
    } finally {
      await src.close?.();
    }
    copied.push(out);
  }

  const weightMap: Record<string, string> = {};
  const shardPaths: string[] = [];
  report();
  for (let s = 0; s < shards.length; s++) {
    const tensors = shards[s];
    const file = shardName(s, shards.length);
    const { header } = safetensorsHeader(tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })), { format: 'pt' });
    function* plan(): Generator<Piece> {
      for (const t of tensors) {
        const make = replace(t);
        if (make) {
          yield { get: async () => {
            const b = await make();
            if (b.byteLength !== t.byteLength) throw new Error(`"${t.name}": ${b.byteLength} bytes written, its shape needs ${t.byteLength}`);
            return b;
          }, endsTensor: true };
        } else if (t.byteLength === 0) {
          options.checkCopied?.(t, 0);
          yield { get: async () => new Uint8Array(0), endsTensor: true };
        } else {
          let crc = 0;
          let chain: Promise<unknown> = Promise.resolve(); // reads of one tensor resolve in order, so the CRC runs in order
          for (let at = 0; at < t.byteLength; at += chunkBytes) {
            const len = Math.min(chunkBytes, t.byteLength - at);
            const last = at + len === t.byteLength;
            const get = (): Promise<Bytes> => {
              const p = chain.then(async () => {
                const b = await base.readTensorRange(t.name, at, len);
                if (options.checkCopied) {
                  crc = crc32(b, crc);
                  if (last) options.checkCopied(t, crc);
                }
                return b;
              });
              chain = p.catch(() => undefined);
              return p;
            };
            yield { get, endsTensor: last };
          }
        }
      }
    }
    const path = joinPath(options.dir, file);
    async function* pieces(): AsyncGenerator<Bytes> {
      progress.file = path;
      yield header;
      for await (const { bytes, endsTensor } of readAhead(plan())) {
        stop();
        yield bytes;
        progress.bytes += bytes.byteLength;
        if (endsTensor) progress.tensors++;
        report();
      }
    }
    await sink.write(path, pieces());
    shardPaths.push(path);
    for (const t of tensors) weightMap[t.name] = file;
  }

  stop();
  const sortedMap = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
  const index = JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: sortedMap }, null, 2);
  const indexPath = joinPath(options.dir, INDEX_FILE);
  await sink.write(indexPath, [asBytes(new TextEncoder().encode(`${index}\n`))]);
  await sink.commit?.();
  return { shards: shardPaths, index: indexPath, copied, totalSize: totalBytes };
}

/**
 * Writes the fine-tuned model into `sink` in Hub layout (writeHub). `changed` holds full new values of the changed
 * tensors, under the base's names; they are stored in the base dtype.
 */
export async function exportModel(
  sink: FileSink, base: Checkpoint, baseFolder: FileSet, changed: ReadonlyMap<string, Float32Array>,
  options: ExportOptions = {},
): Promise<ExportResult> {
  checkChanged(base, changed);
  return writeHub(sink, base, baseFolder, (t) => {
    const values = changed.get(t.name);
    return values ? async () => encodeAs(t.dtype, values) : null;
  }, options);
}
