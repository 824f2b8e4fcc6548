// Version 2 of the sparse delta (docs/delta-format.md): per trained tensor the differences d = trained − base_used at its
// trained entries, bound to the ORIGINAL model by its fingerprint. Writing, and reading v2 or v1 files behind one interface.
//
// File `usaf-delta.safetensors`, tensors sorted by name:
//   `N::indices`  I32 [count]  flat row-major indices, strictly ascending (u32 bit patterns)
//   `N::diff`     F32 [count]  the differences at those indices (sparse), or F32 [shape] every entry's (dense)
// `__metadata__`: format 'usaf-delta', version '2', original (JSON ModelFingerprint), digest, tensors (JSON: per N its
//   kind, original dtype and shape, count, CRC-32 of its delta bytes), settings (JSON), plus any extra keys.

import type { ByteSource, Bytes } from '../io/byte-source.ts';
import type { Dtype } from '../io/dtype.ts';
import { decodeF32 } from '../io/dtype.ts';
import type { SafetensorsFile } from '../io/safetensors.ts';
import { encodeSafetensors, type TensorData } from '../io/safetensors-write.ts';
import {
  bytesOf, checkFinite, checkLayout, crc32, DELTA_FORMAT, DeltaError, hex32, openDelta, parseInfo, u32Of, type DeltaInfo,
} from './delta.ts';
import { fingerprintDigest, parseFingerprint, type ModelFingerprint } from './fingerprint.ts';

export const DELTA_V2 = '2';

/** One trained tensor's differences: at `indices` (ascending), or at every entry when `indices` is null (dense). */
export interface DiffEntry {
  name: string;
  /** The original tensor's dtype and shape. */
  dtype: Dtype;
  shape: number[];
  indices: Uint32Array | null;
  diff: Float32Array;
}

export interface DeltaPart {
  kind: 'sparse' | 'dense';
  dtype: Dtype;
  shape: number[];
  count: number;
  /** CRC-32 (hex) of the stored bytes: indices then differences (sparse), differences (dense). */
  crc: string;
}

const RESERVED = new Set(['format', 'version', 'original', 'digest', 'tensors', 'settings']);
const numel = (shape: readonly number[]): number => shape.reduce((n, d) => n * d, 1);

/** The v2 delta file as chunks (write them as DELTA_FILE). `settings`: the run's settings, recorded as JSON. */
export function encodeDeltaV2(
  entries: readonly DiffEntry[], original: ModelFingerprint, settings: Record<string, unknown>, extra: Record<string, string> = {},
): { chunks: Bytes[]; bytes: number; parts: Record<string, DeltaPart> } {
  const inOriginal = new Map(original.tensors.map((t) => [t.name, t]));
  const parts: Record<string, DeltaPart> = {};
  const data: TensorData[] = [];
  for (const e of [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const o = inOriginal.get(e.name);
    if (!o) throw new DeltaError(`trained tensor "${e.name}" is not in the original model's fingerprint`);
    if (o.dtype !== e.dtype || o.shape.join() !== e.shape.join()) throw new DeltaError(`"${e.name}": ${e.dtype} [${e.shape}] here, ${o.dtype} [${o.shape}] in the original`);
    if (e.name.includes('::')) throw new DeltaError(`tensor name "${e.name}" contains "::", which the delta format reserves`);
    if (parts[e.name]) throw new DeltaError(`"${e.name}" is given twice`);
    checkFinite(e.name, e.diff);
    const n = numel(e.shape);
    if (e.indices === null) {
      if (e.diff.length !== n) throw new DeltaError(`"${e.name}": ${e.diff.length} dense differences, shape [${e.shape}] needs ${n}`);
      const v = bytesOf(e.diff);
      parts[e.name] = { kind: 'dense', dtype: e.dtype, shape: [...e.shape], count: n, crc: hex32(crc32(v)) };
      data.push({ name: `${e.name}::diff`, dtype: 'F32', shape: [...e.shape], data: v });
    } else {
      if (e.indices.length !== e.diff.length) throw new DeltaError(`"${e.name}": ${e.indices.length} indices, ${e.diff.length} differences`);
      checkIndices(e.name, e.indices, n);
      const ib = bytesOf(e.indices), vb = bytesOf(e.diff);
      parts[e.name] = { kind: 'sparse', dtype: e.dtype, shape: [...e.shape], count: e.indices.length, crc: hex32(crc32(vb, crc32(ib))) };
      data.push({ name: `${e.name}::indices`, dtype: 'I32', shape: [e.indices.length], data: ib });
      data.push({ name: `${e.name}::diff`, dtype: 'F32', shape: [e.indices.length], data: vb });
    }
  }
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(extra)) {
    if (RESERVED.has(k)) throw new DeltaError(`metadata key "${k}" is reserved`);
    metadata[k] = v;
  }
  Object.assign(metadata, {
    format: DELTA_FORMAT, version: DELTA_V2, original: JSON.stringify(original), digest: fingerprintDigest(original),
    tensors: JSON.stringify(parts), settings: JSON.stringify(settings),
  });
  const chunks = encodeSafetensors(data, metadata);
  return { chunks, bytes: chunks.reduce((n, c) => n + c.byteLength, 0), parts };
}

function checkIndices(name: string, indices: Uint32Array, n: number): void {
  let prev = -1;
  for (let k = 0; k < indices.length; k++) {
    if (indices[k]! <= prev || indices[k]! >= n) {
      throw new DeltaError(`"${name}": index ${indices[k]} at position ${k} is ` +
        (indices[k]! >= n ? `out of range (${n} elements)` : `not above the previous ${prev}`));
    }
    prev = indices[k]!;
  }
}

// ---------------------------------------------------------------------------------------------
// Reading (v2, and v1 for merging its new values)

export interface OpenedDelta {
  version: 1 | 2;
  /** v2: the original's fingerprint (digest checked). v1: null (its base identity is in `v1`). */
  original: ModelFingerprint | null;
  v1: DeltaInfo | null;
  settings: Record<string, unknown>;
  parts: Map<string, DeltaPart>;
  /**
   * One tensor's stored entries, CRC-checked, indices validated, values finite: at `indices` (null: every entry).
   * v2: the differences; v1: the new values.
   */
  read(name: string): Promise<{ indices: Uint32Array | null; values: Float32Array }>;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function jsonField(meta: Record<string, string>, key: string): unknown {
  if (meta[key] === undefined) throw new DeltaError(`metadata "${key}" is missing`);
  try {
    return JSON.parse(meta[key]);
  } catch (e) {
    throw new DeltaError(`metadata "${key}" is not valid JSON: ${(e as Error).message}`);
  }
}

function parseV2(file: SafetensorsFile): { original: ModelFingerprint; parts: Map<string, DeltaPart>; settings: Record<string, unknown> } {
  const meta = file.metadata;
  const original = parseFingerprint(jsonField(meta, 'original'), 'metadata "original"');
  if (fingerprintDigest(original) !== meta.digest) throw new DeltaError('metadata "original" does not match its digest (corrupt or edited file)');
  const raw = jsonField(meta, 'tensors');
  if (!isObj(raw)) throw new DeltaError('metadata "tensors" is not an object');
  const settings = jsonField(meta, 'settings');
  if (!isObj(settings)) throw new DeltaError('metadata "settings" is not an object');
  const inOriginal = new Map(original.tensors.map((t) => [t.name, t]));
  const parts = new Map<string, DeltaPart>();
  const want = new Map<string, { dtype: string; shape: number[] }>();
  for (const [name, p] of Object.entries(raw)) {
    const ok = isObj(p) && (p.kind === 'sparse' || p.kind === 'dense') && typeof p.dtype === 'string' && Array.isArray(p.shape)
      && p.shape.every((d) => Number.isSafeInteger(d) && d >= 0) && Number.isSafeInteger(p.count) && typeof p.crc === 'string';
    if (!ok) throw new DeltaError(`metadata "tensors" entry for "${name}" is malformed`);
    const part = p as unknown as DeltaPart;
    const o = inOriginal.get(name);
    if (!o || o.dtype !== part.dtype || o.shape.join() !== part.shape.join()) {
      throw new DeltaError(`"${name}" (${part.dtype} [${part.shape}]) is not a tensor of the delta's own original`);
    }
    if (part.kind === 'dense') {
      if (part.count !== numel(part.shape)) throw new DeltaError(`"${name}": dense count ${part.count} is not the size of [${part.shape}]`);
      want.set(`${name}::diff`, { dtype: 'F32', shape: part.shape });
    } else {
      want.set(`${name}::indices`, { dtype: 'I32', shape: [part.count] });
      want.set(`${name}::diff`, { dtype: 'F32', shape: [part.count] });
    }
    parts.set(name, part);
  }
  for (const [n, t] of file.tensors) {
    const w = want.get(n);
    if (!w) throw new DeltaError(`tensor "${n}" is in the file but not in its description`);
    if (t.dtype !== w.dtype || t.shape.join() !== w.shape.join()) throw new DeltaError(`tensor "${n}" is ${t.dtype} [${t.shape}], the description says ${w.dtype} [${w.shape}]`);
  }
  for (const n of want.keys()) if (!file.tensors.has(n)) throw new DeltaError(`tensor "${n}" is missing from the file`);
  return { original, parts, settings: settings as Record<string, unknown> };
}

/** Opens a delta file of version 2, or 1 (read for its new values); refuses anything else in words. */
export async function openDeltaAny(source: ByteSource | Uint8Array): Promise<OpenedDelta> {
  const file = await openDelta(source);
  const meta = file.metadata;
  if (meta.format !== DELTA_FORMAT) throw new DeltaError(`metadata format is ${JSON.stringify(meta.format ?? null)}, not "${DELTA_FORMAT}"`);
  const readPart = async (part: string): Promise<Bytes> => {
    try {
      return await file.readTensor(part);
    } catch (e) {
      throw new DeltaError(`reading "${part}" failed (truncated file?): ${(e as Error).message}`);
    }
  };
  if (meta.version === DELTA_V2) {
    const { original, parts, settings } = parseV2(file);
    return {
      version: 2, original, v1: null, settings, parts,
      read: async (name) => {
        const p = parts.get(name);
        if (!p) throw new DeltaError(`the delta has no tensor "${name}"`);
        const vb = await readPart(`${name}::diff`);
        const ib = p.kind === 'sparse' ? await readPart(`${name}::indices`) : null;
        if (hex32(ib ? crc32(vb, crc32(ib)) : crc32(vb)) !== p.crc) throw new DeltaError(`"${name}": data does not match its CRC (corrupt or tampered file)`);
        const values = decodeF32('F32', vb);
        checkFinite(name, values);
        const indices = ib ? u32Of(ib) : null;
        if (indices) checkIndices(name, indices, numel(p.shape));
        return { indices, values };
      },
    };
  }
  if (meta.version !== '1') {
    throw new DeltaError(`version ${JSON.stringify(meta.version ?? null)} is not supported (this build reads "1" and "2")`);
  }
  const info = parseInfo(file);
  checkLayout(file, info);
  const parts = new Map(Object.entries(info.tensors).map(([n, d]) => [n, { kind: d.kind, dtype: d.dtype, shape: d.shape, count: d.count, crc: d.crc }]));
  return {
    version: 1, original: null, v1: info, settings: { frac: info.frac, steps: info.steps }, parts,
    read: async (name) => {
      const d = info.tensors[name];
      if (!d) throw new DeltaError(`the delta has no tensor "${name}"`);
      const vb = await readPart(d.kind === 'dense' ? name : `${name}::values`);
      const ib = d.kind === 'sparse' ? await readPart(`${name}::indices`) : null;
      if (hex32(ib ? crc32(vb, crc32(ib)) : crc32(vb)) !== d.crc) throw new DeltaError(`"${name}": data does not match its CRC (corrupt or tampered file)`);
      const values = decodeF32('F32', vb);
      checkFinite(name, values);
      const indices = ib ? u32Of(ib) : null;
      if (indices) checkIndices(name, indices, numel(d.shape));
      return { indices, values };
    },
  };
}
