// The model store (src/store/model-store.ts) over an in-memory OPFS and manifest table, with a CPU stand-in for the
// quantizing import: listed only once complete (manifest last), an interrupted import resumes to the same bytes,
// refusal when storage is short (nothing written), delete frees the space, earlier versions' copies stay usable.
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { INDEX_FILE, openCheckpoint } from '../../../src/engine/io/checkpoint.ts';
import { storedQ4Info } from '../../../src/engine/quant/stored-q4.ts';
import { StorageRefusal } from '../../../src/store/fits.ts';
import { memoryManifests } from '../../../src/store/manifests.ts';
import { impliedSettings, ModelStore, STORE_DIR, storedSpec, type StoreDeps } from '../../../src/store/model-store.ts';
import type { ImportProgress, ModelSource, StoredModel } from '../../../src/store/records.ts';
import { asRoot, FakeDir } from './fake-opfs.ts';
import { fakeImporter, type FakeImporter } from './fake-importer.ts';

const FIXTURE = 'test/fixtures/qwen3_moe';
const source = (): ModelSource => ({
  kind: 'files', name: 'qwen3_moe',
  files: readdirSync(FIXTURE).map((f) => ({ path: `qwen3_moe/${f}`, file: new Blob([readFileSync(`${FIXTURE}/${f}`)]) })),
});

function setup(quota = 1e9) {
  const root = new FakeDir('');
  const manifests = memoryManifests();
  const importer = fakeImporter();
  const deps: StoreDeps = { root: async () => asRoot(root), manifests, importer, estimate: async () => ({ usage: root.bytes(), quota }) };
  return { root, manifests, importer, store: new ModelStore(deps) };
}

async function run(store: ModelStore, src = source(), stopAfter = Infinity) {
  const ac = new AbortController();
  const seen: ImportProgress[] = [];
  const p = store.import(src, 'http://app/', (x) => {
    seen.push(x);
    if (x.phase === 'importing' && x.bytesDone - x.bytesResumed >= stopAfter) ac.abort();
  }, ac.signal);
  return { p, seen };
}

const storeFiles = (root: FakeDir) => new Map([...root.files()].filter(([k]) => k.startsWith(`${STORE_DIR}/`)));

describe('model store', () => {
  it('imports a folder: listed once complete, manifest written last, the engine reads it as a 4-bit store', async () => {
    const { root, manifests, store } = setup();
    const setAt: string[][] = [];
    const set = manifests.set;
    manifests.set = async (id, m) => { setAt.push([...storeFiles(root).keys()]); return set(id, m); };
    const { p, seen } = await run(store);
    const m = await p;
    expect(m.storage).toBe('q4');
    expect(m.groupSize).toBe(128);
    expect(m.arch).toBe('qwen3_moe');
    expect(seen.at(-1)!.phase).toBe('done');
    // progress names the source file being read (the fixture's one file), not the shards the store writes
    expect([...new Set(seen.map((x) => x.file).filter(Boolean))]).toEqual(['model.safetensors']);
    expect(setAt[0]).toContain(`${STORE_DIR}/${m.id}/${INDEX_FILE}`);
    expect((await store.list()).map((x) => x.id)).toEqual([m.id]);
    // the manifest's file list is what OPFS holds, and nothing half-written is left
    const files = storeFiles(root);
    expect(m.files.map((f) => `${STORE_DIR}/${m.id}/${f.path}`).sort()).toEqual([...files.keys()].sort());
    for (const f of m.files) expect(files.get(`${STORE_DIR}/${m.id}/${f.path}`)!.byteLength).toBe(f.bytes);
    expect([...files.keys()].some((k) => k.endsWith('.partial'))).toBe(false);
    const ckpt = await openCheckpoint(await store.files(m.id));
    expect(storedQ4Info(ckpt)).toEqual({ groupSize: 128, expertLayout: 'per_expert' });
    expect(storedSpec(m, ckpt).numLayers).toBe(4);
    await ckpt.close();
    // runs on it use its 4-bit experts whatever the preset says
    expect(impliedSettings({ quantizeExperts: false, quantGroupSize: 64 }, m)).toEqual({ quantizeExperts: true, quantGroupSize: 128 });
    // the same source again: nothing is redone
    expect((await (await run(store)).p).importedAt).toBe(m.importedAt);
  });

  it('an interrupted import is not listed and resumes to the bytes of an uninterrupted one, writing only the rest', async () => {
    const whole = setup();
    const ref = await (await run(whole.store)).p;

    const { root, store, importer } = setup();
    const first = await run(store, source(), 2 * 256);
    await expect(first.p).rejects.toThrow(/cancelled/);
    expect(await store.list()).toEqual([]);
    expect(await store.get(ref.id)).toBeNull();
    const shardsBefore = [...(importer as FakeImporter).written];
    expect(shardsBefore.length).toBe(2);
    expect([...storeFiles(root).keys()].some((k) => k.endsWith('.partial'))).toBe(false);

    // a worker killed mid-write (page closed) leaves its shard under the temporary name: dropped, never read as a shard
    const dir = await (await (await root.getDirectoryHandle('store')).getDirectoryHandle('models')).getDirectoryHandle(ref.id);
    (await dir.getFileHandle('model-00003-of-00004.safetensors.partial', { create: true })).data = new Uint8Array(100).fill(7);
    const again = await run(store);
    const m = await again.p;
    expect(importer.written.slice(shardsBefore.length)).toEqual(whole.importer.written.slice(2));
    expect(again.seen.at(-1)!.bytesResumed).toBe(2 * 256);
    expect(m.files).toEqual(ref.files);
    const a = storeFiles(whole.root), b = storeFiles(root);
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [k, v] of a) expect(Buffer.from(b.get(k)!).equals(Buffer.from(v)), k).toBe(true);
  });

  it('refuses an import that does not fit, naming needed and available bytes, and writes nothing', async () => {
    const { root, store } = setup(2000);
    const err = await (await run(store)).p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageRefusal);
    const r = err as StorageRefusal;
    expect(r.availableBytes).toBe(2000);
    expect(r.neededBytes).toBeGreaterThan(2000);
    expect(r.message).toMatch(/needs [\d.]+ MB \([\d,]+ bytes, experts in 4 bits\) and this site has 0\.0 MB \(2,000 bytes\) available/);
    expect(root.bytes()).toBe(0);
    expect(await store.list()).toEqual([]);
  });

  it('deleting a model unlists it first and frees its files', async () => {
    const { root, manifests, store } = setup();
    const m = await (await run(store)).p;
    expect(await store.bytes()).toBe(m.bytes);
    expect(root.bytes()).toBeGreaterThan(0);
    await store.delete(m.id);
    expect(manifests.map.size).toBe(0);
    expect(await store.list()).toEqual([]);
    expect(root.bytes()).toBe(0);
    expect(await store.bytes()).toBe(0);
    await expect(store.files(m.id)).rejects.toThrow(/no stored model/);
  });

  it('a model stored by an earlier version (Hub copy) stays listed and usable, and converts into the store keeping the copy', async () => {
    const { root, store } = setup();
    const dir = await (await root.getDirectoryHandle('models', { create: true })).getDirectoryHandle('old-model', { create: true });
    for (const f of readdirSync(FIXTURE)) (await dir.getFileHandle(f, { create: true })).data = new Uint8Array(readFileSync(`${FIXTURE}/${f}`));
    const record = { id: 'old-model', name: 'old model', arch: 'qwen3_moe', config: JSON.parse(readFileSync(`${FIXTURE}/config.json`, 'utf8')), builtin: false, importedAt: 1, source: 'folder "x"' };
    (await dir.getFileHandle('usaf-model.json', { create: true })).data = new TextEncoder().encode(JSON.stringify(record));
    const legacyBytes = root.bytes();

    const [old] = await store.list();
    expect(old).toMatchObject({ id: 'old-model', storage: 'hub-copy', groupSize: null });
    const ckpt = await openCheckpoint(await store.files('old-model'));
    expect(storedQ4Info(ckpt)).toBeNull();
    expect(storedSpec(old as StoredModel, ckpt).numLayers).toBe(4);
    const asSet = { quantizeExperts: false, quantGroupSize: 64 };
    expect(impliedSettings(asSet, old as StoredModel)).toBe(asSet);
    await ckpt.close();

    const converted = await (await run(store, { kind: 'stored', id: 'old-model' })).p;
    expect(converted).toMatchObject({ id: 'old-model-4bit', storage: 'q4', name: 'old model (4-bit)' });
    expect((await store.list()).map((m) => m.id).sort()).toEqual(['old-model', 'old-model-4bit']);
    expect(await store.bytes()).toBe(legacyBytes + converted.bytes);
    await expect((await run(store, { kind: 'stored', id: 'old-model-4bit' })).p).rejects.toThrow(/not a model stored by an earlier version/);

    await store.delete('old-model');
    expect((await store.list()).map((m) => m.id)).toEqual(['old-model-4bit']);
    expect(await store.bytes()).toBe(converted.bytes);
  });
});
