// The export's folder sink over the in-memory file system: files streamed under a temporary name and renamed when
// complete; an interrupted export leaves no partial file and restarts skipping the files it completed (same job only);
// at most `capBytes` held between writes.
import { describe, expect, it } from 'vitest';
import { JOURNAL_FILE, openFolderSink, PARTIAL_SUFFIX } from '../../../src/store/folder-sink.ts';
import { asRoot, FakeDir, FakeFile } from './fake-opfs.ts';

const bytes = (n: number, seed = 1): Uint8Array<ArrayBuffer> => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
const names = (d: FakeDir): string[] => [...d.files().keys()].sort();
const journal = (d: FakeDir) => JSON.parse(new TextDecoder().decode(d.files().get(JOURNAL_FILE)!)) as { job: string; files: Record<string, number> };

/** Chunks that record whether they were read at all. */
function tracked(chunks: Uint8Array[]): { chunks: Iterable<Uint8Array>; read: () => boolean } {
  let read = false;
  return { chunks: (function* () { read = true; yield* chunks; })(), read: () => read };
}

describe('openFolderSink', () => {
  it('streams each file under a temporary name, renames it when complete and journals it; finish leaves the files alone', async () => {
    const root = new FakeDir('out');
    const sink = await openFolderSink(asRoot(root), { job: 'j1' });
    const seen: string[][] = [];
    await sink.write('model-00001-of-00002.safetensors', (function* () {
      yield bytes(10);
      seen.push(names(root)); // while writing: only the temporary name
      yield bytes(5, 2);
    })());
    expect(seen[0]).toEqual([`model-00001-of-00002.safetensors${PARTIAL_SUFFIX}`, JOURNAL_FILE]);
    await sink.write('sub/config.json', [bytes(3)]);
    expect(names(root)).toEqual(['model-00001-of-00002.safetensors', 'sub/config.json', JOURNAL_FILE]);
    expect(root.files().get('model-00001-of-00002.safetensors')).toEqual(new Uint8Array([...bytes(10), ...bytes(5, 2)]));
    expect(journal(root)).toEqual({ format: 'usaf-export', job: 'j1', files: { 'model-00001-of-00002.safetensors': 15, 'sub/config.json': 3 } });
    expect([...sink.complete]).toEqual([['model-00001-of-00002.safetensors', 15], ['sub/config.json', 3]]);
    await sink.finish();
    expect(names(root)).toEqual(['model-00001-of-00002.safetensors', 'sub/config.json']);
    await expect(sink.write('../x', [bytes(1)])).rejects.toThrow(/relative/);
    await expect(sink.write(JOURNAL_FILE, [bytes(1)])).rejects.toThrow(/journal/);
  });

  it('an interrupted export leaves no partial file; restarted, it skips the files it completed and writes the rest', async () => {
    const root = new FakeDir('out');
    const ac = new AbortController();
    const first = await openFolderSink(asRoot(root), { job: 'run-1@4:abcd', signal: ac.signal });
    await first.write('a.bin', [bytes(7)]);
    await first.write('b.bin', [bytes(9)]);
    // c.bin: the source fails halfway; d.bin: cancelled halfway.
    await expect(first.write('c.bin', (function* () { yield bytes(4); throw new Error('network gone'); })())).rejects.toThrow('network gone');
    await expect(first.write('d.bin', (function* () { yield bytes(4); ac.abort(new DOMException('cancelled', 'AbortError')); yield bytes(4); })()))
      .rejects.toThrow('cancelled');
    expect(names(root)).toEqual(['a.bin', 'b.bin', JOURNAL_FILE]);
    // A crash mid-write leaves a temporary file behind: the next open removes it.
    (await root.getFileHandle(`c.bin${PARTIAL_SUFFIX}`, { create: true })).data = bytes(2);
    // b.bin was damaged since (shorter than journaled): written again.
    (await root.getFileHandle('b.bin')).data = bytes(3);

    const files: [string, boolean][] = [];
    const again = await openFolderSink(asRoot(root), { job: 'run-1@4:abcd', onFile: (p, _n, skipped) => files.push([p, skipped]) });
    expect(names(root)).toEqual(['a.bin', 'b.bin', JOURNAL_FILE]);
    const a = tracked([bytes(7)]);
    await again.write('a.bin', a.chunks);
    expect(a.read()).toBe(false);
    for (const [p, b] of [['b.bin', bytes(9)], ['c.bin', bytes(8)], ['d.bin', bytes(8)]] as const) await again.write(p, [b]);
    expect(files).toEqual([['a.bin', true], ['b.bin', false], ['c.bin', false], ['d.bin', false]]);
    expect(again.skipped).toEqual(['a.bin']);
    expect(root.files().get('b.bin')).toEqual(bytes(9));
    expect(journal(root).files).toEqual({ 'a.bin': 7, 'b.bin': 9, 'c.bin': 8, 'd.bin': 8 });

    // Another job over the same folder: nothing is skipped, every file is written again.
    const other = await openFolderSink(asRoot(root), { job: 'run-1@5:ef01' });
    const a2 = tracked([bytes(7, 9)]);
    await other.write('a.bin', a2.chunks);
    expect(a2.read()).toBe(true);
    expect(other.skipped).toEqual([]);
    expect(root.files().get('a.bin')).toEqual(bytes(7, 9));
    expect(journal(root)).toEqual({ format: 'usaf-export', job: 'run-1@5:ef01', files: { 'a.bin': 7 } });
  });

  it('clearOther empties the app\'s own folder when it holds another job, and keeps it for the same job', async () => {
    const root = new FakeDir('downloads');
    const s1 = await openFolderSink(asRoot(root), { job: 'x', clearOther: true });
    await s1.write('old.bin', [bytes(4)]);
    await openFolderSink(asRoot(root), { job: 'x', clearOther: true });
    expect(names(root)).toEqual(['old.bin', JOURNAL_FILE]);
    await openFolderSink(asRoot(root), { job: 'y', clearOther: true });
    expect(names(root)).toEqual([JOURNAL_FILE]);
  });

  it('never holds more than capBytes between writes, whatever the chunk sizes', async () => {
    const cap = 100;
    const root = new FakeDir('out');
    const sink = await openFolderSink(asRoot(root), { job: 'cap', capBytes: cap });
    let written = 0;
    const writes: number[] = [];
    // a picked folder's files (no sync access handle: the writable stream's writes are counted)
    const realSync = FakeFile.prototype.createSyncAccessHandle;
    (FakeFile.prototype as { createSyncAccessHandle?: unknown }).createSyncAccessHandle = undefined;
    const realCreate = FakeFile.prototype.createWritable;
    FakeFile.prototype.createWritable = async function (this: FakeFile) {
      const w = await realCreate.call(this);
      return { ...w, write: async (d: Parameters<typeof w.write>[0]) => { const n = (d as Uint8Array).byteLength; written += n; writes.push(n); await w.write(d); } };
    };
    const sizes = [1, 30, 30, 30, 30, 99, 1, 250, 7, 60, 60, 3, 100, 2];
    const all: number[] = [];
    let yielded = 0;
    let mostHeld = 0;
    try {
      await sink.write('big.bin', (function* () {
        for (const [i, n] of sizes.entries()) {
          const c = bytes(n, i);
          all.push(...c);
          yielded += n;
          yield c;
          // back here only after the sink took the chunk: what it holds is what it has not written yet
          mostHeld = Math.max(mostHeld, yielded - written);
        }
      })());
    } finally {
      FakeFile.prototype.createWritable = realCreate;
      FakeFile.prototype.createSyncAccessHandle = realSync;
    }
    expect(mostHeld).toBeLessThanOrEqual(cap);
    expect(mostHeld).toBeGreaterThan(0); // it does gather small chunks
    expect(sink.peakHeldBytes).toBeLessThanOrEqual(cap);
    expect(writes.length).toBeLessThan(sizes.length);
    expect(root.files().get('big.bin')).toEqual(Uint8Array.from(all));
  });

  it('where files cannot be renamed, writes under the final name (replaced only when complete); without createWritable, with a sync access handle', async () => {
    const root = new FakeDir('out');
    const noMove = FakeFile.prototype.move;
    try {
      (FakeFile.prototype as { move?: unknown }).move = undefined;
      const sink = await openFolderSink(asRoot(root), { job: 'j' });
      await sink.write('x.bin', [bytes(5)]);
      await expect(sink.write('y.bin', (function* () { yield bytes(2); throw new Error('boom'); })())).rejects.toThrow('boom');
      expect(names(root)).toEqual([JOURNAL_FILE, 'x.bin']);
      expect(root.files().get('x.bin')).toEqual(bytes(5));
    } finally {
      FakeFile.prototype.move = noMove;
    }
    const realCreate = FakeFile.prototype.createWritable;
    try {
      (FakeFile.prototype as { createWritable?: unknown }).createWritable = undefined;
      const root2 = new FakeDir('opfs');
      // the journal too is written through the sync access handle
      const sink = await openFolderSink(asRoot(root2), { job: 'k', capBytes: 4 });
      await sink.write('z.bin', [bytes(3), bytes(3, 5), bytes(9, 7)]);
      expect(root2.files().get('z.bin')).toEqual(Uint8Array.from([...bytes(3), ...bytes(3, 5), ...bytes(9, 7)]));
      expect(journal(root2).files).toEqual({ 'z.bin': 15 });
    } finally {
      FakeFile.prototype.createWritable = realCreate;
    }
  });

  it('writes an OPFS file (under its partial name) through a sync access handle; a file that refuses one (a picked folder) through createWritable', async () => {
    const used: string[] = [];
    const realSync = FakeFile.prototype.createSyncAccessHandle, realCreate = FakeFile.prototype.createWritable;
    FakeFile.prototype.createSyncAccessHandle = async function (this: FakeFile) { used.push(`sync:${this.name}`); return realSync.call(this); };
    FakeFile.prototype.createWritable = async function (this: FakeFile) { used.push(`stream:${this.name}`); return realCreate.call(this); };
    try {
      const opfs = new FakeDir('opfs');
      const sink = await openFolderSink(asRoot(opfs), { job: 'o', capBytes: 4 });
      await sink.write('a.bin', [bytes(3), bytes(6, 1)]);
      expect(opfs.files().get('a.bin')).toEqual(Uint8Array.from([...bytes(3), ...bytes(6, 1)]));
      // the data through the sync handle; the journal (under its final name) by a stream, replaced only when complete
      expect(used.filter((u) => u.startsWith('stream:') && u !== `stream:${JOURNAL_FILE}`)).toEqual([]);
      expect(used).toContain(`sync:a.bin${PARTIAL_SUFFIX}`);
      expect(used).not.toContain(`sync:${JOURNAL_FILE}`);
      used.length = 0;
      // a user's folder in a worker: the method exists but rejects (not an OPFS file)
      FakeFile.prototype.createSyncAccessHandle = async function (this: FakeFile) {
        used.push(`sync:${this.name}`);
        throw new DOMException('not an OPFS file', 'InvalidStateError');
      };
      const picked = new FakeDir('picked');
      const sink2 = await openFolderSink(asRoot(picked), { job: 'p', capBytes: 4 });
      await sink2.write('b.bin', [bytes(5, 2)]);
      expect(picked.files().get('b.bin')).toEqual(bytes(5, 2));
      expect(used).toContain(`stream:b.bin${PARTIAL_SUFFIX}`);
    } finally {
      FakeFile.prototype.createSyncAccessHandle = realSync;
      FakeFile.prototype.createWritable = realCreate;
    }
  });
});
