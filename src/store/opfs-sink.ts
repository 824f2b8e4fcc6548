// The FileSink over the Origin Private File System: each file written with createWritable(), atomic per file.

import { asBytes, checkSinkPath, type FileSink } from '../engine/io/sink.ts';

/**
 * Writes under an OPFS directory with createWritable(): the browser writes into a swap file and replaces the target
 * only on close(), so a failed or aborted write leaves the previous file untouched.
 */
export function opfsSink(root: FileSystemDirectoryHandle): FileSink {
  return {
    name: root.name,
    async write(path, chunks) {
      const parts = checkSinkPath(path).split('/');
      let dir = root;
      for (const p of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(p, { create: true });
      const leaf = parts[parts.length - 1];
      const existed = await dir.getFileHandle(leaf).then(() => true, () => false);
      const file = await dir.getFileHandle(leaf, { create: true });
      const w = await file.createWritable({ keepExistingData: false });
      try {
        for await (const c of chunks) await w.write(asBytes(c));
        await w.close();
      } catch (e) {
        await w.abort().catch(() => undefined);
        if (!existed) await dir.removeEntry(leaf).catch(() => undefined); // getFileHandle created it empty
        throw e;
      }
    },
    async commit() {},
  };
}
