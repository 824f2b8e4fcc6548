// Contract: a FileSink over an OPFS folder that writes with synchronous access handles (worker only): each file is
// written chunk by chunk into "<name>.partial" and renamed to its name once complete, so a file present is complete.

import { asBytes, checkSinkPath, type Chunks, type FileSink } from '../engine/io/sink.ts';
import { InPlaceWriter, removeEntry } from './opfs.ts';

export const PARTIAL_SUFFIX = '.partial';

/** FileSystemHandle.move(newName): renames within the folder (Chromium, Firefox, Safari on OPFS; not in lib.dom yet). */
type Movable = FileSystemFileHandle & { move?(newName: string): Promise<void> };

async function writeChunks(file: FileSystemFileHandle, chunks: Chunks): Promise<void> {
  const writer = await InPlaceWriter.open(file);
  try {
    writer.truncate(0);
    let at = 0;
    for await (const c of chunks) {
      writer.write(asBytes(c), at);
      at += c.byteLength;
    }
  } finally {
    writer.close();
  }
}

export function syncAccessSink(root: FileSystemDirectoryHandle, name = root.name): FileSink {
  return {
    name,
    async write(path, chunks) {
      const parts = checkSinkPath(path).split('/');
      let dir = root;
      for (const p of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(p, { create: true });
      const leaf = parts[parts.length - 1]!;
      const temp = `${leaf}${PARTIAL_SUFFIX}`;
      const file = (await dir.getFileHandle(temp, { create: true })) as Movable;
      try {
        await writeChunks(file, chunks);
      } catch (e) {
        await removeEntry(dir, temp);
        throw e;
      }
      if (!file.move) throw new Error('this browser cannot rename files in its private storage (FileSystemHandle.move)');
      await removeEntry(dir, leaf);
      await file.move(leaf);
    },
    async commit() {},
  };
}
