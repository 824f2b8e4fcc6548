// The store's OPFS sink (sync access handles, complete files only) and its storage check, over the in-memory OPFS.
import { describe, expect, it } from 'vitest';
import { availableBytes, checkFits, shardCap, StorageRefusal } from '../../../src/store/fits.ts';
import { syncAccessSink } from '../../../src/store/sync-sink.ts';
import { asRoot, FakeDir } from './fake-opfs.ts';

const bytes = (...v: number[]) => new Uint8Array(v);

describe('syncAccessSink', () => {
  it('writes files in folders, replaces an earlier version, and leaves nothing when the chunks fail', async () => {
    const root = new FakeDir('');
    const sink = syncAccessSink(asRoot(root));
    await sink.write('a/b.bin', [bytes(1, 2), bytes(3)]);
    expect([...root.files()]).toEqual([['a/b.bin', bytes(1, 2, 3)]]);
    await sink.write('a/b.bin', [bytes(9)]);
    expect(root.files().get('a/b.bin')).toEqual(bytes(9));
    const failing = (function* () { yield bytes(7, 7); throw new Error('source went away'); })();
    await expect(sink.write('a/c.bin', failing)).rejects.toThrow('source went away');
    expect([...root.files().keys()]).toEqual(['a/b.bin']);
    await expect(sink.write('../x', [bytes(1)])).rejects.toThrow(/relative/);
  });
});

describe('storage check', () => {
  it('refuses what does not fit, naming both figures; an unknown estimate lets the import try', () => {
    expect(availableBytes({ usage: 3, quota: 10 })).toBe(7);
    expect(availableBytes({})).toBeNull();
    expect(() => checkFits(7, { usage: 3, quota: 10 }, 'm')).not.toThrow();
    expect(() => checkFits(8, { usage: 3, quota: 10 }, 'm')).toThrow(StorageRefusal);
    expect(() => checkFits(8e12, {}, 'm')).not.toThrow();
    try {
      checkFits(2_500_000, { usage: 0, quota: 1_000_000 }, '"x"');
    } catch (e) {
      expect((e as Error).message).toMatch(/^Not enough storage to import "x": it needs 2\.5 MB \(2,500,000 bytes, experts in 4 bits\) and this site has 1\.0 MB \(1,000,000 bytes\) available/);
    }
  });

  it('shards are a sixteenth of the model, between 1 MiB and 256 MiB', () => {
    expect(shardCap(14e6)).toBe(1 << 20);
    expect(shardCap(160 << 20)).toBe(10 << 20);
    expect(shardCap(16e9)).toBe(256 << 20);
  });
});
