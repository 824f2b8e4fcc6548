// Safetensors reader: validates the header exactly as the format specifies, then reads single tensors or byte ranges.
// Opening reads only the 8-byte length and the JSON header; every error is a SafetensorsError naming file and tensor.

import { DTYPE_BYTES, DTYPES, isDtype, type Dtype } from './dtype.ts';
import type { ByteSource, Bytes } from './byte-source.ts';

/** The format's limit on the JSON header's length. */
export const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  constructor(readonly file: string, detail: string, readonly tensor?: string) {
    super(tensor === undefined ? `${file}: ${detail}` : `${file}: tensor "${tensor}": ${detail}`);
    this.name = 'SafetensorsError';
  }
}

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** data_offsets, relative to the start of the data section. */
  begin: number;
  end: number;
  byteLength: number;
  /** Name of the file (ByteSource) holding it. */
  file: string;
}

export interface SafetensorsFile {
  source: ByteSource;
  /** N, the JSON header's length in bytes. */
  headerSize: number;
  /** 8 + N: absolute offset of the data section. */
  dataStart: number;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** The tensor's raw little-endian bytes, read with one source.read of exactly its range. */
  readTensor(name: string): Promise<Bytes>;
  /** `byteLength` bytes of the tensor starting `byteOffset` bytes into it. */
  readTensorRange(name: string, byteOffset: number, byteLength: number): Promise<Bytes>;
}

// ---------------------------------------------------------------------------------------------
// Header validation

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function parseMetadata(file: string, raw: unknown): Record<string, string> {
  if (!isObject(raw)) throw new SafetensorsError(file, '"__metadata__" must be an object of strings');
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') throw new SafetensorsError(file, `"__metadata__" value for "${k}" is not a string`);
  }
  return raw as Record<string, string>;
}

function parseEntry(file: string, name: string, raw: unknown): TensorInfo {
  const fail = (detail: string): SafetensorsError => new SafetensorsError(file, detail, name);
  if (!isObject(raw)) throw fail('entry is not an object');
  const { dtype, shape, data_offsets: offsets } = raw;
  if (!isDtype(dtype)) throw fail(`unknown dtype ${JSON.stringify(dtype)} (allowed: ${DTYPES.join(', ')})`);
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw fail(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw fail(`data_offsets ${JSON.stringify(offsets)} is not a pair [begin, end] of integers with begin <= end`);
  }
  const [begin, end] = offsets as [number, number];
  let expected = DTYPE_BYTES[dtype];
  for (const d of shape as number[]) expected *= d;
  if (!Number.isSafeInteger(expected) || expected !== end - begin) {
    throw fail(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape [${shape.join(', ')}] ` +
      `of ${dtype} needs ${expected}`);
  }
  return { name, dtype, shape: shape as number[], begin, end, byteLength: end - begin, file };
}

/** Sorted by begin, the ranges must tile [0, dataSize) exactly: no overlap, no gap, nothing past the end. */
function checkLayout(file: string, tensors: TensorInfo[], dataSize: number): void {
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let prev: TensorInfo | null = null;
  for (const t of sorted) {
    const at = `data_offsets [${t.begin}, ${t.end}]`;
    if (t.begin < covered && prev) {
      throw new SafetensorsError(file, `${at} overlap the previous tensor "${prev.name}" [${prev.begin}, ${prev.end}]`, t.name);
    }
    if (t.begin > covered) {
      throw new SafetensorsError(file, `${at} leave a gap of ${t.begin - covered} bytes after ` +
        (prev ? `the previous tensor "${prev.name}" [${prev.begin}, ${prev.end}]` : 'the start of the data section'), t.name);
    }
    if (t.end > dataSize) {
      throw new SafetensorsError(file, `${at} run past the end of the data section (${dataSize} bytes; ` +
        'is the file truncated?)', t.name);
    }
    covered = t.end;
    prev = t;
  }
  if (covered !== dataSize) {
    throw new SafetensorsError(file, `the data section has ${dataSize} bytes but the tensors cover only ${covered}` +
      (prev ? ` (the last is "${prev.name}")` : ''));
  }
}

/** Parses and validates a header; `dataSize` is the file size minus 8 minus the header length. */
export function parseHeader(
  file: string, headerBytes: Uint8Array, dataSize: number,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  if (headerBytes[0] !== 0x7b) throw new SafetensorsError(file, 'the header does not begin with "{"');
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new SafetensorsError(file, `the header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (!isObject(json)) throw new SafetensorsError(file, 'the header is not a JSON object');
  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') metadata = parseMetadata(file, raw);
    else tensors.set(name, parseEntry(file, name, raw));
  }
  checkLayout(file, [...tensors.values()], dataSize);
  return { tensors, metadata };
}

// ---------------------------------------------------------------------------------------------
// Opening and reading

export async function openSafetensors(source: ByteSource): Promise<SafetensorsFile> {
  const file = source.name;
  const size = await source.size();
  if (size < 8) throw new SafetensorsError(file, `the file is ${size} bytes, too short for the 8-byte header length`);
  const lengthBytes = await source.read(0, 8);
  const n64 = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(file, `header length ${n64} exceeds the format's limit of ${MAX_HEADER_BYTES} bytes`);
  }
  const headerSize = Number(n64);
  if (8 + headerSize > size) {
    throw new SafetensorsError(file, `header length ${headerSize} runs past the end of the file (${size} bytes)`);
  }
  const dataStart = 8 + headerSize;
  const { tensors, metadata } = parseHeader(file, await source.read(8, headerSize), size - dataStart);

  const info = (name: string): TensorInfo => {
    const t = tensors.get(name);
    if (!t) throw new SafetensorsError(file, 'no such tensor in this file', name);
    return t;
  };
  const readTensorRange = async (name: string, byteOffset: number, byteLength: number): Promise<Bytes> => {
    const t = info(name);
    if (!isCount(byteOffset) || !isCount(byteLength) || byteOffset + byteLength > t.byteLength) {
      throw new SafetensorsError(file, `range of ${byteLength} bytes at ${byteOffset} is outside its ${t.byteLength} bytes`, name);
    }
    return source.read(dataStart + t.begin + byteOffset, byteLength);
  };
  return {
    source, headerSize, dataStart, tensors, metadata,
    readTensor: async (name) => readTensorRange(name, 0, info(name).byteLength),
    readTensorRange,
  };
}
