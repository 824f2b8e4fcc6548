// Shared helpers for the io tests: byte concatenation, a read-recording ByteSource wrapper, and raw file builders.
// Raw builders write headers by hand (not via the writer under test) so malformed files can be made on purpose.

import type { ByteSource } from '../../../src/engine/io/byte-source.ts';
import type { FileSet } from '../../../src/engine/io/folder.ts';

export function concat(chunks: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out;
}

export interface ReadCall { offset: number; length: number }

/** Wraps a source, recording every read call. */
export function recording(inner: ByteSource): ByteSource & { calls: ReadCall[] } {
  const calls: ReadCall[] = [];
  return {
    name: inner.name,
    calls,
    size: () => inner.size(),
    read: (offset, length) => { calls.push({ offset, length }); return inner.read(offset, length); },
    close: () => inner.close?.() ?? Promise.resolve(),
  };
}

/** Wraps a folder so every source it opens records its reads, by path. */
export function recordingFolder(inner: FileSet): FileSet & { sources: Map<string, ReturnType<typeof recording>> } {
  const sources = new Map<string, ReturnType<typeof recording>>();
  return {
    name: inner.name,
    sources,
    open: async (rel) => {
      const s = await inner.open(rel);
      if (!s) return null;
      const r = recording(s);
      sources.set(rel, r);
      return r;
    },
  };
}

/** A file from a header given as text or object, an explicit u64 length (default: the text's), and data bytes. */
export function rawFile(header: string | Uint8Array | object, data: Uint8Array | number, headerLength?: bigint): Uint8Array<ArrayBuffer> {
  const text = header instanceof Uint8Array ? header
    : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, headerLength ?? BigInt(text.byteLength), true);
  const body = typeof data === 'number' ? Uint8Array.from({ length: data }, (_, i) => (i * 7 + 3) & 0xff) : data;
  return concat([len, text, body]);
}

/** Deterministic pseudo-random bytes (xorshift32), so tests are repeatable. */
export function randomBytes(n: number, seed: number): Uint8Array<ArrayBuffer> {
  let x = seed >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
