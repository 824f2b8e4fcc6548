// The faithful export of 4-bit runs (docs/delta-format.md), qwen3_moe and deepseek_v3 fixtures, G = 32, a few tiny steps:
// the delta holds d = f32(trained − the GPU's dequantized base) at exactly the touched entries where it is nonzero
// (routers dense); the merged model, read tensor by tensor against the original file, equals bf16(f32(original + d))
// there and the original's bytes everywhere else, frozen layers included — for a quantize-on-load run and for a run on
// a stored 4-bit model (merged with the original given, or the delta alone then mergeModel: the same bytes).
import { afterAll, describe, expect, it } from 'vitest';
import { openModel, readSpec } from '../../src/cli/load-model.ts';
import { withExpertLayout } from '../../src/engine/model/config.ts';
import { detectExpertLayout } from '../../src/engine/model/tensors.ts';
import { testGpu } from '../helpers/gpu.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { createBuffer, readF32 } from '../../src/engine/gpu/buffers.ts';
import { Encoder } from '../../src/engine/gpu/encoder.ts';
import { memorySource } from '../../src/engine/io/byte-source.ts';
import { openCheckpoint, type Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { memorySink } from '../../src/engine/io/sink.ts';
import { dequantizeExperts } from '../../src/engine/quant/experts-q4.ts';
import { importQ4 } from '../../src/engine/quant/import-q4.ts';
import { openDeltaAny } from '../../src/engine/train/delta-v2.ts';
import { exportRun } from '../../src/engine/train/export-run.ts';
import { decodeTrainCheckpoint, encodeTrainCheckpoint } from '../../src/engine/train/checkpoint-file.ts';
import { fingerprintOf, readConfig, readStoredOriginal } from '../../src/engine/train/fingerprint.ts';
import { mergeModel } from '../../src/engine/train/merge.ts';
import { importanceBatches } from '../../src/engine/train/run.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import { nodeFileSink } from '../../src/node/file-sink.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { randomSamples } from '../helpers/samples.ts';
import { tempFolder } from '../helpers/train-io.ts';
import { expectFaithfulMerge } from '../helpers/merge-check.ts';

const G = 32;
const FIXTURES = ['test/fixtures/qwen3_moe', 'test/fixtures/deepseek_v3'];
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => { for (const c of cleanup) await c(); });

function settings(trainFrom: number): TrainSettings {
  return { frac: 0.03, steps: 3, microbatch: 1, accum: 1, seq: 8, lrPeak: 2e-2, wd: 0.005, trainFrom, reselectEvery: 2, evalEvery: 0, nImportance: 1, frozenCacheN: 100, seed: 5, evalWindows: null };
}


/** A few steps on `dir` (the original with 4-bit experts quantized on load, or a stored 4-bit model). */
async function trained(gpu: GpuContext, dir: string, quantize: boolean) {
  const s = settings((await readSpec(dir)).numLayers - 2);
  const m = { s, ...(await openModel(gpu, dir, { trainFrom: s.trainFrom, quantizeExperts: quantize ? { groupSize: G } : undefined })) };
  const data = randomSamples(4, m.s.seq, m.spec.vocab, 11);
  const t = new Trainer(gpu, m.spec, m.weights, m.s, data);
  await t.init(importanceBatches(m.s.seed, m.s.nImportance, m.s.microbatch, data.count));
  for (let i = 0; i < m.s.steps; i++) expect((await t.trainStep()).record.finite).toBe(true);
  return { t, m };
}

/**
 * The delta's entries against an oracle: for 4-bit layers, d = f32(t − GPU dequantized base) at the touched entries
 * (nonzero ones), none elsewhere; routers dense. Returns the entries by tensor.
 */
async function checkDelta(gpu: GpuContext, t: Trainer, deltaBytes: Uint8Array) {
  const d = await openDeltaAny(deltaBytes);
  expect(d.version).toBe(2);
  const entries = new Map<string, { indices: Uint32Array | null; values: Float32Array }>();
  for (const name of d.parts.keys()) entries.set(name, await d.read(name));
  const spec = t.spec;
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const per = IE * spec.hidden;
  const current = await t.changedTensors();
  const gu = createBuffer(gpu, { label: 'test.gu', size: 2 * E * per * 4 }), dn = createBuffer(gpu, { label: 'test.dn', size: E * per * 4 });
  let stored = 0;
  for (const l of t.layers) {
    if (l.base.kind !== 'q4') throw new Error('expected a 4-bit base');
    const enc = new Encoder(gpu, 'test.dequant');
    dequantizeExperts(enc, gu, dn, l.base.experts, spec);
    enc.submit();
    const base = { G: await readF32(gpu, gu), D: await readF32(gpu, dn) };
    const touched = { G: new Set(l.G.touched), D: new Set(l.D.touched) };
    for (const e of spec.layers[l.layer]!.tensors) {
      const x = e.expert ?? 0;
      if (e.role === 'router') {
        expect(d.parts.get(e.name)!.kind).toBe('dense');
        continue;
      }
      const space = e.role === 'expert.gate' || e.role === 'expert.up' ? 'G' : e.role === 'expert.down' ? 'D' : null;
      if (!space) continue;
      const off = e.role === 'expert.up' ? (E + x) * per : x * per;
      const want: [number, number][] = [];
      const cur = current.get(e.name)!;
      for (let i = 0; i < per; i++) {
        if (!touched[space].has(off + i)) continue;
        const diff = Math.fround(cur[i]! - base[space][off + i]!);
        if (diff !== 0) want.push([i, diff]);
      }
      const got = entries.get(e.name);
      const pairs = got ? Array.from(got.indices!, (i, k) => [i, got.values[k]!]) : [];
      expect(pairs, e.name).toEqual(want);
      stored += want.length;
    }
  }
  gu.destroy();
  dn.destroy();
  expect(stored).toBeGreaterThan(0);
  return entries;
}


describe('faithful export of 4-bit runs', () => {
  for (const dir of FIXTURES) {
    it(`${dir.split('/').pop()}: quantize-on-load run, merged onto the original it loaded`, async () => {
      const gpu = await testGpu();
      const { t, m } = await trained(gpu, dir, true);
      const deltaSink = memorySink('delta'), out = memorySink('merged');
      const r = await exportRun(t, { loaded: m.ckpt, loadedFolder: nodeFolder(dir), settings: { ...m.s }, deltaSink, mergeSink: out });
      expect(r.merged).not.toBeNull();
      const entries = await checkDelta(gpu, t, deltaSink.bytes('usaf-delta.safetensors'));
      const merged = await openCheckpoint(out.folder());
      expect(await expectFaithfulMerge(m.ckpt, merged, entries)).toBeGreaterThan(0);
      // the delta alone, merged by mergeModel onto the original: the same files
      const again = memorySink('again');
      await mergeModel(nodeFolder(dir), memorySource(deltaSink.bytes('usaf-delta.safetensors'), 'd'), again);
      for (const p of out.files.keys()) expect(Buffer.from(again.bytes(p)).equals(Buffer.from(out.bytes(p))), p).toBe(true);
      await merged.close();
      await m.ckpt.close();
    }, 240_000);

    it(`${dir.split('/').pop()}: run on a stored 4-bit model, merged onto the original (frozen experts the original's, not 4-bit)`, async () => {
      const gpu = await testGpu();
      const src = await openCheckpoint(nodeFolder(dir));
      const store = await tempFolder('merge-store');
      cleanup.push(store.remove);
      const spec = withExpertLayout(await readSpec(dir), detectExpertLayout(src.tensors.keys()));
      await importQ4(gpu, spec, nodeFileSink(store.dir, { fsync: false }), src, nodeFolder(dir), { groupSize: G, maxShardBytes: 150_000 });
      // the store recorded the original's fingerprint
      expect((await readStoredOriginal(nodeFolder(store.dir)))!.fingerprint).toEqual(await fingerprintOf(src, await readConfig(nodeFolder(dir))));

      const { t, m } = await trained(gpu, store.dir, false);
      const deltaSink = memorySink('delta'), out = memorySink('merged');
      const r = await exportRun(t, { loaded: m.ckpt, loadedFolder: nodeFolder(store.dir), original: nodeFolder(dir), settings: { ...m.s }, deltaSink, mergeSink: out });
      expect(r.merged!.shards.length).toBeGreaterThan(0);
      const entries = await checkDelta(gpu, t, deltaSink.bytes('usaf-delta.safetensors'));
      const merged = await openCheckpoint(out.folder());
      expect(await expectFaithfulMerge(src, merged, entries)).toBeGreaterThan(0);

      // without the original: the delta alone (the same bytes), and mergeModel makes the same files of it
      const alone = memorySink('alone');
      const r2 = await exportRun(t, { loaded: m.ckpt, loadedFolder: nodeFolder(store.dir), settings: { ...m.s }, deltaSink: alone, mergeSink: memorySink('unused') });
      expect(r2.merged).toBeNull();
      expect(r2.originalSource).toBeNull(); // this import was not told where its original is
      expect(Buffer.from(alone.bytes('usaf-delta.safetensors')).equals(Buffer.from(deltaSink.bytes('usaf-delta.safetensors')))).toBe(true);
      // the delta of a Trainer restored from the run's last checkpoint (an export of a run made earlier) is the one the
      // finished run's own Trainer writes (the app keeps that one: worker/engine.ts keepDelta)
      const snap = Buffer.concat(encodeTrainCheckpoint(await t.snapshot(m.s as unknown as Record<string, unknown>, [])));
      const r3 = await openModel(gpu, store.dir, { trainFrom: m.s.trainFrom });
      const restored = new Trainer(gpu, r3.spec, r3.weights, { ...m.s, frozenCacheN: 0 }, { count: 1, seq: m.s.seq, fill: () => undefined });
      await restored.restore(await decodeTrainCheckpoint(memorySource(new Uint8Array(snap), 'train-state.safetensors')));
      const fromCheckpoint = memorySink('restored');
      await exportRun(restored, { loaded: r3.ckpt, loadedFolder: nodeFolder(store.dir), settings: { ...m.s }, deltaSink: fromCheckpoint, mergeSink: null });
      expect(Buffer.from(fromCheckpoint.bytes('usaf-delta.safetensors')).equals(Buffer.from(alone.bytes('usaf-delta.safetensors')))).toBe(true);
      await r3.ckpt.close();
      const again = memorySink('again');
      await mergeModel(nodeFolder(dir), memorySource(alone.bytes('usaf-delta.safetensors'), 'd'), again);
      for (const p of out.files.keys()) expect(Buffer.from(again.bytes(p)).equals(Buffer.from(out.bytes(p))), p).toBe(true);
      // and onto another model it is refused by name
      const other = FIXTURES.find((f) => f !== dir)!;
      await expect(mergeModel(nodeFolder(other), memorySource(alone.bytes('usaf-delta.safetensors'), 'd'), memorySink())).rejects.toThrow(/not the model the delta was made from|differs from the delta's original/);
      await merged.close();
      await m.ckpt.close();
      await src.close();
    }, 300_000);
  }
});
