// Stored 4-bit checkpoint (quant/import-q4.ts, FORMAT.md): importing the demo model and the Qwen2-MoE fixture (shared
// experts, expert width 48 = groups of 32 + 16) gives the size planStorage predicts, expert buffers bit-identical to
// quantize-on-load and identical logits; the bytes are deterministic, an interrupted import resumes to the same bytes,
// a damaged store fails with a clear error, and no chunk handed to the sink exceeds one layer's 4-bit buffer.
import { describe, expect, it } from 'vitest';
import { readSpec } from '../../src/cli/load-model.ts';
import { readU32 } from '../../src/engine/gpu/buffers.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { INDEX_FILE, openCheckpoint, type Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { fileMapFolder, type FileSet } from '../../src/engine/io/folder.ts';
import { asBytes, memorySink, type FileSink, type MemorySink } from '../../src/engine/io/sink.ts';
import { withExpertLayout } from '../../src/engine/model/config.ts';
import type { ModelSpec } from '../../src/engine/model/spec.ts';
import { detectExpertLayout } from '../../src/engine/model/tensors.ts';
import { planStorage } from '../../src/engine/plan/storage.ts';
import { q4ExpertLayouts } from '../../src/engine/quant/format.ts';
import { importQ4, type ImportOptions } from '../../src/engine/quant/import-q4.ts';
import { storedQ4Info } from '../../src/engine/quant/stored-q4.ts';
import { dequantizeExperts } from '../../src/engine/quant/experts-q4.ts';
import { hubView } from '../../src/engine/quant/hub-view.ts';
import { createBuffer, readF32 } from '../../src/engine/gpu/buffers.ts';
import { Encoder } from '../../src/engine/gpu/encoder.ts';
import { decodeBf16, encodeBf16 } from '../../src/engine/io/dtype.ts';
import { exportModel } from '../../src/engine/train/export.ts';
import { applyDelta, makeDelta } from '../../src/engine/train/delta.ts';
import { Forward } from '../../src/engine/train/forward.ts';
import { loadWeights, type ModelWeights } from '../../src/engine/train/weights.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { rng } from '../helpers/random.ts';
import { testGpu } from '../helpers/gpu.ts';

const DEMO = 'public/models/usaf-demo-moe';
const QWEN2 = 'test/fixtures/qwen2_moe';
const QWEN3 = 'test/fixtures/qwen3_moe';

async function sourceOf(dir: string): Promise<{ spec: ModelSpec; src: Checkpoint; folder: FileSet }> {
  const folder = nodeFolder(dir);
  const src = await openCheckpoint(folder);
  let spec = await readSpec(dir);
  const layout = detectExpertLayout(src.tensors.keys());
  if (layout !== spec.expertLayout) spec = withExpertLayout(spec, layout);
  return { spec, src, folder };
}

/** A memory sink that also records the largest chunk it was handed. */
function trackingSink(): MemorySink & { largest: () => number } {
  const inner = memorySink('store');
  let largest = 0;
  const write: FileSink['write'] = async (path, chunks) => {
    async function* seen() {
      for await (const c of chunks) { largest = Math.max(largest, c.byteLength); yield c; }
    }
    return inner.write(path, seen());
  };
  return Object.assign(Object.create(inner) as MemorySink, { write, largest: () => largest });
}

function snapshot(sink: MemorySink): Map<string, Uint8Array> {
  return new Map([...sink.files.keys()].map((p) => [p, sink.bytes(p)]));
}

async function logitsOf(gpu: GpuContext, spec: ModelSpec, w: ModelWeights, ids: Uint32Array, seq: number): Promise<Float32Array> {
  const f = new Forward(gpu, spec, w, { maxTokens: seq });
  await f.run(ids, 1, seq);
  return f.logits(seq);
}

/** Imports `dir`, loads the store and the source quantized on load, and compares buffers and logits exactly. */
async function checkRoundTrip(dir: string, G: number, options: ImportOptions = {}) {
  const gpu = await testGpu();
  const { spec, src, folder } = await sourceOf(dir);
  const sink = trackingSink();
  const r = await importQ4(gpu, spec, sink, src, folder, { groupSize: G, ...options });

  const plan = planStorage(spec, G);
  expect(Math.abs(r.bytesOut / plan.q4 - 1)).toBeLessThan(0.05);
  // host memory: no piece larger than one layer's gate|up 4-bit buffer or one bf16 source tensor
  const lay = q4ExpertLayouts(spec, G);
  const biggestSource = Math.max(...[...src.tensors.values()].map((t) => t.byteLength));
  expect(sink.largest()).toBeLessThanOrEqual(Math.max(lay.gateUp.bytes, biggestSource, 1 << 16));

  const stored = await openCheckpoint(sink.folder());
  expect(storedQ4Info(stored)).toEqual({ groupSize: G, expertLayout: spec.expertLayout });
  const a = await loadWeights(gpu, spec, stored);
  const b = await loadWeights(gpu, spec, src, { quantizeExperts: { groupSize: G } });
  for (let L = 0; L < spec.numLayers; L++) {
    const x = a.layers[L]!.experts, y = b.layers[L]!.experts;
    if (!x || !y) { expect(x).toBe(y); continue; }
    expect(x.gate.dtype).toBe('q4');
    expect(x.gate.q4).toEqual(y.gate.q4);
    expect(x.down.q4).toEqual(y.down.q4);
    expect(await readU32(gpu, x.gate.buf)).toEqual(await readU32(gpu, y.gate.buf));
    expect(await readU32(gpu, x.down.buf)).toEqual(await readU32(gpu, y.down.buf));
  }
  const seq = 13;
  const r0 = rng(11);
  const ids = Uint32Array.from({ length: seq }, () => Math.floor(r0() * spec.vocab));
  const la = await logitsOf(gpu, spec, a, ids, seq);
  const lb = await logitsOf(gpu, spec, b, ids, seq);
  expect(la.every(Number.isFinite)).toBe(true);
  expect(la).toEqual(lb);
  await stored.close();
  return { gpu, spec, src, folder, sink, result: r };
}

describe('stored 4-bit checkpoint', () => {
  it('demo model: planned size, bit-identical experts and logits, config and tokenizer copied', async () => {
    const { src, sink, result } = await checkRoundTrip(DEMO, 128);
    expect(result.copied).toEqual(expect.arrayContaining(['config.json', 'tokenizer.json', 'tokenizer_config.json']));
    const config = (await nodeFolder(DEMO).open('config.json'))!;
    expect(sink.bytes('config.json')).toEqual(new Uint8Array(await config.read(0, await config.size())));
    await config.close?.();
    const index = JSON.parse(new TextDecoder().decode(sink.bytes(INDEX_FILE)));
    expect(index.metadata).toMatchObject({ total_size: result.bytesOut, usaf_format: 'usaf-q4/1', usaf_group_size: '128', usaf_quantizer: 'hqq' });
    await src.close();
  }, 240_000);

  it('qwen2_moe (shared experts, short last group): same checks, deterministic bytes, resume after an interruption', async () => {
    const G = 32;
    const opts = { maxShardBytes: 64 << 10 }; // several shards
    const first = await checkRoundTrip(QWEN2, G, opts);
    const { gpu, spec, src, folder } = first;
    expect(first.result.shards.length).toBeGreaterThan(2);
    const want = snapshot(first.sink);

    // the same input again: identical bytes
    const again = memorySink('again');
    await importQ4(gpu, spec, again, src, folder, { groupSize: G, ...opts });
    expect(snapshot(again)).toEqual(want);

    // interrupted after 30 tensors, then resumed into the same sink
    const part = memorySink('part');
    const stopAt = 30;
    await expect(importQ4(gpu, spec, part, src, folder, {
      groupSize: G, ...opts,
      onProgress: (p) => { if (p.tensors === stopAt) throw new Error('interrupted'); },
    })).rejects.toThrow('interrupted');
    expect(part.files.has(INDEX_FILE)).toBe(false);
    const kept = [...part.files.keys()].filter((p) => p.endsWith('.safetensors'));
    expect(kept.length).toBeGreaterThan(0);
    const keptChunks = new Map(kept.map((p) => [p, part.files.get(p)]));
    const resumed = await importQ4(gpu, spec, part, src, folder, { groupSize: G, ...opts, resumeFrom: part.folder() });
    expect(resumed.resumedShards).toBe(kept.length);
    for (const [p, c] of keptChunks) expect(part.files.get(p)).toBe(c); // not rewritten: the same chunk list
    expect(snapshot(part)).toEqual(want);

    // a damaged shard is rewritten on resume, not trusted
    const damaged = memorySink('damaged');
    for (const [p, b] of want) await damaged.write(p, [p === kept[0] ? b.slice(0, b.byteLength - 8) : b]);
    const fixed = await importQ4(gpu, spec, damaged, src, folder, { groupSize: G, ...opts, resumeFrom: damaged.folder() });
    expect(fixed.resumedShards).toBe(first.result.shards.length - 1);
    expect(snapshot(damaged)).toEqual(want);

    // a truncated store fails to open with the file named; a q4 tensor of the wrong size or group size fails to load
    const truncated = new Map([...want].map(([p, b]) => [p, new Blob([asBytes(p === kept[0] ? b.slice(0, b.byteLength - 100) : b)])]));
    await expect(openCheckpoint(fileMapFolder(truncated, 'truncated'))).rejects.toThrow(new RegExp(kept[0]!.replace('.', '\\.')));
    const stored = await openCheckpoint(fileMapFolder(new Map([...want].map(([p, b]) => [p, new Blob([asBytes(b)])])), 'store'));
    await expect(loadWeights(gpu, spec, stored, { quantizeExperts: { groupSize: 64 } })).rejects.toThrow(/group size 32/);
    const lying = { ...stored, files: new Map([...stored.files].map(([p, f]) => [p, { ...f, metadata: { ...f.metadata, usaf_group_size: '16' } }])) };
    await expect(loadWeights(gpu, spec, lying)).rejects.toThrow(/group size 16 needs/);
    await stored.close();
    await src.close();
  }, 240_000);

  it('mixtral (block_sparse_moe names) and deepseek_v3 (dense layer 0, MLA): planned size, identical buffers and logits', async () => {
    for (const dir of ['test/fixtures/mixtral', 'test/fixtures/deepseek_v3']) {
      const { src } = await checkRoundTrip(dir, 32);
      await src.close();
    }
  }, 120_000);

  it('exports a stored model under Hub names in bf16 (experts = the GPU dequantization), and a delta on it applies', async () => {
    const gpu = await testGpu();
    const G = 32;
    const { spec, src, folder } = await sourceOf(QWEN3);
    const sink = memorySink('store');
    await importQ4(gpu, spec, sink, src, folder, { groupSize: G });
    const stored = await openCheckpoint(sink.folder());
    const view = hubView(stored, spec);
    expect([...view.tensors.keys()].sort()).toEqual([...src.tensors.keys()].sort());

    // the view's expert values are the GPU's dequantized f32, rounded to bf16
    const w = await loadWeights(gpu, spec, stored);
    const { numExperts: E, expertIntermediate: IE } = spec.moe;
    const per = IE * spec.hidden;
    const gu = createBuffer(gpu, { label: 'test.gu', size: 2 * E * per * 4 });
    const dn = createBuffer(gpu, { label: 'test.down', size: E * per * 4 });
    const bf = (v: Float32Array): Float32Array => decodeBf16(encodeBf16(v));
    for (const L of [0, spec.numLayers - 1]) {
      const enc = new Encoder(gpu, 'test.dequant');
      dequantizeExperts(enc, gu, dn, w.layers[L]!.experts!, spec);
      enc.submit();
      const g = await readF32(gpu, gu), d = await readF32(gpu, dn);
      for (const e of layerTensorsOf(spec, L)) {
        const x = e.expert!;
        const want = e.role === 'expert.gate' ? g.subarray(x * per, (x + 1) * per) : e.role === 'expert.up' ? g.subarray((E + x) * per, (E + x + 1) * per) : d.subarray(x * per, (x + 1) * per);
        expect(view.tensors.get(e.name)!.dtype).toBe('BF16');
        expect(decodeBf16(await view.readTensor(e.name))).toEqual(bf(want));
      }
    }

    // export with one trained expert: Hub names, bf16, the changed values; the rest as the view reads them
    const trained = layerTensorsOf(spec, 1)[4]!;
    const changedValues = decodeBf16(await view.readTensor(trained.name));
    for (let i = 0; i < changedValues.length; i += 7) changedValues[i] += 0.25;
    const changed = new Map([[trained.name, changedValues]]);
    const out = memorySink('export');
    await exportModel(out, view, folder, changed);
    const hub = await openCheckpoint(out.folder());
    expect([...hub.tensors.keys()].sort()).toEqual([...src.tensors.keys()].sort());
    expect(Object.values(hub.files.values().next().value!.metadata)).not.toContain('usaf-q4/1');
    expect(decodeBf16(await hub.readTensor(trained.name))).toEqual(bf(changedValues));
    const other = layerTensorsOf(spec, 1)[0]!;
    expect(await hub.readTensor(other.name)).toEqual(await view.readTensor(other.name));

    // the delta over the view carries exactly the changed entries and applies back onto it
    const delta = await makeDelta(view, changed, {});
    const bytes = new Uint8Array(delta.chunks.reduce((n, c) => n + c.byteLength, 0));
    let at = 0;
    for (const c of delta.chunks) { bytes.set(c, at); at += c.byteLength; }
    const applied = await applyDelta(view, bytes);
    expect([...applied.keys()]).toEqual([trained.name]);
    expect(applied.get(trained.name)).toEqual(changedValues);
    await hub.close();
    await stored.close();
    await src.close();
  }, 120_000);
});

/** The routed-expert entries of layer L (per-expert layout). */
function layerTensorsOf(spec: ModelSpec, L: number) {
  return spec.layers[L]!.tensors.filter((e) => e.role.startsWith('expert.'));
}
