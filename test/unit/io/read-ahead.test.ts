// readAheadFolder: sequential small reads served from windows read in one piece (the next read ahead), every read's
// bytes exactly the source's, other reads passed through, at most `windows` windows held.
import { describe, expect, it } from 'vitest';
import { memorySource, type ByteSource } from '../../../src/engine/io/byte-source.ts';
import type { FileSet } from '../../../src/engine/io/folder.ts';
import { readAheadFolder } from '../../../src/engine/io/read-ahead.ts';

function counted(files: Record<string, Uint8Array>): { folder: FileSet; reads: [string, number, number][] } {
  const reads: [string, number, number][] = [];
  return {
    reads,
    folder: {
      name: 'mem',
      open: async (p) => {
        const b = files[p];
        if (!b) return null;
        const s = memorySource(b, p);
        return { ...s, read: (o, n) => { reads.push([p, o, n]); return s.read(o, n); } } satisfies ByteSource;
      },
    },
  };
}

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 2654435761 + seed) >>> 24);

describe('readAheadFolder', () => {
  it('serves sequential reads of any size, across windows, with the bytes of the source and few reads', async () => {
    const a = bytes(10_000, 1), b = bytes(3_000, 2);
    const { folder, reads } = counted({ a, b });
    const ra = readAheadFolder(folder, { windowBytes: 1000 });
    const sa = (await ra.open('a'))!, sb = (await ra.open('b'))!;
    expect(await ra.open('c')).toBeNull();
    let at = 0;
    const sizes = [8, 100, 333, 999, 1, 0, 650, 17, 400];
    for (let k = 0; at < a.length; k++) {
      const n = Math.min(sizes[k % sizes.length]!, a.length - at);
      // interleaved with another file's sequential reads, as a tensor of one shard after another's
      if (k % 3 === 0 && k / 3 * 300 < b.length) expect(await sb.read(k / 3 * 300, 300)).toEqual(b.slice(k / 3 * 300, k / 3 * 300 + 300));
      expect(await sa.read(at, n)).toEqual(a.slice(at, at + n));
      at += n;
    }
    const ofA = reads.filter((r) => r[0] === 'a');
    expect(ofA.filter((r) => r[2] < 1000).length).toBeLessThanOrEqual(15); // ~10 windows, not one read per call
    expect(ofA.reduce((n, r) => n + r[2], 0)).toBeLessThanOrEqual(4 * a.length); // windows thrown out by the other file's
  });

  it('passes through reads that are not sequential or not smaller than a window, and hands out copies', async () => {
    const a = bytes(5000, 3);
    const { folder, reads } = counted({ a });
    const s = (await readAheadFolder(folder, { windowBytes: 1000 }).open('a'))!;
    expect(await s.read(4000, 10)).toEqual(a.slice(4000, 4010)); // first read: not sequential
    expect(reads).toEqual([['a', 4000, 10]]);
    expect(await s.read(100, 1500)).toEqual(a.slice(100, 1600)); // a window or more: as is
    expect(reads.at(-1)).toEqual(['a', 100, 1500]);
    expect(await s.read(1600, 0)).toEqual(new Uint8Array(0)); // sequential, the 2nd in a row
    const x = await s.read(1600, 10); // the 3rd: window [1600, 2600), and [2600, 3600) read ahead
    expect(reads.slice(-2)).toEqual([['a', 1600, 1000], ['a', 2600, 1000]]);
    x.fill(0);
    expect(await s.read(1610, 5)).toEqual(a.slice(1610, 1615));
    expect(await s.read(2590, 20)).toEqual(a.slice(2590, 2610)); // across the two windows
    expect(await s.read(4990, 10)).toEqual(a.slice(4990, 5000));
    expect(await s.size()).toBe(5000);
  });

  it('holds at most `windows` windows over all files, and reads a failed window again', async () => {
    const a = bytes(4000, 4);
    let fail = true;
    const folder: FileSet = {
      name: 'flaky',
      open: async () => {
        const s = memorySource(a, 'a');
        return { ...s, read: async (o, n) => {
          if (n === 1000 && fail) { fail = false; throw new Error('network down'); }
          return s.read(o, n);
        } };
      },
    };
    const s = (await readAheadFolder(folder, { windowBytes: 1000, windows: 1 }).open('a'))!;
    expect(await s.read(0, 10)).toEqual(a.slice(0, 10)); // first read: straight
    expect(await s.read(10, 0)).toEqual(new Uint8Array(0));
    await expect(s.read(10, 10)).rejects.toThrow('network down');
    expect(await s.read(20, 10)).toEqual(a.slice(20, 30)); // sequential again (the failed window is dropped)
    expect(await s.read(30, 2000)).toEqual(a.slice(30, 2030));
  });
});
