// Training on 4-bit experts (qwen3_moe fixture, G = 32): trained layers keep only their 4-bit base plus masters and the
// overlay of touched entries (the fused path: the steps read W0 + a sparse correction; a selection or the export
// materializes chunks into a scratch made for that work). A resumed run continues the same run, the
// loss falls, entries never trained stay exactly at the dequantized base, and the export holds base + overlay in bf16.
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { allocatedBytes, createBuffer, peakAllocatedBytes, readF32 } from '../../src/engine/gpu/buffers.ts';
import { Encoder } from '../../src/engine/gpu/encoder.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { SampleSet } from '../../src/engine/train/types.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import { importanceBatches } from '../../src/engine/train/run.ts';
import { encodeTrainCheckpoint, decodeTrainCheckpoint } from '../../src/engine/train/checkpoint-file.ts';
import { memorySource } from '../../src/engine/io/byte-source.ts';
import { memorySink } from '../../src/engine/io/sink.ts';
import { exportModel } from '../../src/engine/train/export.ts';
import { makeDelta } from '../../src/engine/train/delta.ts';
import { openCheckpoint } from '../../src/engine/io/checkpoint.ts';
import { decodeF32 } from '../../src/engine/io/dtype.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { dequantizeExperts } from '../../src/engine/quant/experts-q4.ts';
import { roundBf16 } from '../helpers/experts-data.ts';
import { randomSamples } from '../helpers/samples.ts';

const FIX = 'test/fixtures/qwen3_moe';
const G = 32;

function settings(over: Partial<TrainSettings>): TrainSettings {
  return { frac: 0.01, steps: 6, microbatch: 2, accum: 1, seq: 12, lrPeak: 5e-3, wd: 0.005, trainFrom: 2, reselectEvery: 3, evalEvery: 0, nImportance: 2, frozenCacheN: 100, seed: 7, evalWindows: null, ...over };
}

async function trainer(gpu: GpuContext, s: TrainSettings, data: SampleSet) {
  const m = await openModel(gpu, FIX, { trainFrom: s.trainFrom, quantizeExperts: { groupSize: G } });
  return { t: new Trainer(gpu, m.spec, m.weights, s, data), ckpt: m.ckpt };
}

describe('training on 4-bit experts (qwen3_moe fixture)', () => {
  it('resumes exactly; untouched entries stay at the dequantized base; export is base + overlay in bf16', async () => {
    const gpu = await nodeGpu();
    const data = randomSamples(6, 12, 512, 3);
    const s = settings({});
    const { t: a, ckpt } = await trainer(gpu, s, data);
    expect(a.fused).toBe(true); // 4-bit: the fused path by default, no f32 expert scratch held
    expect(a.scratch).toBeNull();
    await a.init(importanceBatches(s.seed, s.nImportance, s.microbatch, data.count));
    const full: number[] = [];
    let snap: Uint8Array | null = null;
    for (let i = 0; i < 5; i++) {
      full.push((await a.trainStep()).record.loss);
      if (i === 1) snap = concat(encodeTrainCheckpoint(await a.snapshot(s as unknown as Record<string, unknown>, [])));
    }
    expect(a.turnovers.length).toBe(1);
    expect(full.every(Number.isFinite)).toBe(true);

    const { t: b, ckpt: bCkpt } = await trainer(gpu, s, data);
    await b.restore(await decodeTrainCheckpoint(memorySource(snap!, 'train-state.safetensors')));
    await b.warmUp(); // what runTraining does after a restore: it must change nothing
    for (let i = 2; i < 5; i++) expect(Math.abs((await b.trainStep()).record.loss - full[i]!), `step ${i + 1}`).toBeLessThanOrEqual(1e-5);

    // Current weights (changedTensors) vs the dequantized 4-bit base, per trained layer.
    const spec = a.spec;
    const { numExperts: E, expertIntermediate: IE } = spec.moe;
    const per = E * IE * spec.hidden, pe = IE * spec.hidden;
    const changed = await a.changedTensors();
    const guB = createBuffer(gpu, { label: 'test.gu', size: 2 * per * 4 }), dnB = createBuffer(gpu, { label: 'test.down', size: per * 4 });
    for (const l of a.layers) {
      if (l.base.kind !== 'q4') throw new Error('expected a 4-bit base');
      const enc = new Encoder(gpu, 'test.base');
      dequantizeExperts(enc, guB, dnB, l.base.experts, spec);
      enc.submit();
      const base = { G: await readF32(gpu, guB), D: await readF32(gpu, dnB) };
      const cur = { G: new Float32Array(2 * per), D: new Float32Array(per) };
      for (const e of spec.layers[l.layer]!.tensors) {
        const v = changed.get(e.name);
        if (e.role === 'expert.gate') cur.G.set(v!, e.expert! * pe);
        else if (e.role === 'expert.up') cur.G.set(v!, (E + e.expert!) * pe);
        else if (e.role === 'expert.down') cur.D.set(v!, e.expert! * pe);
      }
      for (const [name, sel] of [['G', l.G], ['D', l.D]] as const) {
        const touched = new Set(sel.touched);
        let untouchedDiff = 0, touchedDiff = 0;
        for (let i = 0; i < sel.numel; i++) {
          if (touched.has(i)) touchedDiff += cur[name][i] !== base[name][i] ? 1 : 0;
          else untouchedDiff += Object.is(cur[name][i], base[name][i]) ? 0 : 1;
        }
        expect(untouchedDiff, `layer ${l.layer} ${name}: untouched entries off the base`).toBe(0);
        expect(touchedDiff, `layer ${l.layer} ${name}: trained entries moved`).toBeGreaterThan(sel.k / 2);
        expect(sel.touched.length).toBeGreaterThan(sel.k); // the reselection grew new entries; dropped ones stay in the overlay
        // what a checkpoint and the delta read: the same values at the touched entries, the layer never materialized
        // (GPU memory for it: the touched indices and values, not an f32 scratch of the experts)
        peakAllocatedBytes(gpu, true);
        const before = Object.values(allocatedBytes(gpu)).reduce((x, y) => x + y, 0);
        const at = await a.touchedValues(l, name);
        expect(peakAllocatedBytes(gpu) - before, `layer ${l.layer} ${name}: GPU bytes to read the touched values`).toBeLessThanOrEqual(2 * 4 * sel.touched.length);
        let off = 0;
        sel.touched.forEach((i, j) => { off += Object.is(at[j], cur[name][i]) ? 0 : 1; });
        expect(off, `layer ${l.layer} ${name}: touched values differ from the materialized weights`).toBe(0);
      }
    }

    // Export: the trained layers' experts in the checkpoint's dtype (bf16), = bf16(base dequantized + overlay).
    const sink = memorySink('export');
    await exportModel(sink, ckpt, nodeFolder(FIX), changed);
    const exported = await openCheckpoint(sink.folder());
    const name = spec.layers[2]!.tensors.find((e) => e.role === 'expert.gate' && e.expert === 1)!.name;
    expect(exported.tensors.get(name)!.dtype).toBe(ckpt.tensors.get(name)!.dtype);
    const got = decodeF32(exported.tensors.get(name)!.dtype, await exported.readTensor(name));
    expect(Array.from(got)).toEqual(Array.from(roundBf16(changed.get(name)!)));
    // Sparse delta over the checkpoint's own values: only touched entries are stored (routers dense).
    const onto = await a.changedTensors(ckpt);
    const delta = await makeDelta(ckpt, onto, { frac: s.frac, steps: 5 });
    let stored = 0, touched = 0;
    for (const [n, t] of Object.entries(delta.info.tensors)) if (!/gate\.weight$/.test(n) || /experts/.test(n)) stored += t.kind === 'sparse' ? t.count : 0;
    for (const l of a.layers) touched += l.G.touched.length + l.D.touched.length;
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThanOrEqual(touched);
    const orig = decodeF32(ckpt.tensors.get(name)!.dtype, await ckpt.readTensor(name));
    const ontoGate = onto.get(name)!;
    let same = 0;
    for (let i = 0; i < orig.length; i++) same += ontoGate[i] === orig[i] ? 1 : 0;
    expect(same).toBeGreaterThan(orig.length * 0.9); // untouched entries: the checkpoint's, not the dequantized base's
    for (const c of [ckpt, bCkpt, exported]) await c.close();
  });

  it('the training loss falls on its data', async () => {
    const gpu = await nodeGpu();
    const data = randomSamples(1, 16, 512, 5);
    const s = settings({ seq: 16, microbatch: 1, lrPeak: 2e-2, steps: 4, reselectEvery: 0, nImportance: 1, frac: 0.05 });
    const { t, ckpt } = await trainer(gpu, s, data);
    const before = await t.evaluate(data, null);
    await t.init([[0]]);
    const losses: number[] = [];
    for (let i = 0; i < 4; i++) losses.push((await t.trainStep()).record.loss);
    const after = await t.evaluate(data, null);
    expect(losses[0]).toBeCloseTo(before.loss, 4);
    expect(losses[3]!).toBeLessThan(losses[0]!);
    expect(after.loss).toBeLessThan(before.loss);
    await ckpt.close();
  });
});

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) (out.set(c, o), (o += c.byteLength));
  return out;
}
