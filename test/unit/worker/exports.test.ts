// The worker's streamed exports over the in-memory file system, with the real merge (engine/train/merge.ts) behind a
// stand-in run: a v2 delta of random differences on the demo model. The export equals mergeModel's own output file
// for file; cancelled after some shards and started again into the same folder, it keeps those and ends identical;
// an original that is not the delta's base, or none, is refused as OriginalUnavailable before anything is written.
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { blobSource } from '../../../src/engine/io/byte-source.ts';
import { openCheckpoint } from '../../../src/engine/io/checkpoint.ts';
import { memorySink } from '../../../src/engine/io/sink.ts';
import { DELTA_FILE } from '../../../src/engine/train/delta.ts';
import { encodeDeltaV2, type DiffEntry } from '../../../src/engine/train/delta-v2.ts';
import { fingerprintOf } from '../../../src/engine/train/fingerprint.ts';
import { checkDeltaBase, mergeModel } from '../../../src/engine/train/merge.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import type { ModelOrigin, OriginKv } from '../../../src/store/origins.ts';
import type { ExportArgs } from '../../../src/worker/engine-binding.ts';
import { DOWNLOADS_DIR, Exports, mergeCommand, type ExportEngine } from '../../../src/worker/exports.ts';
import { ORIGINAL_UNAVAILABLE, type ExportProgress, type StoredModel } from '../../../src/worker/protocol.ts';
import { asRoot, FakeDir } from '../store/fake-opfs.ts';

const DEMO = 'public/models/usaf-demo-moe';
const SHARD = 6 << 20; // the demo's ~33 MB in several shards

/** A FakeDir holding the demo model's files (the "original folder" the user imported from). */
async function demoDir(): Promise<FakeDir> {
  const d = new FakeDir('usaf-demo-moe');
  for (const f of readdirSync(DEMO)) (await d.getFileHandle(f, { create: true })).data = new Uint8Array(readFileSync(`${DEMO}/${f}`));
  return d;
}

/** A v2 delta on the demo: random differences at random entries of two expert tensors, a dense router difference. */
async function demoDelta(): Promise<Uint8Array<ArrayBuffer>> {
  const ckpt = await openCheckpoint(nodeFolder(DEMO));
  try {
    const fp = await fingerprintOf(ckpt, readFileSync(`${DEMO}/config.json`));
    let seed = 7;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const names = [...ckpt.tensors.keys()];
    const experts = names.filter((n) => /layers\.7\.mlp\.experts\.\d+\.down_proj\.weight$/.test(n)).slice(0, 2);
    const router = names.find((n) => /layers\.7\.mlp\.gate\.weight$/.test(n))!;
    const entries: DiffEntry[] = experts.map((name) => {
      const t = ckpt.tensors.get(name)!;
      const n = t.shape.reduce((a, b) => a * b, 1);
      const idx = [...new Set(Array.from({ length: 200 }, () => Math.floor(rnd() * n)))].sort((a, b) => a - b);
      return { name, dtype: t.dtype, shape: [...t.shape], indices: Uint32Array.from(idx), diff: Float32Array.from(idx, () => (rnd() - 0.5) * 0.05) };
    });
    const r = ckpt.tensors.get(router)!;
    entries.push({ name: router, dtype: r.dtype, shape: [...r.shape], indices: null, diff: Float32Array.from({ length: r.shape.reduce((a, b) => a * b, 1) }, () => (rnd() - 0.5) * 0.01) });
    const { chunks } = encodeDeltaV2(entries, fp, { test: true });
    return new Uint8Array(await new Blob(chunks).arrayBuffer());
  } finally {
    await ckpt.close();
  }
}

let opfs: FakeDir;
beforeEach(() => {
  opfs = new FakeDir('');
  vi.stubGlobal('navigator', { storage: { getDirectory: async () => asRoot(opfs) } });
});
afterEach(() => {
  vi.unstubAllGlobals();
});

const MODEL = { id: 'demo', name: 'usaf demo', source: 'folder "usaf-demo-moe"', builtin: false } as StoredModel;

function setup(delta: Uint8Array<ArrayBuffer>, origin: ModelOrigin | undefined) {
  const saved = new Map<string, ModelOrigin>(origin ? [['demo', origin]] : []);
  const origins: OriginKv = { get: async (id) => saved.get(id), set: async (id, o) => void saved.set(id, o) };
  const engine: ExportEngine = {
    writeDelta: async (_a: ExportArgs, sink) => {
      await sink.write(DELTA_FILE, [delta]);
      return { files: [DELTA_FILE], step: 4, originalSource: null };
    },
    checkDeltaBase, mergeModel,
  };
  return new Exports({ engine: () => engine, run: async () => ({ args: {} as ExportArgs, model: MODEL }), origins, appBase: () => 'http://app/', shardBytes: SHARD });
}

/** What `usaf merge` writes for the same original and delta (mergeModel into memory), file by file. */
async function reference(delta: Uint8Array<ArrayBuffer>): Promise<Map<string, Uint8Array>> {
  const sink = memorySink('ref');
  await mergeModel(nodeFolder(DEMO), blobSource(new Blob([delta]), DELTA_FILE), sink, { maxShardBytes: SHARD });
  return new Map([...sink.files.keys()].map((k) => [k, sink.bytes(k)]));
}

describe('Exports', () => {
  it('merges the run\'s delta onto the import\'s folder into a picked folder: mergeModel\'s files; cancelled and started again, it keeps the complete shards', { timeout: 120_000 }, async () => {
    const delta = await demoDelta();
    const want = await reference(delta);
    expect([...want.keys()].filter((k) => k.endsWith('.safetensors')).length).toBeGreaterThan(2);

    const original = await demoDir();
    const exports = setup(delta, { kind: 'folder', name: 'usaf-demo-moe', handle: asRoot(original) });
    const out = new FakeDir('picked');
    const target = { kind: 'folder' as const, dir: asRoot(out) };
    const seen: ExportProgress[] = [];
    // cancelled once two shards are complete
    const shards = (keys: Iterable<string>): string[] => [...keys].filter((k) => /^model-\d+-of-\d+\.safetensors$/.test(k));
    const first = exports.model('run-1', target, null, (p) => {
      seen.push(p);
      if (p.phase === 'writing' && shards(out.files().keys()).length >= 2) exports.cancel();
    });
    await expect(first).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen.map((p) => p.phase).filter((x, i, a) => a.indexOf(x) === i)).toEqual(['delta', 'checking', 'writing']);
    const partial = [...out.files().keys()];
    expect(partial.some((p) => p.endsWith('.usaf-partial'))).toBe(false);
    expect(partial).not.toContain('model.safetensors.index.json');

    expect(shards(partial).length).toBe(2);
    const again = await exports.model('run-1', target, null, () => undefined);
    expect(shards(again.skipped)).toEqual(shards(partial));
    expect(again.skipped.every((p) => partial.includes(p))).toBe(true);
    expect(again.folder).toBe('picked');
    const got = out.files();
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort()); // journal removed, nothing else
    for (const [k, v] of want) expect(Buffer.from(got.get(k)!).equals(Buffer.from(v)), k).toBe(true);
    expect(again.files.map((f) => [f.name, f.bytes]).sort()).toEqual([...want].map(([k, v]) => [k, v.byteLength]).sort());
  });

  it('without a picked folder, writes into the browser\'s storage and hands over its disk-backed Files', { timeout: 120_000 }, async () => {
    const delta = await demoDelta();
    const want = await reference(delta);
    const original = await demoDir();
    const exports = setup(delta, { kind: 'folder', name: 'usaf-demo-moe', handle: asRoot(original) });
    const r = await exports.model('run-1', { kind: 'downloads' }, null, () => undefined);
    expect(r.folder).toBeNull();
    const stored = (await opfs.getDirectoryHandle('exports')).children.get(DOWNLOADS_DIR.split('/')[1]!) as FakeDir;
    for (const f of r.files) {
      expect(f.data).toBeInstanceOf(File);
      expect(Buffer.from(await f.data!.arrayBuffer()).equals(Buffer.from(want.get(f.name)!)), f.name).toBe(true);
      expect(stored.files().get(f.name)!.byteLength).toBe(f.bytes);
    }
    expect(r.files.map((f) => f.name).sort()).toEqual([...want.keys()].sort());
  });

  it('refuses an original that is not the delta\'s base, or none, as OriginalUnavailable, writing nothing', { timeout: 120_000 }, async () => {
    const delta = await demoDelta();
    const ckpt = await openCheckpoint(nodeFolder(DEMO));
    const headerBytes = (file: string): number => 8 + Number(new DataView(readFileSync(`${DEMO}/${file}`).buffer).getBigUint64(0, true));
    /** The demo's files with one byte of tensor `name` flipped. */
    const damaged = async (name: string): Promise<FakeDir> => {
      const t = ckpt.tensors.get(name)!;
      const d = await demoDir();
      (d.children.get(t.file) as unknown as { data: Uint8Array }).data[headerBytes(t.file) + t.begin + 5]! ^= 1;
      return d;
    };
    const names = [...ckpt.tensors.keys()];
    await ckpt.close();
    const out = new FakeDir('picked');
    // a tensor the delta trains: refused before anything is written
    const trained = setup(delta, { kind: 'folder', name: 'usaf-demo-moe', handle: asRoot(await damaged(names.find((n) => /layers\.7\.mlp\.gate\.weight$/.test(n))!)) });
    const e1 = await trained.model('run-1', { kind: 'folder', dir: asRoot(out) }, null, () => undefined).catch((e: Error) => e);
    expect((e1 as Error).name).toBe(ORIGINAL_UNAVAILABLE);
    expect((e1 as Error).message).toMatch(/cannot be used: .*layers\.7\.mlp\.gate\.weight/);
    expect(out.files().size).toBe(0);
    // a tensor copied as it is: found when it is read, the export stops there (no index: not a model)
    const copied = setup(delta, { kind: 'folder', name: 'usaf-demo-moe', handle: asRoot(await damaged('model.embed_tokens.weight')) });
    const e2 = await copied.model('run-1', { kind: 'folder', dir: asRoot(out) }, null, () => undefined).catch((e: Error) => e);
    expect((e2 as Error).name).toBe(ORIGINAL_UNAVAILABLE);
    expect((e2 as Error).message).toMatch(/model\.embed_tokens\.weight/);
    expect([...out.files().keys()].filter((k) => /index|partial/.test(k))).toEqual([]);
    const none = setup(delta, undefined);
    const e3 = await none.model('run-1', { kind: 'folder', dir: asRoot(out) }, null, () => undefined).catch((e: Error) => e);
    expect((e3 as Error).name).toBe(ORIGINAL_UNAVAILABLE);
    expect((e3 as Error).message).toMatch(/not known to this browser/);
    // the delta alone works without the original, and says how to merge it
    const alone = new FakeDir('delta');
    const r = await none.delta('run-1', { kind: 'folder', dir: asRoot(alone) }, () => undefined);
    expect(r.files.map((f) => f.name)).toEqual([DELTA_FILE]);
    expect(r.mergeCommand).toBe(`usaf merge --base '<the original model folder>' --delta ${DELTA_FILE} --out usaf-demo-finetuned`);
    expect([...alone.files()]).toEqual([[DELTA_FILE, delta]]);
  });

  it('quotes the merge command\'s arguments for a shell where needed', () => {
    expect(mergeCommand('https://huggingface.co/Qwen/Qwen3-30B-A3B/resolve/main/', 'out')).toBe(
      `usaf merge --base https://huggingface.co/Qwen/Qwen3-30B-A3B/resolve/main/ --delta ${DELTA_FILE} --out out`);
    expect(mergeCommand("my model's folder", 'a b')).toBe(`usaf merge --base 'my model'\\''s folder' --delta ${DELTA_FILE} --out 'a b'`);
  });
});
