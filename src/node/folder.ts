// Node FileSet over a directory: open(relPath) gives a fileSource, or null when no regular file is there.
// Paths are '/'-separated and must stay inside the directory.

import { stat } from 'node:fs/promises';
import { basename, resolve, sep } from 'node:path';
import type { ByteSource } from '../engine/io/byte-source.ts';
import type { FileSet } from '../engine/io/folder.ts';
import { fileSource } from './file-source.ts';

export function nodeFolder(dir: string): FileSet {
  const root = resolve(dir);
  return {
    name: basename(root),
    open: async (relPath): Promise<ByteSource | null> => {
      const path = resolve(root, ...relPath.split('/'));
      if (!path.startsWith(root + sep)) throw new Error(`${relPath}: path leaves the folder ${root}`);
      try {
        if (!(await stat(path)).isFile()) return null;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
        throw e;
      }
      return fileSource(path, relPath);
    },
  };
}
