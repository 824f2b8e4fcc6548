// Contract: small helpers over the Origin Private File System (worker side): folders by path, files written in place
// (sync access handles: bytes land as they are written, so an interrupted copy can resume), FileSet views.

import { blobSource } from '../engine/io/byte-source.ts';
import type { FileSet } from '../engine/io/folder.ts';

export async function root(): Promise<FileSystemDirectoryHandle> {
  if (!navigator.storage?.getDirectory) throw new Error('This browser has no Origin Private File System (navigator.storage.getDirectory).');
  return navigator.storage.getDirectory();
}

/** The folder at `path` ('/'-separated) under the OPFS root, created when `create`; null when missing. */
export async function dirAt(path: string, create: boolean): Promise<FileSystemDirectoryHandle | null> {
  return dirUnder(await root(), path, create);
}

/** The folder at `path` ('/'-separated) under `base`, created when `create`; null when missing. */
export async function dirUnder(base: FileSystemDirectoryHandle, path: string, create: boolean): Promise<FileSystemDirectoryHandle | null> {
  let dir = base;
  for (const part of path.split('/').filter(Boolean)) {
    try {
      dir = await dir.getDirectoryHandle(part, { create });
    } catch (e) {
      if ((e as DOMException).name === 'NotFoundError' || (e as DOMException).name === 'TypeMismatchError') return null;
      throw e;
    }
  }
  return dir;
}

/** The file at `relPath` under `dir` (subfolders created when `create`), or null when missing. */
export async function fileAt(dir: FileSystemDirectoryHandle, relPath: string, create: boolean): Promise<FileSystemFileHandle | null> {
  const parts = relPath.split('/').filter(Boolean);
  const name = parts.pop();
  if (!name) return null;
  let d: FileSystemDirectoryHandle = dir;
  try {
    for (const p of parts) d = await d.getDirectoryHandle(p, { create });
    return await d.getFileHandle(name, { create });
  } catch (e) {
    if ((e as DOMException).name === 'NotFoundError' || (e as DOMException).name === 'TypeMismatchError') return null;
    throw e;
  }
}

export async function readText(dir: FileSystemDirectoryHandle, relPath: string): Promise<string | null> {
  const h = await fileAt(dir, relPath, false);
  return h ? (await h.getFile()).text() : null;
}

/** Replaces the whole file with `data` (atomic: the writable stream commits on close). */
export async function writeWhole(dir: FileSystemDirectoryHandle, relPath: string, data: string | Blob | BufferSource): Promise<void> {
  const h = (await fileAt(dir, relPath, true))!;
  const w = await h.createWritable();
  try {
    await w.write(data);
    await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
}

/** Sum of every file's size below `dir`; a file that vanishes meanwhile (renamed or removed by a write) counts 0. */
export async function folderBytes(dir: FileSystemDirectoryHandle): Promise<number> {
  let total = 0;
  for await (const [, h] of entries(dir)) {
    try {
      total += h.kind === 'file' ? (await (h as FileSystemFileHandle).getFile()).size : await folderBytes(h as FileSystemDirectoryHandle);
    } catch (e) {
      if ((e as DOMException).name !== 'NotFoundError') throw e;
    }
  }
  return total;
}

/** Iterates a folder's entries (typed wrapper: lib.dom does not declare the async iterator everywhere). */
export function entries(dir: FileSystemDirectoryHandle): AsyncIterable<[string, FileSystemHandle]> {
  return (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries();
}

export async function removeEntry(dir: FileSystemDirectoryHandle, name: string): Promise<void> {
  try {
    await dir.removeEntry(name, { recursive: true });
  } catch (e) {
    if ((e as DOMException).name !== 'NotFoundError') throw e;
  }
}

/** Writes into a file in place from `offset` on; bytes are on disk after each flush, so a crash loses little. */
export class InPlaceWriter {
  private constructor(private readonly handle: FileSystemSyncAccessHandle) {}

  static async open(file: FileSystemFileHandle): Promise<InPlaceWriter> {
    return new InPlaceWriter(await file.createSyncAccessHandle());
  }

  size(): number {
    return this.handle.getSize();
  }

  truncate(size: number): void {
    this.handle.truncate(size);
  }

  write(bytes: Uint8Array, at: number): void {
    let done = 0;
    while (done < bytes.byteLength) {
      const n = this.handle.write(bytes.subarray(done), { at: at + done });
      if (n <= 0) throw new Error('OPFS write made no progress (is the disk full?)');
      done += n;
    }
  }

  flush(): void {
    this.handle.flush();
  }

  close(): void {
    this.handle.flush();
    this.handle.close();
  }
}

/** A FileSet over an OPFS folder (the engine's view of a stored model). */
export function opfsFolder(dir: FileSystemDirectoryHandle, name: string): FileSet {
  return {
    name,
    open: async (relPath) => {
      const h = await fileAt(dir, relPath, false);
      return h ? blobSource(await h.getFile(), relPath) : null;
    },
  };
}
