// A model checkpoint's fingerprint: every tensor's name, dtype, shape and CRC-32 of its raw bytes, plus config.json's
// hash. A v2 delta (docs/delta-format.md) carries its original's; a stored 4-bit model records it at import.

import type { Bytes } from '../io/byte-source.ts';
import { INDEX_FILE, type Checkpoint } from '../io/checkpoint.ts';
import { isDtype, type Dtype } from '../io/dtype.ts';
import type { FileSet } from '../io/folder.ts';
import type { TensorInfo } from '../io/safetensors.ts';
import { canonicalJson, crc32, DeltaError, hex32 } from './delta.ts';

export interface TensorPrint {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** CRC-32 (hex, as zlib) of the tensor's raw little-endian bytes in the checkpoint. */
  crc: string;
}

export interface ModelFingerprint {
  /** Every tensor of the checkpoint, sorted by name. */
  tensors: TensorPrint[];
  /** CRC-32 (hex) of config.json as canonical JSON (sorted keys, no spaces), or null when unknown. */
  config: string | null;
}

/** Pieces a tensor is hashed in. */
const HASH_CHUNK = 64 << 20;

/** CRC-32 (hex) of a config.json (bytes or text) as canonical JSON: key order and spacing do not matter. */
export function configHash(config: Uint8Array | string): string {
  const text = typeof config === 'string' ? config : new TextDecoder().decode(config);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new DeltaError(`config.json is not valid JSON: ${(e as Error).message}`);
  }
  return hex32(crc32(new TextEncoder().encode(canonicalJson(json))));
}

/** One CRC-32 (hex) over the whole fingerprint: the sorted lines `name\tdtype\tshape\tcrc`, then the config hash. */
export function fingerprintDigest(fp: ModelFingerprint): string {
  const lines = fp.tensors.map((t) => `${t.name}\t${t.dtype}\t${t.shape.join('x')}\t${t.crc}\n`).join('');
  return hex32(crc32(new TextEncoder().encode(`${lines}config\t${fp.config ?? '-'}\n`)));
}

/** config.json's bytes from a model folder, or null when it has none. */
export async function readConfig(folder: FileSet): Promise<Bytes | null> {
  const src = await folder.open('config.json');
  if (!src) return null;
  try {
    return await src.read(0, await src.size());
  } finally {
    await src.close?.();
  }
}

/** CRC-32 of one tensor's bytes, read in pieces. */
export async function tensorCrc(ckpt: Checkpoint, t: TensorInfo): Promise<number> {
  let crc = 0;
  for (let at = 0; at < t.byteLength; at += HASH_CHUNK) crc = crc32(await ckpt.readTensorRange(t.name, at, Math.min(HASH_CHUNK, t.byteLength - at)), crc);
  return crc;
}

/** The fingerprint from per-tensor CRCs (`crcs`, by name); tensors missing there are read and hashed now. */
export async function fingerprintOf(ckpt: Checkpoint, config: Uint8Array | string | null, crcs: ReadonlyMap<string, number> = new Map()): Promise<ModelFingerprint> {
  const tensors: TensorPrint[] = [];
  for (const name of [...ckpt.tensors.keys()].sort()) {
    const t = ckpt.tensors.get(name)!;
    const crc = crcs.get(name) ?? await tensorCrc(ckpt, t);
    tensors.push({ name, dtype: t.dtype, shape: [...t.shape], crc: hex32(crc) });
  }
  return { tensors, config: config === null ? null : configHash(config) };
}

/** `ckpt` with every whole-tensor read (readTensor) hashed into `crcs` on the way: a streaming import records its source. */
export function hashingCheckpoint(ckpt: Checkpoint): { ckpt: Checkpoint; crcs: Map<string, number> } {
  const crcs = new Map<string, number>();
  return {
    crcs,
    ckpt: {
      ...ckpt,
      readTensor: async (name: string): Promise<Bytes> => {
        const b = await ckpt.readTensor(name);
        crcs.set(name, crc32(b));
        return b;
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Checking and parsing

const shapeText = (s: readonly number[]): string => `[${s.join(', ')}]`;

/**
 * Throws DeltaError naming the first difference between `want` and the checkpoint's tensor list (name, dtype, shape) or
 * config.json hash (when both are known). The bytes are checked as they are read (checkTensorCrc).
 */
export function checkTensorList(want: ModelFingerprint, have: Checkpoint, haveConfig: Uint8Array | string | null, what = 'the base'): void {
  const names = [...have.tensors.keys()].sort();
  const wanted = new Set(want.tensors.map((t) => t.name));
  for (const t of want.tensors) {
    const h = have.tensors.get(t.name);
    if (!h) throw new DeltaError(`${what} has no tensor "${t.name}" (the delta's original has ${want.tensors.length} tensors, this one ${names.length}): not the model the delta was made from`);
    if (h.dtype !== t.dtype || h.shape.join() !== t.shape.join()) {
      throw new DeltaError(`"${t.name}" is ${h.dtype} ${shapeText(h.shape)} in ${what}, ${t.dtype} ${shapeText(t.shape)} in the delta's original`);
    }
  }
  const extra = names.find((n) => !wanted.has(n));
  if (extra !== undefined) throw new DeltaError(`${what} has a tensor "${extra}" the delta's original does not have: not the model the delta was made from`);
  if (want.config !== null && haveConfig !== null) {
    const h = configHash(haveConfig);
    if (h !== want.config) throw new DeltaError(`${what}'s config.json differs from the delta's original (hash ${h}, expected ${want.config})`);
  }
}

/** Throws DeltaError when a tensor's bytes do not hash to what the fingerprint says. */
export function checkTensorCrc(want: TensorPrint, crc: number, what = 'the base'): void {
  if (hex32(crc) !== want.crc) {
    throw new DeltaError(`"${want.name}" in ${what} differs from the delta's original (CRC-32 ${hex32(crc)}, expected ${want.crc}): not the model the delta was made from`);
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A fingerprint from its JSON form, validated (`where` names the source in errors). */
export function parseFingerprint(raw: unknown, where: string): ModelFingerprint {
  const bad = (why: string): DeltaError => new DeltaError(`${where}: ${why}`);
  if (!isObj(raw) || !Array.isArray(raw.tensors) || (raw.config !== null && typeof raw.config !== 'string')) throw bad('not {tensors, config}');
  const tensors: TensorPrint[] = [];
  for (const t of raw.tensors as unknown[]) {
    const ok = isObj(t) && typeof t.name === 'string' && isDtype(t.dtype) && Array.isArray(t.shape)
      && t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) && typeof t.crc === 'string' && /^[0-9a-f]{8}$/.test(t.crc);
    if (!ok) throw bad(`tensor entry ${JSON.stringify(t).slice(0, 120)} is malformed`);
    tensors.push({ name: t.name as string, dtype: t.dtype as Dtype, shape: t.shape as number[], crc: t.crc as string });
  }
  return { tensors: tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)), config: raw.config as string | null };
}

/** Key of the original's fingerprint in a stored 4-bit model's index metadata (FORMAT.md). */
export const STORED_ORIGINAL_KEY = 'usaf_original';

/** Key of the original's location (as given to the import: a folder path or URL) in a stored model's index metadata. */
export const STORED_SOURCE_KEY = 'usaf_original_source';

/**
 * The original's fingerprint (and location, when recorded) a stored 4-bit model wrote into its index metadata at import,
 * or null (a plain model, or a store imported before fingerprints were recorded).
 */
export async function readStoredOriginal(folder: FileSet): Promise<{ fingerprint: ModelFingerprint; source: string | null } | null> {
  const src = await folder.open(INDEX_FILE);
  if (!src) return null;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(await src.read(0, await src.size())));
  } catch (e) {
    throw new DeltaError(`${folder.name}/${INDEX_FILE}: not valid JSON: ${(e as Error).message}`);
  } finally {
    await src.close?.();
  }
  const meta = isObj(json) && isObj(json.metadata) ? json.metadata : null;
  if (!meta || meta[STORED_ORIGINAL_KEY] === undefined) return null;
  const source = meta[STORED_SOURCE_KEY];
  return {
    fingerprint: parseFingerprint(meta[STORED_ORIGINAL_KEY], `${folder.name}/${INDEX_FILE} metadata "${STORED_ORIGINAL_KEY}"`),
    source: typeof source === 'string' ? source : null,
  };
}
