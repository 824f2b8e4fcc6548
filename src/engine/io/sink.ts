// Output side of the io layer: a FileSink takes whole files as streams of byte chunks, each write atomic per file.
// Implementation here: memory (tests, browser downloads); OPFS in src/store/opfs-sink.ts, Node in src/node/file-sink.ts.

import type { Bytes } from './byte-source.ts';
import { fileMapFolder, type FileSet } from './folder.ts';

/** Chunks of one file, in order. A sink may keep references to them: do not modify a chunk after handing it over. */
export type Chunks = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export interface FileSink {
  /** Short name for error messages (a folder name). */
  readonly name: string;
  /**
   * Writes the file at `path` ('/'-separated, relative to the sink's root; parent folders are created). Atomic:
   * when it resolves the file holds exactly these bytes; when it rejects (the sink failed, or iterating `chunks`
   * threw) nothing is left at `path` but what was there before, and no partial file under any name the caller reads.
   */
  write(path: string, chunks: Chunks): Promise<void>;
  /** Makes every completed write durable (Node: fsyncs the folders written into). Optional; call it after a batch. */
  commit?(): Promise<void>;
}

/** Checks a sink path: relative, '/'-separated, no empty, '.' or '..' segments. Returns it unchanged. */
export function checkSinkPath(path: string): string {
  const parts = path.split('/');
  if (path === '' || parts.some((p) => p === '' || p === '.' || p === '..') || path.includes('\\') || path.includes('\0')) {
    throw new Error(`"${path}" is not a relative '/'-separated file path`);
  }
  return path;
}

/** `dir` and `file` joined with '/' ('' or undefined dir: the file alone). */
export function joinPath(dir: string | undefined, file: string): string {
  const d = (dir ?? '').replace(/\/+$/, '');
  return d === '' ? file : `${d}/${file}`;
}

/** A plain-ArrayBuffer Uint8Array with the same bytes (a view when possible, a copy otherwise). */
export function asBytes(chunk: Uint8Array): Bytes {
  return chunk.buffer instanceof ArrayBuffer
    ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    : chunk.slice();
}

// ---------------------------------------------------------------------------------------------
// Memory

export interface MemorySink extends FileSink {
  /** Completed files, by path, as the chunks written (insertion order = completion order). */
  readonly files: ReadonlyMap<string, readonly Bytes[]>;
  /** One file's bytes, concatenated (throws when there is no such file). */
  bytes(path: string): Bytes;
  /** One file as a Blob (for a browser download). */
  blob(path: string, type?: string): Blob;
  /** The completed files as a FileSet, so what was written can be opened again (openCheckpoint, ...). */
  folder(): FileSet;
  /** Total bytes across all completed files. */
  totalBytes(): number;
}

/** Keeps every file in memory; a write that fails leaves the previous version of that file (if any) in place. */
export function memorySink(name = 'memory'): MemorySink {
  const files = new Map<string, Bytes[]>();
  const get = (path: string): Bytes[] => {
    const f = files.get(path);
    if (!f) throw new Error(`${name}: no file "${path}" was written`);
    return f;
  };
  return {
    name,
    files,
    async write(path, chunks) {
      checkSinkPath(path);
      const got: Bytes[] = [];
      for await (const c of chunks) got.push(asBytes(c));
      files.set(path, got);
    },
    async commit() {},
    bytes(path) {
      const f = get(path);
      if (f.length === 1) return f[0];
      const out = new Uint8Array(f.reduce((n, c) => n + c.byteLength, 0));
      let at = 0;
      for (const c of f) { out.set(c, at); at += c.byteLength; }
      return out;
    },
    blob: (path, type) => new Blob(get(path), type ? { type } : undefined),
    folder: () => fileMapFolder(new Map([...files].map(([p, f]) => [p, new Blob(f)])), name),
    totalBytes: () => [...files.values()].reduce((n, f) => n + f.reduce((m, c) => m + c.byteLength, 0), 0),
  };
}
