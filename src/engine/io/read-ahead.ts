// A FileSet whose sources serve a run of sequential small reads out of large windows, each window read in one request
// and the next one read ahead while the current one is consumed. For copying a checkpoint tensor by tensor (an export's
// merge): one Range request (or Blob slice) per tensor costs ~15 ms each in Chromium, whatever its size, which made
// reading 3 MB expert tensors 3× slower than reading the same bytes in 64 MiB pieces (bench/export/merge.mjs).

import type { ByteSource, Bytes } from './byte-source.ts';
import type { FileSet } from './folder.ts';

/** Bytes of one window. */
export const READ_AHEAD_BYTES = 32 << 20;

export interface ReadAheadOptions {
  /** Bytes of one window (default READ_AHEAD_BYTES); a read of at least this many bytes goes to the source as is. */
  windowBytes?: number;
  /** Windows held at once over all of the folder's files (default 2: the one being read and the one read ahead). */
  windows?: number;
}

interface Window {
  src: ByteSource;
  start: number;
  end: number;
  bytes: Promise<Bytes>;
}

/**
 * `folder` with read-ahead: a read that starts where the previous read of the same file ended, the third such in a row
 * (or that falls inside a window already held), is served from a window of `windowBytes` read from its start in one piece, and the window after
 * it is requested at once. Other reads, and reads of a window or more, go to the source unchanged. Every read returns
 * its own copy (never a view of a window). Host memory: at most `windows` windows, over every file together.
 */
export function readAheadFolder(folder: FileSet, o: ReadAheadOptions = {}): FileSet {
  const W = o.windowBytes ?? READ_AHEAD_BYTES;
  const most = o.windows ?? 2;
  if (!(W > 0) || !(most >= 1)) throw new RangeError(`read-ahead needs a positive window and at least one of them (got ${W}, ${most})`);
  const held: Window[] = []; // oldest first

  const drop = (w: Window): void => {
    const i = held.indexOf(w);
    if (i >= 0) held.splice(i, 1);
  };
  const windowAt = (src: ByteSource, start: number, size: number): Window => {
    const w: Window = { src, start, end: Math.min(size, start + W), bytes: Promise.resolve(new Uint8Array(0)) };
    w.bytes = src.read(start, w.end - start);
    w.bytes.catch(() => drop(w)); // a failed window is read again by the next read that needs it
    held.push(w);
    while (held.length > most) held.shift();
    return w;
  };

  const wrap = (src: ByteSource): ByteSource => {
    let nextAt = -1; // where the previous read ended
    let run = 0; // reads in a row that each started where the one before ended
    return {
      name: src.name,
      size: () => src.size(),
      async read(offset, length) {
        run = offset === nextAt ? run + 1 : 0;
        // the third read in a row: not a header's two (8 bytes, then the JSON), which every opened shard has
        const sequential = run >= 2;
        nextAt = offset + length;
        if (length === 0 || length >= W) return src.read(offset, length);
        const size = await src.size();
        const at = (p: number): Window | undefined => held.find((x) => x.src === src && x.start <= p && p < x.end);
        let a = at(offset);
        // a read across a window's end takes the rest from the window after it (the one read ahead)
        const b = a && offset + length > a.end ? held.find((x) => x.src === src && x.start === a!.end && offset + length <= x.end) : undefined;
        if (a && offset + length > a.end && !b) a = undefined;
        if (!a && sequential && offset + length <= size) a = windowAt(src, offset, size);
        if (!a) return src.read(offset, length);
        const last = b ?? a;
        for (const x of held.filter((x) => x.src === src && x.end <= offset)) drop(x); // read past: not needed again
        if (last.end < size && !held.some((x) => x.src === src && x.start === last.end)) windowAt(src, last.end, size);
        const first = await a.bytes;
        if (!b) return first.slice(offset - a.start, offset - a.start + length);
        const out = new Uint8Array(length);
        out.set(first.subarray(offset - a.start));
        out.set((await b.bytes).subarray(0, offset + length - b.start), a.end - offset);
        return out;
      },
      close: src.close && (async () => {
        for (const x of held.filter((x) => x.src === src)) drop(x);
        await src.close!();
      }),
    };
  };

  return {
    name: folder.name,
    open: async (relPath) => {
      const src = await folder.open(relPath);
      return src && wrap(src);
    },
  };
}
