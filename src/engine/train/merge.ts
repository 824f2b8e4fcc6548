// Merging a sparse delta onto the original model (docs/delta-format.md): at the delta's entries the value becomes
// round_to_dtype(f32(original + d)); every other byte of the original is copied. Streamed tensor by tensor into Hub shards.

import type { ByteSource, Bytes } from '../io/byte-source.ts';
import { openCheckpoint, type Checkpoint } from '../io/checkpoint.ts';
import { DTYPE_BYTES, decodeF32, f16ToF32, type Dtype } from '../io/dtype.ts';
import type { FileSet } from '../io/folder.ts';
import type { TensorInfo } from '../io/safetensors.ts';
import type { FileSink } from '../io/sink.ts';
import { checkBase, crc32, DeltaError, hex32 } from './delta.ts';
import { openDeltaAny, type OpenedDelta } from './delta-v2.ts';
import { encodeAs, writeHub, type Replace } from './export.ts';
import { checkTensorCrc, checkTensorList, readConfig, tensorCrc, type TensorPrint } from './fingerprint.ts';

export interface MergeProgress { file: string; tensorsDone: number; tensors: number; bytesDone: number; bytes: number }
export interface MergeOptions {
  /** Cap on one shard's tensor data (default 2 GB; the Hub's limit is 5 GB). */
  maxShardBytes?: number;
  onProgress?: (p: MergeProgress) => void;
  signal?: AbortSignal;
  /** Size of the pieces an unchanged tensor is copied in (default 64 MiB). */
  chunkBytes?: number;
}

/** Original dtypes that can take trained values. */
export const MERGEABLE: ReadonlySet<Dtype> = new Set(['BF16', 'F16', 'F32', 'F64']);

// ---------------------------------------------------------------------------------------------
// The rule

/** Element i of raw little-endian `bytes` of a float dtype, as a number (exact). */
function elementReader(dtype: Dtype, bytes: Bytes): (i: number) => number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  switch (dtype) {
    case 'BF16': return (i) => { u[0] = v.getUint16(2 * i, true) << 16; return f[0]!; };
    case 'F16': return (i) => f16ToF32(v.getUint16(2 * i, true));
    case 'F32': return (i) => v.getFloat32(4 * i, true);
    default: return (i) => v.getFloat64(8 * i, true);
  }
}

/**
 * A tensor's merged bytes: `original` (raw, `dtype`) with, at `indices` (null: every entry), the value
 * round_to_dtype(f32(original + d)) for differences (`mode` 'diff', v2) or round_to_dtype(v) for new values ('value', v1).
 * Rounding: bf16 and f16 to nearest, ties to even (encodeAs); f32 as is. Every other byte is the original's.
 */
export function mergeTensor(name: string, dtype: Dtype, original: Bytes, indices: Uint32Array | null, values: Float32Array, mode: 'diff' | 'value'): Bytes {
  if (!MERGEABLE.has(dtype)) throw new DeltaError(`"${name}" is ${dtype} in the original; only BF16, F16, F32 and F64 tensors can take trained values`);
  const eb = DTYPE_BYTES[dtype];
  const n = original.byteLength / eb;
  if (indices === null && values.length !== n) throw new DeltaError(`"${name}": ${values.length} dense entries for ${n} elements`);
  const count = indices ? indices.length : n;
  const at = (k: number): number => (indices ? indices[k]! : k);
  const merged = new Float32Array(count);
  if (mode === 'value') merged.set(values);
  else if (indices === null) {
    const o = decodeF32(dtype, original);
    for (let k = 0; k < count; k++) merged[k] = Math.fround(o[k]! + values[k]!);
  } else {
    const get = elementReader(dtype, original);
    for (let k = 0; k < count; k++) {
      const i = at(k);
      if (i >= n) throw new DeltaError(`"${name}": index ${i} out of range (${n} elements)`);
      merged[k] = Math.fround(get(i) + values[k]!);
    }
  }
  const enc = encodeAs(dtype, merged);
  if (indices === null) return enc;
  const out = original.slice();
  for (let k = 0; k < count; k++) out.set(enc.subarray(k * eb, (k + 1) * eb), at(k) * eb);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Checking a base against a delta

/** Name, dtype, shape (and config.json) checks; no tensor bytes read. Returns the original's per-tensor prints (v2). */
function checkHeaders(d: OpenedDelta, ckpt: Checkpoint, config: Bytes | null, what: string): Map<string, TensorPrint> | null {
  if (d.version === 2) {
    checkTensorList(d.original!, ckpt, config, what);
    return new Map(d.original!.tensors.map((t) => [t.name, t]));
  }
  checkBase(d.v1!, ckpt, config ?? undefined); // a v1 delta names the tensor list, and each changed tensor's CRC
  return null;
}

/** The CRC check of one original tensor against the delta (v2: every tensor; v1: the changed ones). */
type CrcCheck = (t: TensorInfo, crc: number) => void;

function crcCheck(d: OpenedDelta, prints: Map<string, TensorPrint> | null, what: string): CrcCheck {
  return (t, crc) => {
    if (prints) return checkTensorCrc(prints.get(t.name)!, crc, what);
    const want = d.v1!.tensors[t.name]?.baseCrc;
    if (want !== undefined && hex32(crc) !== want) {
      throw new DeltaError(`"${t.name}" in ${what} differs from the base the version 1 delta was made from (CRC ${hex32(crc)}, expected ${want}); ` +
        'a version 1 delta of a 4-bit run was made over the dequantized model and cannot be merged onto the original');
    }
  };
}

/** Checks `delta` against `base`'s fingerprint; throws DeltaError naming the first mismatch. Reads the trained tensors. */
export async function checkDeltaBase(base: FileSet, delta: ByteSource): Promise<void> {
  const d = await openDeltaAny(delta);
  const ckpt = await openCheckpoint(base);
  try {
    await checkTrainedBase(d, ckpt, base);
  } finally {
    await ckpt.close();
  }
}

/**
 * The tensor list, config and the trained tensors' CRCs of `ckpt` against the delta's fingerprint (throws DeltaError
 * naming the first mismatch); returns the check for the CRC of every other tensor.
 */
async function checkTrainedBase(d: OpenedDelta, ckpt: Checkpoint, base: FileSet): Promise<{ check: CrcCheck; prints: Map<string, TensorPrint> | null }> {
  const what = `the base ${base.name}`;
  const prints = checkHeaders(d, ckpt, await readConfig(base), what);
  const check = crcCheck(d, prints, what);
  for (const name of [...d.parts.keys()].sort()) {
    const t = ckpt.tensors.get(name)!;
    check(t, await tensorCrc(ckpt, t));
  }
  return { check, prints };
}

// ---------------------------------------------------------------------------------------------
// Merging

/**
 * Streams `base` (original Hub folder) with `delta` applied into `sink`: config/tokenizer files copied byte for byte,
 * Hub shards (`maxShardBytes` each), the index last. The base is checked first (tensor list, config, the trained
 * tensors' CRCs) and every other tensor's CRC as it is copied: a mismatch throws DeltaError naming it, and the shard
 * being written is discarded (no index: an unfinished merge). Host memory: one trained tensor (original, merged copy
 * and its delta entries) or two copy pieces, plus the piece read ahead.
 */
export async function mergeModel(base: FileSet, delta: ByteSource, sink: FileSink, o: MergeOptions = {}): Promise<{ shards: string[]; bytes: number }> {
  const d = await openDeltaAny(delta);
  const ckpt = await openCheckpoint(base);
  try {
    // refuse before writing anything when a trained tensor is not the original's
    const { check, prints } = await checkTrainedBase(d, ckpt, base);
    const mode = d.version === 2 ? 'diff' : 'value';
    const replace: Replace = (t) => {
      if (!d.parts.has(t.name)) return null;
      return async () => {
        const original = await ckpt.readTensor(t.name);
        check(t, crc32(original));
        const { indices, values } = await d.read(t.name);
        return mergeTensor(t.name, t.dtype, original, indices, values, mode);
      };
    };
    const r = await writeHub(sink, ckpt, base, replace, {
      maxShardBytes: o.maxShardBytes, chunkBytes: o.chunkBytes, signal: o.signal, checkCopied: prints ? check : undefined,
      onProgress: o.onProgress && ((p) => o.onProgress!({ file: p.file, tensorsDone: p.tensors, tensors: p.totalTensors, bytesDone: p.bytes, bytes: p.totalBytes })),
    });
    return { shards: r.shards, bytes: r.totalSize };
  } finally {
    await ckpt.close();
  }
}
