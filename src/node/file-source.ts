// Node ByteSource over a file on disk: positioned reads through one lazily opened FileHandle, never the whole file.
// close() releases the handle; a read after close reopens it.

import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { checkRange, type ByteSource } from '../engine/io/byte-source.ts';

export function fileSource(path: string, name: string = basename(path)): ByteSource {
  let handle: Promise<FileHandle> | null = null;
  let size: Promise<number> | null = null;
  const get = (): Promise<FileHandle> =>
    (handle ??= open(path, 'r').catch((e: unknown) => { handle = null; throw e; }));

  const fileSize = (): Promise<number> =>
    (size ??= get().then((h) => h.stat()).then((s) => s.size, (e: unknown) => { size = null; throw e; }));

  return {
    name,
    size: fileSize,
    read: async (offset, length) => {
      checkRange(name, offset, length, await fileSize());
      const h = await get();
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await h.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`${name}: file ended at ${offset + done} while reading ${length} bytes at ${offset}`);
        done += bytesRead;
      }
      return out;
    },
    close: async () => {
      const h = handle;
      handle = null;
      size = null;
      if (h) await (await h).close();
    },
  };
}
