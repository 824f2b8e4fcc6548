// Compact sparse delta of a fine-tune: per changed tensor, the flat indices and new f32 values of the entries that differ
// from the base (routers in full), in ONE safetensors file bound to its base by hashes; applyDelta refuses any mismatch.
//
// File `usaf-delta.safetensors`, tensors sorted by name:
//   `N::indices`  I32 [count]  flat row-major indices, strictly ascending, u32 bit patterns (= the index below 2^31)
//   `N::values`   F32 [count]  the new values at those indices
//   `N`           F32 [shape]  a dense tensor (routers, or wherever sparse would not be smaller): the full new values
// `__metadata__` (strings): format 'usaf-delta', version '1', base (JSON: tensor-list fingerprint, config hash, counts),
//   tensors (JSON: per N its kind, base dtype and shape, count, CRC-32 of the base tensor's bytes and of its delta bytes),
//   frac and steps when given, plus any extra keys.

import { memorySource, type ByteSource, type Bytes } from '../io/byte-source.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { DTYPE_BYTES, decodeF32, type Dtype } from '../io/dtype.ts';
import { openSafetensors, type SafetensorsFile, type TensorInfo } from '../io/safetensors.ts';
import { encodeSafetensors, type TensorData } from '../io/safetensors-write.ts';

export const DELTA_FILE = 'usaf-delta.safetensors';
export const DELTA_FORMAT = 'usaf-delta';
export const DELTA_VERSION = '1';

export class DeltaError extends Error {
  constructor(detail: string) {
    super(`sparse delta: ${detail}`);
    this.name = 'DeltaError';
  }
}

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, as zlib), slice-by-8

const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let k = 1; k < 8; k++) {
    for (let n = 0; n < 256; n++) {
      const p = t[(k - 1) * 256 + n];
      t[k * 256 + n] = (p >>> 8) ^ t[p & 0xff];
    }
  }
  return t;
})();

/** CRC-32 of `bytes`, continuing from `crc` (the CRC of the bytes before them; 0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  const T = CRC_TABLE;
  let c = ~crc >>> 0;
  let i = 0;
  const n = bytes.length;
  for (; n - i >= 8; i += 8) {
    const a = (c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
    c = T[1792 + (a & 0xff)] ^ T[1536 + ((a >>> 8) & 0xff)] ^ T[1280 + ((a >>> 16) & 0xff)] ^ T[1024 + (a >>> 24)]
      ^ T[768 + bytes[i + 4]] ^ T[512 + bytes[i + 5]] ^ T[256 + bytes[i + 6]] ^ T[bytes[i + 7]];
  }
  for (; i < n; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

export const hex32 = (x: number): string => (x >>> 0).toString(16).padStart(8, '0');

/** The bytes of a typed array (a view when its buffer is a plain ArrayBuffer, else a copy). */
export function bytesOf(a: Float32Array | Uint32Array | Int32Array): Bytes {
  const u8 = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return u8.buffer instanceof ArrayBuffer ? new Uint8Array(u8.buffer, u8.byteOffset, u8.byteLength) : u8.slice();
}

// ---------------------------------------------------------------------------------------------
// What binds a delta to its base

export interface DeltaBase {
  /** CRC-32 (hex) of the sorted lines `name\tdtype\tshape` of every base tensor. */
  fingerprint: string;
  /** CRC-32 (hex) of config.json as canonical JSON (sorted keys, no spaces), or null when not given. */
  config: string | null;
  tensors: number;
  params: number;
}

/** JSON text with object keys sorted at every level: the same config in any key order or spacing gives the same text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

const numel = (shape: readonly number[]): number => shape.reduce((n, d) => n * d, 1);

/** The base's identity as stored in a delta; `config` is config.json's bytes or text. */
export function deltaBase(base: Checkpoint, config?: Uint8Array | string): DeltaBase {
  const lines = [...base.tensors.values()].map((t) => `${t.name}\t${t.dtype}\t${t.shape.join('x')}\n`).sort();
  let configHash: string | null = null;
  if (config !== undefined) {
    const text = typeof config === 'string' ? config : new TextDecoder().decode(config);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new DeltaError(`the base config.json is not valid JSON: ${(e as Error).message}`);
    }
    configHash = hex32(crc32(new TextEncoder().encode(canonicalJson(json))));
  }
  return {
    fingerprint: hex32(crc32(new TextEncoder().encode(lines.join('')))),
    config: configHash,
    tensors: base.tensors.size,
    params: [...base.tensors.values()].reduce((n, t) => n + numel(t.shape), 0),
  };
}

// ---------------------------------------------------------------------------------------------
// Making a delta

export interface DeltaTensor {
  kind: 'sparse' | 'dense';
  /** The base tensor's dtype and shape. */
  dtype: Dtype;
  shape: number[];
  /** Entries stored: changed entries (sparse) or every entry (dense). */
  count: number;
  /** CRC-32 (hex) of the base tensor's raw bytes. */
  baseCrc: string;
  /** CRC-32 (hex) of the delta's bytes for it: indices then values (sparse), values (dense). */
  crc: string;
}

export interface DeltaInfo {
  format: string;
  version: string;
  base: DeltaBase;
  tensors: Record<string, DeltaTensor>;
  frac: number | null;
  steps: number | null;
  /** Other metadata keys, as written. */
  extra: Record<string, string>;
}

export interface DeltaOptions {
  /** The base's config.json (bytes or text): its hash is stored and checked by applyDelta when it gets one too. */
  baseConfig?: Uint8Array | string;
  /** Fraction of expert weights trained, and optimizer steps done (recorded only). */
  frac?: number;
  steps?: number;
  /** More metadata strings (run id, ...); the reserved keys cannot be overridden. */
  extra?: Record<string, string>;
  /** Tensors stored dense (default: routers, see isRouterName). A tensor is also stored dense when sparse is not smaller. */
  dense?: (name: string, t: TensorInfo) => boolean;
  /** Elements of the base compared per read (bounds memory on big fused tensors). */
  chunkElems?: number;
}

/** Router weights (Qwen/OLMoE/DeepSeek `mlp.gate.weight`, Mixtral `block_sparse_moe.gate.weight`, its bias, shared gate). */
export function isRouterName(name: string): boolean {
  return /(^|\.)(gate|router)\.weight$/.test(name) || /\.gate\.e_score_correction_bias$/.test(name)
    || /shared_expert_gate\.weight$/.test(name);
}

const RESERVED = new Set(['format', 'version', 'base', 'tensors', 'frac', 'steps']);

/** A growable Uint32Array. */
class U32List {
  data = new Uint32Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const grown = new Uint32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length++] = v;
  }
  view(): Uint32Array { return this.data.subarray(0, this.length); }
}

/** Reads a base tensor in chunks of `chunkElems` elements: CRC of all its bytes, and each chunk decoded to f32. */
async function scanBase(
  base: Checkpoint, t: TensorInfo, chunkElems: number, each: (values: Float32Array, first: number) => void,
): Promise<number> {
  const eb = DTYPE_BYTES[t.dtype];
  const n = t.byteLength / eb;
  let crc = 0;
  for (let first = 0; first < n; first += chunkElems) {
    const count = Math.min(chunkElems, n - first);
    const bytes = await base.readTensorRange(t.name, first * eb, count * eb);
    crc = crc32(bytes, crc);
    each(decodeF32(t.dtype, bytes), first);
  }
  return crc;
}

/**
 * The delta of `changed` (full new values of changed tensors, base names) against `base`: entries whose f32 bits differ
 * from the decoded base value. Returns the file as chunks (write them as DELTA_FILE) and its parsed description.
 */
export async function makeDelta(
  base: Checkpoint, changed: ReadonlyMap<string, Float32Array>, options: DeltaOptions = {},
): Promise<{ chunks: Bytes[]; info: DeltaInfo; bytes: number }> {
  const chunkElems = options.chunkElems ?? (16 << 20);
  const dense = options.dense ?? ((name: string) => isRouterName(name));
  const tensors: Record<string, DeltaTensor> = {};
  const data: TensorData[] = [];
  for (const name of [...changed.keys()].sort()) {
    const values = changed.get(name)!;
    const t = base.tensors.get(name);
    if (!t) throw new DeltaError(`changed tensor "${name}" is not in the base checkpoint`);
    if (name.includes('::')) throw new DeltaError(`tensor name "${name}" contains "::", which the delta format reserves`);
    const n = numel(t.shape);
    if (values.length !== n) throw new DeltaError(`"${name}": ${values.length} values, shape [${t.shape.join(', ')}] needs ${n}`);
    if (n > 2 ** 32) throw new DeltaError(`"${name}": ${n} elements do not fit u32 indices`);
    checkFinite(name, values);
    if (t.dtype !== 'BF16' && t.dtype !== 'F16' && t.dtype !== 'F32' && t.dtype !== 'F64') {
      throw new DeltaError(`"${name}": base dtype ${t.dtype} is not a float type`);
    }
    const newBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    const idx = new U32List();
    const baseCrc = await scanBase(base, t, chunkElems, (b, first) => {
      const bBits = new Uint32Array(b.buffer, b.byteOffset, b.length);
      for (let i = 0; i < b.length; i++) if (bBits[i] !== newBits[first + i]) idx.push(first + i);
    });
    const entry = { dtype: t.dtype, shape: [...t.shape], baseCrc: hex32(baseCrc) };
    if (dense(name, t) || 2 * idx.length >= n) {
      const v = bytesOf(values);
      tensors[name] = { kind: 'dense', ...entry, count: n, crc: hex32(crc32(v)) };
      data.push({ name, dtype: 'F32', shape: [...t.shape], data: v });
    } else {
      const indices = idx.view();
      const vals = new Float32Array(indices.length);
      for (let k = 0; k < indices.length; k++) vals[k] = values[indices[k]];
      const ib = bytesOf(indices);
      const vb = bytesOf(vals);
      tensors[name] = { kind: 'sparse', ...entry, count: indices.length, crc: hex32(crc32(vb, crc32(ib))) };
      data.push({ name: `${name}::indices`, dtype: 'I32', shape: [indices.length], data: ib });
      data.push({ name: `${name}::values`, dtype: 'F32', shape: [indices.length], data: vb });
    }
  }
  const info: DeltaInfo = {
    format: DELTA_FORMAT, version: DELTA_VERSION, base: deltaBase(base, options.baseConfig), tensors,
    frac: options.frac ?? null, steps: options.steps ?? null, extra: {},
  };
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(options.extra ?? {})) {
    if (RESERVED.has(k)) throw new DeltaError(`metadata key "${k}" is reserved`);
    metadata[k] = v;
    info.extra[k] = v;
  }
  Object.assign(metadata, {
    format: DELTA_FORMAT, version: DELTA_VERSION, base: JSON.stringify(info.base), tensors: JSON.stringify(tensors),
  });
  if (info.frac !== null) metadata.frac = String(info.frac);
  if (info.steps !== null) metadata.steps = String(info.steps);
  const chunks = encodeSafetensors(data, metadata);
  return { chunks, info, bytes: chunks.reduce((n, c) => n + c.byteLength, 0) };
}

// ---------------------------------------------------------------------------------------------
// Reading and applying

export async function openDelta(delta: ByteSource | Uint8Array): Promise<SafetensorsFile> {
  const source = delta instanceof Uint8Array ? memorySource(delta, DELTA_FILE) : delta;
  try {
    return await openSafetensors(source);
  } catch (e) {
    throw new DeltaError(`not a readable safetensors file (truncated or corrupt?): ${(e as Error).message}`);
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function parseJsonField(meta: Record<string, string>, key: string): unknown {
  if (meta[key] === undefined) throw new DeltaError(`metadata "${key}" is missing`);
  try {
    return JSON.parse(meta[key]);
  } catch (e) {
    throw new DeltaError(`metadata "${key}" is not valid JSON: ${(e as Error).message}`);
  }
}

/** Parses and checks a delta file's description (format, version, per-tensor entries) without reading its data. */
export function parseInfo(file: SafetensorsFile): DeltaInfo {
  const meta = file.metadata;
  if (meta.format !== DELTA_FORMAT) {
    throw new DeltaError(`metadata format is ${JSON.stringify(meta.format ?? null)}, not "${DELTA_FORMAT}"`);
  }
  if (meta.version !== DELTA_VERSION) {
    if (meta.version === '2') throw new DeltaError('version 2 holds differences from the original model, not new values: apply it with `usaf merge` (mergeModel)');
    throw new DeltaError(`version ${JSON.stringify(meta.version ?? null)} is not supported (this build reads "${DELTA_VERSION}" and, with usaf merge, "2")`);
  }
  const base = parseJsonField(meta, 'base');
  if (!isObj(base) || typeof base.fingerprint !== 'string' || (base.config !== null && typeof base.config !== 'string')) {
    throw new DeltaError('metadata "base" is not {fingerprint, config, tensors, params}');
  }
  const rawTensors = parseJsonField(meta, 'tensors');
  if (!isObj(rawTensors)) throw new DeltaError('metadata "tensors" is not an object');
  const tensors: Record<string, DeltaTensor> = {};
  for (const [name, raw] of Object.entries(rawTensors)) {
    const ok = isObj(raw) && (raw.kind === 'sparse' || raw.kind === 'dense') && typeof raw.dtype === 'string'
      && Array.isArray(raw.shape) && raw.shape.every((d) => Number.isSafeInteger(d) && d >= 0)
      && Number.isSafeInteger(raw.count) && typeof raw.baseCrc === 'string' && typeof raw.crc === 'string';
    if (!ok) throw new DeltaError(`metadata "tensors" entry for "${name}" is malformed`);
    tensors[name] = raw as unknown as DeltaTensor;
  }
  const num = (k: string): number | null => {
    if (meta[k] === undefined) return null;
    const v = Number(meta[k]);
    if (!Number.isFinite(v)) throw new DeltaError(`metadata "${k}" is not a number: ${JSON.stringify(meta[k])}`);
    return v;
  };
  const extra = Object.fromEntries(Object.entries(meta).filter(([k]) => !RESERVED.has(k)));
  return {
    format: meta.format, version: meta.version, base: base as unknown as DeltaBase, tensors,
    frac: num('frac'), steps: num('steps'), extra,
  };
}

/** A delta's description (what it changes, for which base), read from its header only. */
export async function readDeltaInfo(delta: ByteSource | Uint8Array): Promise<DeltaInfo> {
  return parseInfo(await openDelta(delta));
}

/** The file's tensors must be exactly those the description names, with the dtypes and shapes it implies. */
export function checkLayout(file: SafetensorsFile, info: DeltaInfo): void {
  const want = new Map<string, { dtype: Dtype; shape: number[] }>();
  for (const [name, d] of Object.entries(info.tensors)) {
    if (d.kind === 'dense') {
      if (d.count !== numel(d.shape)) throw new DeltaError(`"${name}": dense count ${d.count} is not the size of [${d.shape.join(', ')}]`);
      want.set(name, { dtype: 'F32', shape: d.shape });
    } else {
      want.set(`${name}::indices`, { dtype: 'I32', shape: [d.count] });
      want.set(`${name}::values`, { dtype: 'F32', shape: [d.count] });
    }
  }
  for (const [name, t] of file.tensors) {
    const w = want.get(name);
    if (!w) throw new DeltaError(`tensor "${name}" is in the file but not in its description`);
    if (t.dtype !== w.dtype || t.shape.join() !== w.shape.join()) {
      throw new DeltaError(`tensor "${name}" is ${t.dtype} [${t.shape.join(', ')}], the description says ${w.dtype} [${w.shape.join(', ')}]`);
    }
  }
  for (const name of want.keys()) if (!file.tensors.has(name)) throw new DeltaError(`tensor "${name}" is missing from the file`);
}

/** Throws unless the delta was made from this base: same tensor list and, for every changed tensor, the same bytes. */
export function checkBase(info: DeltaInfo, base: Checkpoint, config: Uint8Array | string | undefined): void {
  for (const [name, d] of Object.entries(info.tensors)) {
    const t = base.tensors.get(name);
    if (!t) throw new DeltaError(`it changes "${name}", which this base model does not have (a delta for another model?)`);
    if (t.dtype !== d.dtype || t.shape.join() !== d.shape.join()) {
      throw new DeltaError(`"${name}" is ${t.dtype} [${t.shape.join(', ')}] in this base, ${d.dtype} [${d.shape.join(', ')}] in the delta's base`);
    }
  }
  const mine = deltaBase(base, config);
  if (mine.fingerprint !== info.base.fingerprint) {
    throw new DeltaError(`made for a different model: its base has ${info.base.tensors} tensors / ${info.base.params} ` +
      `parameters (fingerprint ${info.base.fingerprint}), this one ${mine.tensors} / ${mine.params} (${mine.fingerprint})`);
  }
  if (mine.config !== null && info.base.config !== null && mine.config !== info.base.config) {
    throw new DeltaError(`made for a model with a different config.json (hash ${info.base.config}, this one ${mine.config})`);
  }
}

export function checkFinite(name: string, values: Float32Array): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new DeltaError(`"${name}": non-finite value ${values[i]} (entry ${i})`);
  }
}

export const u32Of = (b: Bytes): Uint32Array => (b.byteOffset % 4 === 0 ? new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4) : new Uint32Array(b.slice().buffer));

/**
 * Full new values of every tensor the delta changes, after checking that the delta is intact (CRCs, ascending
 * in-range indices, finite values) and was made from `base` (tensor list, dtypes, shapes, base bytes; config.json
 * when both sides have it). Throws DeltaError with the reason otherwise.
 */
export async function applyDelta(
  base: Checkpoint, delta: ByteSource | Uint8Array, options: { baseConfig?: Uint8Array | string; chunkElems?: number } = {},
): Promise<Map<string, Float32Array>> {
  const file = await openDelta(delta);
  const info = parseInfo(file);
  checkLayout(file, info);
  checkBase(info, base, options.baseConfig);
  const chunkElems = options.chunkElems ?? (16 << 20);
  const out = new Map<string, Float32Array>();
  for (const [name, d] of Object.entries(info.tensors)) {
    const t = base.tensors.get(name)!;
    const n = numel(t.shape);
    const readPart = async (part: string): Promise<Bytes> => {
      try {
        return await file.readTensor(part);
      } catch (e) {
        throw new DeltaError(`reading "${part}" failed (truncated file?): ${(e as Error).message}`);
      }
    };
    let values: Float32Array;
    if (d.kind === 'dense') {
      const vb = await readPart(name);
      if (hex32(crc32(vb)) !== d.crc) throw new DeltaError(`"${name}": data does not match its CRC (corrupt or tampered file)`);
      values = decodeF32('F32', vb);
      checkFinite(name, values);
      const baseCrc = await scanBase(base, t, chunkElems, () => undefined);
      if (hex32(baseCrc) !== d.baseCrc) {
        throw new DeltaError(`"${name}" in this base differs from the base the delta was made from (CRC ${hex32(baseCrc)}, expected ${d.baseCrc})`);
      }
    } else {
      const ib = await readPart(`${name}::indices`);
      const vb = await readPart(`${name}::values`);
      if (hex32(crc32(vb, crc32(ib))) !== d.crc) {
        throw new DeltaError(`"${name}": indices/values do not match their CRC (corrupt or tampered file)`);
      }
      const indices = u32Of(ib);
      const newValues = decodeF32('F32', vb);
      checkFinite(name, newValues);
      let prev = -1;
      for (let k = 0; k < indices.length; k++) {
        if (indices[k] <= prev || indices[k] >= n) {
          throw new DeltaError(`"${name}": index ${indices[k]} at position ${k} is ` +
            (indices[k] >= n ? `out of range (${n} elements)` : `not above the previous ${prev}`));
        }
        prev = indices[k];
      }
      values = new Float32Array(n);
      const baseCrc = await scanBase(base, t, chunkElems, (b, first) => values.set(b, first));
      if (hex32(baseCrc) !== d.baseCrc) {
        throw new DeltaError(`"${name}" in this base differs from the base the delta was made from (CRC ${hex32(baseCrc)}, expected ${d.baseCrc})`);
      }
      for (let k = 0; k < indices.length; k++) values[indices[k]] = newValues[k];
    }
    out.set(name, values);
  }
  return out;
}
