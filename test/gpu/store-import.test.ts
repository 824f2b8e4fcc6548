// The browser store's quantizing import with the real importQ4 (src/store/q4-importer.ts) on the demo model, over an
// in-memory OPFS with synchronous access handles: the size checked before importing is what gets written; an import
// cancelled mid-way resumes (stored shards kept) to exactly the bytes of an uninterrupted import; the stored model
// loads as a 4-bit store.
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/engine/io/checkpoint.ts';
import { storedQ4Info } from '../../src/engine/quant/stored-q4.ts';
import { StorageRefusal } from '../../src/store/fits.ts';
import { memoryManifests } from '../../src/store/manifests.ts';
import { ModelStore, STORE_DIR } from '../../src/store/model-store.ts';
import { q4Importer } from '../../src/store/q4-importer.ts';
import type { ImportProgress, ModelSource } from '../../src/store/records.ts';
import { asRoot, FakeDir } from '../unit/store/fake-opfs.ts';
import { testGpu } from '../helpers/gpu.ts';

const DEMO = 'public/models/usaf-demo-moe';
const source = (): ModelSource => ({
  kind: 'files', name: 'demo',
  files: readdirSync(DEMO).map((f) => ({ path: `demo/${f}`, file: new Blob([readFileSync(`${DEMO}/${f}`)]) })),
});

function setup(quota = 1e9) {
  const root = new FakeDir('');
  const store = new ModelStore({
    root: async () => asRoot(root), manifests: memoryManifests(), importer: q4Importer(testGpu),
    estimate: async () => ({ usage: root.bytes(), quota }),
  });
  return { root, store };
}

const storeFiles = (root: FakeDir) => new Map([...root.files()].filter(([k]) => k.startsWith(`${STORE_DIR}/`)));

describe('store import with importQ4', () => {
  it('cancelled mid-import, resumed: the same bytes as an uninterrupted import; the size checked first is the size written', async () => {
    const whole = setup();
    const seen: ImportProgress[] = [];
    const ref = await whole.store.import(source(), 'http://app/', (p) => seen.push(p), new AbortController().signal);
    const done = seen.at(-1)!;
    expect(done.phase).toBe('done');
    expect(done.tensorsDone).toBe(done.tensorsTotal);
    expect(done.bytesResumed).toBe(0);
    const weights = ref.files.filter((f) => f.path.endsWith('.safetensors'));
    expect(weights.length).toBeGreaterThan(4); // shards of ~1 MiB: resumable in small steps
    const ckpt = await openCheckpoint(await whole.store.files(ref.id));
    expect(storedQ4Info(ckpt)?.groupSize).toBe(128);
    await ckpt.close();

    const { root, store } = setup();
    const ac = new AbortController();
    await expect(store.import(source(), 'http://app/', (p) => {
      if (p.phase === 'importing' && p.bytesDone > done.bytesTotal / 2) ac.abort();
    }, ac.signal)).rejects.toThrow(/cancelled/);
    expect(await store.list()).toEqual([]);
    const kept = [...storeFiles(root).keys()].filter((k) => k.endsWith('.safetensors'));
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(weights.length);

    const again: ImportProgress[] = [];
    const m = await store.import(source(), 'http://app/', (p) => again.push(p), new AbortController().signal);
    expect(again.at(-1)!.bytesResumed).toBeGreaterThan(0);
    expect(m.files).toEqual(ref.files);
    const a = storeFiles(whole.root), b = storeFiles(root);
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [k, v] of a) expect(Buffer.from(b.get(k)!).equals(Buffer.from(v)), k).toBe(true);

    // the needed size, from the headers before anything is read: the bytes written, plus at most the index's slack
    const short = setup(ref.bytes - 1);
    const err = await short.store.import(source(), 'http://app/', () => undefined, new AbortController().signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageRefusal);
    expect((err as StorageRefusal).neededBytes).toBeGreaterThanOrEqual(ref.bytes);
    expect((err as StorageRefusal).neededBytes).toBeLessThan(ref.bytes + 16384);
    expect(short.root.bytes()).toBe(0);
  });
});
