// Safetensors writer: builds the 8-byte length + JSON header (space-padded to a multiple of 8) for tensors in order.
// encodeSafetensors returns chunks (header, then each tensor's bytes) so a caller can stream them or wrap them in a Blob.

import type { Bytes } from './byte-source.ts';
import { DTYPE_BYTES, isDtype, type Dtype } from './dtype.ts';

export interface TensorEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
}

export interface TensorData extends TensorEntry {
  /** Raw little-endian bytes, exactly product(shape) * dtype size of them. */
  data: Bytes;
}

export interface SafetensorsHeader {
  /** Everything before the data section: the u64 little-endian header length, then the padded JSON header. */
  header: Bytes;
  /** data_offsets [begin, end] of each entry, in the order given, relative to the data section. */
  offsets: Array<[number, number]>;
  /** Total bytes of the data section (the file is header.byteLength + dataBytes long). */
  dataBytes: number;
}

export function tensorByteLength(entry: TensorEntry): number {
  if (!isDtype(entry.dtype)) throw new Error(`tensor "${entry.name}": unknown dtype ${JSON.stringify(entry.dtype)}`);
  let n = DTYPE_BYTES[entry.dtype];
  for (const d of entry.shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`tensor "${entry.name}": bad shape [${entry.shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

/** The header for tensors laid out back to back in the given order. */
export function safetensorsHeader(entries: readonly TensorEntry[], metadata?: Record<string, string>): SafetensorsHeader {
  const json: Record<string, unknown> = {};
  if (metadata) json.__metadata__ = metadata;
  const offsets: Array<[number, number]> = [];
  let at = 0;
  for (const e of entries) {
    if (e.name === '__metadata__' || Object.hasOwn(json, e.name)) throw new Error(`tensor name "${e.name}" is reserved or repeated`);
    const end = at + tensorByteLength(e);
    json[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [at, end] };
    offsets.push([at, end]);
    at = end;
  }
  const text = new TextEncoder().encode(JSON.stringify(json));
  const n = Math.ceil(text.byteLength / 8) * 8;
  const header = new Uint8Array(8 + n).fill(0x20, 8 + text.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(text, 8);
  return { header, offsets, dataBytes: at };
}

/** A whole safetensors file as chunks: [header, data of tensor 0, data of tensor 1, ...]. */
export function encodeSafetensors(tensors: readonly TensorData[], metadata?: Record<string, string>): Bytes[] {
  const { header, offsets } = safetensorsHeader(tensors, metadata);
  tensors.forEach((t, i) => {
    const want = offsets[i][1] - offsets[i][0];
    if (t.data.byteLength !== want) {
      throw new Error(`tensor "${t.name}": ${t.data.byteLength} bytes of data, shape [${t.shape.join(', ')}] of ${t.dtype} needs ${want}`);
    }
  });
  return [header, ...tensors.map((t) => t.data)];
}
