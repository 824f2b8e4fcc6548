// Merging a delta onto the original (docs/delta-format.md), checked file against file with an independent bf16 rounding:
// at the delta's entries bf16(f32(original + d)), every other byte the original's; another base is refused naming the
// first mismatch; an unquantized run's merge equals the plain export bit for bit; the writer streams (bounded memory);
// version 1 deltas merge as new values or are refused in words.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memorySource, type ByteSource } from '../../../src/engine/io/byte-source.ts';
import { openCheckpoint, INDEX_FILE, type Checkpoint } from '../../../src/engine/io/checkpoint.ts';
import { fileMapFolder, type FileSet } from '../../../src/engine/io/folder.ts';
import { memorySink, type FileSink } from '../../../src/engine/io/sink.ts';
import { parseConfig } from '../../../src/engine/model/config.ts';
import { makeDelta } from '../../../src/engine/train/delta.ts';
import { encodeDeltaV2, openDeltaAny, type DiffEntry } from '../../../src/engine/train/delta-v2.ts';
import { expertSpan, exportRun, type TrainedRun } from '../../../src/engine/train/export-run.ts';
import { exportModel } from '../../../src/engine/train/export.ts';
import { fingerprintOf } from '../../../src/engine/train/fingerprint.ts';
import { checkDeltaBase, mergeModel } from '../../../src/engine/train/merge.ts';
import { nodeFolder } from '../../../src/node/folder.ts';
import { rng } from '../../helpers/random.ts';
import { DEMO_DIR, FIXTURE_DIR, sparselyChanged } from '../../helpers/train-io.ts';
import { expectFaithfulMerge } from '../../helpers/merge-check.ts';

const QWEN = FIXTURE_DIR('qwen3_moe');
const TRAINED = [
  'model.layers.2.mlp.experts.1.gate_proj.weight', 'model.layers.3.mlp.experts.5.down_proj.weight',
  'model.layers.3.mlp.experts.0.up_proj.weight', 'model.layers.3.mlp.gate.weight',
];


function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out;
}


let base: Checkpoint;
let config: Uint8Array;
beforeAll(async () => {
  base = await openCheckpoint(nodeFolder(QWEN));
  config = await readFile(join(QWEN, 'config.json'));
});
afterAll(async () => { await base.close(); });

/** Random sparse differences on TRAINED (the router dense), about `frac` of the entries, some tiny, some large. */
async function randomEntries(seed: number, frac = 0.03): Promise<DiffEntry[]> {
  const r = rng(seed);
  return TRAINED.map((name) => {
    const t = base.tensors.get(name)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (name.endsWith('mlp.gate.weight')) return { name, dtype: t.dtype, shape: t.shape, indices: null, diff: Float32Array.from({ length: n }, () => (r() - 0.5) * 1e-2) };
    const idx: number[] = [];
    for (let i = 0; i < n; i++) if (r() < frac) idx.push(i);
    const diff = Float32Array.from(idx, (_, k) => (k % 3 === 0 ? 1e-6 : k % 3 === 1 ? 0.05 : -0.3) * (r() + 0.1));
    return { name, dtype: t.dtype, shape: t.shape, indices: Uint32Array.from(idx), diff };
  });
}

async function v2Delta(entries: DiffEntry[]): Promise<Uint8Array> {
  const fp = await fingerprintOf(base, config);
  return concat(encodeDeltaV2(entries, fp, { frac: 0.03, steps: 2, quantizeExperts: { groupSize: 32 } }).chunks);
}

describe('mergeModel (qwen3_moe fixture)', () => {
  it('writes the original with bf16(f32(original + d)) at the delta entries, every other byte the original\'s', async () => {
    const entries = await randomEntries(1);
    const delta = await v2Delta(entries);
    const sink = memorySink('merged');
    const progress: number[] = [];
    const r = await mergeModel(nodeFolder(QWEN), memorySource(delta, 'usaf-delta.safetensors'), sink, { maxShardBytes: 200_000, onProgress: (p) => progress.push(p.tensorsDone) });
    expect(r.shards.length).toBeGreaterThan(2);
    expect(progress.at(-1)).toBe(base.tensors.size);
    expect([...sink.files.keys()].at(-1)).toBe(INDEX_FILE); // the index last
    expect(Buffer.from(sink.bytes('config.json')).equals(config)).toBe(true);
    const merged = await openCheckpoint(sink.folder());
    const moved = await expectFaithfulMerge(base, merged, new Map(entries.map((e) => [e.name, { indices: e.indices, values: e.diff }])));
    expect(moved).toBeGreaterThan(100); // the large differences moved entries; the 1e-6 ones mostly round back
    await merged.close();
    await expect(checkDeltaBase(nodeFolder(QWEN), memorySource(delta, 'd'))).resolves.toBeUndefined();
  });

  it('refuses another base, naming the first mismatch, before writing (or, for a frozen tensor, before the index)', async () => {
    const delta = await v2Delta(await randomEntries(2));
    const src = () => memorySource(delta, 'usaf-delta.safetensors');
    const other = memorySink('other');
    await expect(mergeModel(nodeFolder(FIXTURE_DIR('deepseek_v3')), src(), other))
      .rejects.toThrow(/has no tensor "model\.layers\.0\.mlp\.experts\.0\.down_proj\.weight" .*not the model the delta was made from/);
    expect(other.files.size).toBe(0);

    // the same model with one byte changed: in a trained tensor (refused before anything is written), in a frozen one
    // (refused when its CRC is seen: that shard is discarded and no index written), or a different config.json
    const file = await readFile(join(QWEN, 'model.safetensors'));
    const withByte = (name: string): FileSet => {
      const t = base.tensors.get(name)!;
      const b = Uint8Array.from(file);
      b[base.files.get('model.safetensors')!.dataStart + t.begin + 3] ^= 0x40;
      return fileMapFolder(new Map([['model.safetensors', new Blob([b])], ['config.json', new Blob([new Uint8Array(config)])]]), 'edited');
    };
    const s1 = memorySink('s1');
    await expect(mergeModel(withByte(TRAINED[1]!), src(), s1)).rejects.toThrow(`"${TRAINED[1]}" in the base edited differs from the delta's original (CRC-32`);
    expect(s1.files.size).toBe(0);
    const frozen = 'model.layers.1.mlp.experts.2.up_proj.weight';
    const s2 = memorySink('s2');
    await expect(mergeModel(withByte(frozen), src(), s2)).rejects.toThrow(`"${frozen}" in the base edited differs from the delta's original`);
    expect(s2.files.has(INDEX_FILE)).toBe(false);
    expect([...s2.files.keys()].some((p) => p.endsWith('.safetensors'))).toBe(false); // one shard: discarded
    await expect(checkDeltaBase(withByte(TRAINED[0]!), src())).rejects.toThrow(`"${TRAINED[0]}" in the base edited differs`);
    const cfg = JSON.parse(config.toString());
    const otherConfig = fileMapFolder(new Map([['model.safetensors', new Blob([file])], ['config.json', new Blob([JSON.stringify({ ...cfg, rope_theta: 1 })])]]), 'cfg');
    await expect(mergeModel(otherConfig, src(), memorySink('s3'))).rejects.toThrow("the base cfg's config.json differs from the delta's original");
  });

  it('stops when its signal aborts: the shard being written is discarded, no index', async () => {
    const delta = await v2Delta(await randomEntries(5));
    const ac = new AbortController();
    const sink = memorySink('aborted');
    const run = mergeModel(nodeFolder(QWEN), memorySource(delta, 'd'), sink, {
      maxShardBytes: 200_000, chunkBytes: 4096, signal: ac.signal,
      onProgress: (p) => { if (p.bytesDone > 300_000) ac.abort(new Error('stopped by the user')); },
    });
    await expect(run).rejects.toThrow('stopped by the user');
    expect(sink.files.has(INDEX_FILE)).toBe(false);
    const shards = [...sink.files.keys()].filter((p) => p.endsWith('.safetensors'));
    expect(shards.length).toBeGreaterThan(0); // the shards finished before the abort stay, complete
    for (const p of shards) await expect(openCheckpoint(fileMapFolder(new Map([['model.safetensors', sink.blob(p)]]), p))).resolves.toBeTruthy();
  });

  it('refuses a damaged or edited delta', async () => {
    const delta = await v2Delta(await randomEntries(3));
    const damaged = delta.slice();
    damaged[damaged.length - 5] ^= 1;
    await expect(mergeModel(nodeFolder(QWEN), memorySource(damaged, 'd'), memorySink())).rejects.toThrow('does not match its CRC (corrupt or tampered file)');
    // the original's fingerprint edited (one CRC) without its digest: refused
    const n = Number(new DataView(delta.buffer, delta.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(delta.subarray(8, 8 + n)));
    const original = JSON.parse(header.__metadata__.original);
    original.tensors[0].crc = original.tensors[0].crc === '00000000' ? '00000001' : '00000000';
    header.__metadata__.original = JSON.stringify(original);
    const text = new TextEncoder().encode(JSON.stringify(header));
    const padded = Math.ceil(text.length / 8) * 8;
    const edited = new Uint8Array(8 + padded + delta.length - 8 - n).fill(0x20, 8 + text.length, 8 + padded);
    new DataView(edited.buffer).setBigUint64(0, BigInt(padded), true);
    edited.set(text, 8);
    edited.set(delta.subarray(8 + n), 8 + padded);
    await expect(openDeltaAny(edited)).rejects.toThrow('metadata "original" does not match its digest (corrupt or edited file)');
  });

  it('an unquantized run\'s export equals the plain export of its trained values bit for bit (d fitted)', async () => {
    const spec = parseConfig(JSON.parse(config.toString()));
    const changed = new Map<string, Float32Array>();
    const r = rng(9);
    for (const name of TRAINED) {
      const v = await sparselyChanged(base, name, name.endsWith('gate.weight') ? 1 : 0.05, 40, 0.02);
      // values on a bf16 rounding tie, far below the original: there f32(t − o) is inexact and f32(o + f32(t − o))
      // can land on either side of the tie, so d must be fitted for the merge to round as t does
      const o = await sparselyChanged(base, name, 0, 0);
      for (let i = 0; i < v.length; i += 7) {
        const u = new Uint32Array(new Float32Array([(o[i] || 0.5) * 2 ** -12 * (1 + r())]).buffer)[0]!;
        v[i] = new Float32Array(new Uint32Array([((u & 0xffff0000) | 0x8000 | (i % 2)) >>> 0]).buffer)[0]!; // a tie, or just above
      }
      changed.set(name, v);
    }
    const run: TrainedRun = { gpu: undefined as never, spec, layers: [], changedTensors: async () => changed, touchedValues: () => { throw new Error("no 4-bit layer here") } };
    const out = memorySink('out'), deltaSink = memorySink('delta');
    const res = await exportRun(run, { loaded: base, loadedFolder: nodeFolder(QWEN), settings: { steps: 2 }, deltaSink, mergeSink: out });
    expect(res.merged).not.toBeNull();
    const plain = memorySink('plain');
    await exportModel(plain, base, nodeFolder(QWEN), changed);
    const a = await openCheckpoint(out.folder()), b = await openCheckpoint(plain.folder());
    for (const name of base.tensors.keys()) {
      if (!Buffer.from(await a.readTensor(name)).equals(Buffer.from(await b.readTensor(name)))) throw new Error(`"${name}" differs from the plain export`);
    }
    // and the delta it wrote merges onto the original to the same bytes, storing only entries that changed
    const d = await openDeltaAny(deltaSink.bytes('usaf-delta.safetensors'));
    expect(d.version).toBe(2);
    expect(d.parts.get(TRAINED[3]!)!.kind).toBe('dense');
    const expert = d.parts.get(TRAINED[0]!)!;
    expect(expert.kind).toBe('sparse');
    expect(expert.count).toBeLessThan(0.2 * 128 * 64);
    const again = memorySink('again');
    await mergeModel(nodeFolder(QWEN), memorySource(deltaSink.bytes('usaf-delta.safetensors'), 'd'), again);
    for (const p of again.files.keys()) expect(Buffer.from(again.bytes(p)).equals(Buffer.from(out.bytes(p))), p).toBe(true);
    await a.close();
    await b.close();
  });

  it('merges a version 1 delta made over the original as its new values; refuses one made over another base in words', async () => {
    const changed = new Map<string, Float32Array>();
    for (const [i, name] of TRAINED.entries()) changed.set(name, await sparselyChanged(base, name, i === 3 ? 1 : 0.05, 50 + i));
    const v1 = concat((await makeDelta(base, changed, { baseConfig: config })).chunks);
    const out = memorySink('v1');
    await mergeModel(nodeFolder(QWEN), memorySource(v1, 'd'), out);
    const plain = memorySink('plain');
    await exportModel(plain, base, nodeFolder(QWEN), changed);
    const a = await openCheckpoint(out.folder()), b = await openCheckpoint(plain.folder());
    for (const name of base.tensors.keys()) expect(Buffer.from(await a.readTensor(name)).equals(Buffer.from(await b.readTensor(name))), name).toBe(true);
    await a.close();
    await b.close();

    // a v1 delta over a different base (as one over a stored model's dequantized view): same names, other bytes
    const file = await readFile(join(QWEN, 'model.safetensors'));
    const t = base.tensors.get(TRAINED[0]!)!;
    const edited = Uint8Array.from(file);
    edited[base.files.get('model.safetensors')!.dataStart + t.begin] ^= 1;
    const view = await openCheckpoint(fileMapFolder(new Map([['model.safetensors', new Blob([edited])]]), 'view'));
    const overView = concat((await makeDelta(view, changed)).chunks);
    await expect(mergeModel(nodeFolder(QWEN), memorySource(overView, 'd'), memorySink()))
      .rejects.toThrow(/version 1 delta was made from .* cannot be merged onto the original/);
    await view.close();
  });
});

describe('mergeModel streams (demo model, 4 shards)', () => {
  it('holds at most one trained tensor plus two copy pieces, never a shard', async () => {
    const demo = await openCheckpoint(nodeFolder(DEMO_DIR));
    const demoConfig = await readFile(join(DEMO_DIR, 'config.json'));
    const names = ['model.layers.6.mlp.experts.3.gate_proj.weight', 'model.layers.7.mlp.gate.weight', 'model.embed_tokens.weight'];
    const r = rng(4);
    const entries: DiffEntry[] = names.map((name) => {
      const t = demo.tensors.get(name)!;
      const n = t.shape.reduce((a, b) => a * b, 1);
      const idx = Uint32Array.from({ length: 50 }, (_, k) => k * Math.floor(n / 50));
      return { name, dtype: t.dtype, shape: t.shape, indices: idx, diff: Float32Array.from(idx, () => r() - 0.5) };
    });
    const delta = concat(encodeDeltaV2(entries, await fingerprintOf(demo, demoConfig), {}).chunks);

    // every byte read from the base is counted; the sink counts what it is handed and keeps nothing
    let read = 0, written = 0, peak = 0, baseline = -1, biggestChunk = 0;
    const folder = nodeFolder(DEMO_DIR);
    const counted: FileSet = {
      name: 'demo',
      open: async (p) => {
        const s = await folder.open(p);
        if (!s) return null;
        const c: ByteSource = { name: s.name, size: () => s.size(), read: async (o, l) => { const b = await s.read(o, l); read += b.byteLength; return b; }, close: () => s.close?.() ?? Promise.resolve() };
        return c;
      },
    };
    const sink: FileSink = {
      name: 'counting',
      async write(_path, chunks) {
        if (baseline < 0) baseline = read; // headers and the trained tensors' up-front CRC check
        for await (const c of chunks) {
          // held when a piece is handed over: everything read and not yet written, the piece itself included
          peak = Math.max(peak, read - baseline - written);
          written += c.byteLength;
          biggestChunk = Math.max(biggestChunk, c.byteLength);
        }
      },
    };
    const chunkBytes = 256 << 10;
    const res = await mergeModel(counted, memorySource(delta, 'd'), sink, { maxShardBytes: 1e12, chunkBytes });
    expect(res.shards.length).toBe(1); // the whole model in one shard: a writer buffering shards would hold all of it
    const biggestTrained = Math.max(...names.map((n) => demo.tensors.get(n)!.byteLength));
    const cap = biggestTrained + 2 * chunkBytes;
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(cap);
    expect(cap).toBeLessThan(res.bytes / 4);
    expect(biggestChunk).toBeLessThanOrEqual(Math.max(chunkBytes, biggestTrained, 64 << 10));
    await demo.close();
  });
});

describe('expertSpan', () => {
  it('maps a layer\'s index spaces onto its expert tensors, per expert and fused (as the Trainer lays them out)', () => {
    const E = 3, per = 10;
    const gu = Float32Array.from({ length: 2 * E * per }, (_, i) => i + 0.5); // [gate experts | up experts]
    // the Trainer's fused gate_up [E, 2·IE, H]: expert k's gate rows, then its up rows
    const fused = new Float32Array(2 * E * per);
    for (let k = 0; k < E; k++) {
      fused.set(gu.subarray(k * per, (k + 1) * per), 2 * k * per);
      fused.set(gu.subarray((E + k) * per, (E + k + 1) * per), (2 * k + 1) * per);
    }
    const f = expertSpan('expert.gate_up_fused', 0, E, per)!;
    expect({ lo: f.lo, n: f.n }).toEqual({ lo: 0, n: 2 * E * per });
    for (let s = 0; s < 2 * E * per; s++) expect(fused[f.at(s)]).toBe(gu[s]);
    const seen = new Set<number>();
    for (let x = 0; x < E; x++) {
      for (const role of ['expert.gate', 'expert.up']) {
        const sp = expertSpan(role, x, E, per)!;
        for (let s = sp.lo; s < sp.lo + sp.n; s++) { expect(sp.at(s)).toBe(s - sp.lo); seen.add(s); }
        expect(gu[sp.lo]).toBe((role === 'expert.gate' ? x : E + x) * per + 0.5);
      }
    }
    expect(seen.size).toBe(2 * E * per);
    expect(expertSpan('router', 0, E, per)).toBeNull();
  });
});
