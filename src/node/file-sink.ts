// Node FileSink over a directory: each file is written to `<path>.tmp-<random>` beside its target, fsynced, then renamed.
// A failed write (disk error, or the chunk iterator throwing) removes the temporary file; the target is never partial.

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { checkSinkPath, type FileSink } from '../engine/io/sink.ts';

export interface NodeSinkOptions {
  /** fsync each file before its rename and the folders on commit() (default true: checkpoints must survive a crash). */
  fsync?: boolean;
}

export function nodeFileSink(dir: string, options: NodeSinkOptions = {}): FileSink {
  const root = resolve(dir);
  const fsync = options.fsync ?? true;
  const touched = new Set<string>(); // folders that received a rename since the last commit

  const syncDir = async (d: string): Promise<void> => {
    const h = await open(d, 'r');
    try {
      await h.sync();
    } catch (e) {
      // Some file systems refuse fsync on a directory (EINVAL/EISDIR/EPERM); the renames are still done.
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw e;
    } finally {
      await h.close();
    }
  };

  return {
    name: root,
    async write(path, chunks) {
      const target = resolve(root, ...checkSinkPath(path).split('/'));
      if (!target.startsWith(root + sep)) throw new Error(`${path}: path leaves the folder ${root}`);
      await mkdir(dirname(target), { recursive: true });
      const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
      const h = await open(tmp, 'wx');
      let handleOpen = true;
      try {
        for await (const chunk of chunks) {
          let done = 0;
          while (done < chunk.byteLength) {
            const { bytesWritten } = await h.write(chunk, done, chunk.byteLength - done);
            done += bytesWritten;
          }
        }
        if (fsync) await h.sync();
        handleOpen = false;
        await h.close();
        await rename(tmp, target);
      } catch (e) {
        if (handleOpen) await h.close().catch(() => undefined);
        await unlink(tmp).catch(() => undefined);
        throw e;
      }
      touched.add(dirname(target));
    },
    async commit() {
      if (!fsync) { touched.clear(); return; }
      const dirs = [...touched];
      touched.clear();
      for (const d of dirs) await syncDir(d);
    },
  };
}

/** Temporary files (`<name>.tmp-<hex>`) a write interrupted by a crash left in `dir` and its subfolders; removed, their names returned. */
export async function removeOrphanTemps(dir: string): Promise<string[]> {
  const removed: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && /\.tmp-[0-9a-f]{12}$/.test(e.name)) {
        await unlink(p);
        removed.push(p);
      }
    }
  };
  await walk(resolve(dir));
  return removed;
}
