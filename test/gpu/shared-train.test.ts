// Training the shared experts (TrainSettings.trainShared) on the DeepSeek-V3 and Qwen2-MoE fixtures: their gradients equal
// transformers', the loss falls, they change only at entries ever selected, count as trainable, resume exactly, and reach
// the export and the sparse delta; with trainShared off they stay as loaded.
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { runParity } from '../../src/cli/commands/parity.ts';
import { readU32 } from '../../src/engine/gpu/buffers.ts';
import { decodeF32 } from '../../src/engine/io/dtype.ts';
import { memorySource } from '../../src/engine/io/byte-source.ts';
import { memorySink } from '../../src/engine/io/sink.ts';
import { openCheckpoint, type Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { decodeTrainCheckpoint, encodeTrainCheckpoint } from '../../src/engine/train/checkpoint-file.ts';
import { applyDelta, makeDelta } from '../../src/engine/train/delta.ts';
import { encodeAs, exportModel } from '../../src/engine/train/export.ts';
import { importanceBatches } from '../../src/engine/train/run.ts';
import { activeCount } from '../../src/engine/train/schedule.ts';
import { sharedExpertTensors } from '../../src/engine/train/shared-expert.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { SampleSet } from '../../src/engine/train/types.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { testGpu } from '../helpers/gpu.ts';
import { randomSamples as samples } from '../helpers/samples.ts';

const TRAIN_FROM = 2;

const settings = (over: Partial<TrainSettings>): TrainSettings => ({
  frac: 0.005, steps: 5, microbatch: 2, accum: 1, seq: 12, lrPeak: 2e-2, wd: 0.005, trainFrom: TRAIN_FROM, reselectEvery: 3,
  evalEvery: 0, nImportance: 2, frozenCacheN: 4, seed: 3, evalWindows: null, trainShared: true, ...over,
});

async function trainer(dir: string, s: TrainSettings, data: SampleSet): Promise<Trainer> {
  const gpu = await testGpu();
  const m = await openModel(gpu, dir, { trainFrom: s.trainFrom, trainShared: s.trainShared });
  await m.ckpt.close();
  return new Trainer(gpu, m.spec, m.weights, s, data);
}

const sharedNames = (t: Trainer): string[] =>
  t.graph.trained.flatMap((L) => sharedExpertTensors(t.spec, L)).filter((e) => e.role !== 'shared.expert_gate').map((e) => e.name);

async function baseValues(ckpt: Checkpoint, name: string): Promise<Float32Array> {
  return decodeF32(ckpt.tensors.get(name)!.dtype, await ckpt.readTensor(name));
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) (out.set(c, o), (o += c.byteLength));
  return out;
}

describe.each(['deepseek_v3', 'qwen2_moe'])('%s shared experts', (family) => {
  const dir = `test/fixtures/${family}`;

  it('their gradients in the trained layers (loaded f32) equal transformers\' within 1e-3', async () => {
    const r = await runParity(dir, `${dir}/reference.safetensors`, { tol: 1e-3, trainFrom: TRAIN_FROM, grads: true, trainShared: true });
    const shared = Object.entries(r.errors).filter(([n]) => /shared_experts?\.(gate|up|down)_proj/.test(n));
    expect(shared.length).toBe(3 * (4 - TRAIN_FROM));
    for (const [name, e] of shared) expect(e, name).toBeLessThanOrEqual(1e-3);
    expect(r.ok).toBe(true);
  });

  it('trainShared: loss falls, changes only at selected entries, counted, resumed exactly, exported and in the delta', async () => {
    const data = samples(2, 12, 512, 5);
    const s = settings({});
    const a = await trainer(dir, s, data);
    expect(a.shared).not.toBeNull();
    const before = await a.evaluate(data, null);
    await a.init(importanceBatches(s.seed, s.nImportance, s.microbatch, data.count));
    const losses: number[] = [];
    let snap: Uint8Array | null = null;
    for (let i = 0; i < 5; i++) {
      const r = await a.trainStep();
      expect(r.record.finite).toBe(true);
      losses.push(r.record.loss);
      if (r.reselect) expect(r.reselect.turnovers.length).toBe(4 * a.layers.length); // routed G, D + shared G, D per layer
      if (i === 1) snap = concat(encodeTrainCheckpoint(await a.snapshot(s as unknown as Record<string, unknown>, [])) as Uint8Array[]);
    }
    const after = await a.evaluate(data, null);
    expect(after.loss).toBeLessThan(before.loss);

    // trainable = routed active entries + routers + shared active entries (k of [gate|up] and of down per layer)
    const { numExperts: E, expertIntermediate: IE, sharedExperts } = a.spec.moe;
    const H = a.spec.hidden, IS = sharedExperts!.intermediate;
    const perLayer = activeCount(s.frac, 2 * E * IE * H) + activeCount(s.frac, E * IE * H) + E * H
      + activeCount(s.frac, 2 * IS * H) + activeCount(s.frac, IS * H);
    expect(a.trainableParams).toBe(a.layers.length * perLayer);

    // shared weights differ from the base only at entries ever selected, and do differ at some
    const base = await openCheckpoint(nodeFolder(dir));
    const changed = await a.changedTensors();
    const names = sharedNames(a);
    expect(names.length).toBe(3 * a.layers.length);
    for (const l of a.shared!.layers) {
      for (const [sel, parts] of [[l.G.sel, [l.names.gate, l.names.up]], [l.D.sel, [l.names.down]]] as const) {
        const now = Float32Array.from(parts.flatMap((n) => [...changed.get(n)!]));
        const was = Float32Array.from((await Promise.all(parts.map((n) => baseValues(base, n)))).flatMap((x) => [...x]));
        const touched = new Set(sel.touched);
        let moved = 0;
        for (let i = 0; i < now.length; i++) {
          if (!touched.has(i)) expect(now[i], `${sel.name}[${i}] never selected`).toBe(was[i]);
          else if (now[i] !== was[i]) moved++;
        }
        expect(moved, sel.name).toBeGreaterThan(0);
      }
    }

    // resume after step 2 on fresh weights: steps 3-5 give the same losses
    const b = await trainer(dir, s, data);
    await b.restore(await decodeTrainCheckpoint(memorySource(snap!, 'train-state.safetensors')));
    await b.warmUp(); // what runTraining does after a restore: it must change nothing
    for (let i = 2; i < 5; i++) expect(Math.abs((await b.trainStep()).record.loss - losses[i]!), `step ${i + 1}`).toBeLessThanOrEqual(1e-5);

    // export writes them (base dtype), the delta holds them and gives them back bit for bit
    const sink = memorySink('export');
    await exportModel(sink, base, nodeFolder(dir), changed);
    const exported = await openCheckpoint(sink.folder());
    for (const n of names) expect(Buffer.from(await exported.readTensor(n)).equals(Buffer.from(encodeAs(base.tensors.get(n)!.dtype, changed.get(n)!))), n).toBe(true);
    const d = await makeDelta(base, changed, { frac: s.frac, steps: 5 });
    for (const n of names) expect(d.info.tensors[n]?.kind, n).toBe('sparse');
    const applied = await applyDelta(base, concat(d.chunks as Uint8Array[]));
    for (const n of names) expect(Buffer.compare(Buffer.from(applied.get(n)!.buffer), Buffer.from(changed.get(n)!.buffer)), n).toBe(0);
    await base.close();
  });

  it('trainShared off: the shared experts stay as loaded and are not exported', async () => {
    const data = samples(2, 12, 512, 6);
    const s = settings({ trainShared: false, steps: 2, reselectEvery: 0, nImportance: 1 });
    const t = await trainer(dir, s, data);
    expect(t.shared).toBeNull();
    const gpu = t.gpu;
    const L = t.graph.trained.at(-1)!;
    const w = t.weights.layers[L]!.t;
    const read = async () => Promise.all((['shared.gate', 'shared.up', 'shared.down'] as const).map((r) => readU32(gpu, w[r]!.buf)));
    const was = await read();
    await t.init([[0, 1]]);
    for (let i = 0; i < 2; i++) expect((await t.trainStep()).record.finite).toBe(true);
    expect(await read()).toEqual(was);
    const changed = await t.changedTensors();
    for (const n of sharedNames(t)) expect(changed.has(n), n).toBe(false);
    // a checkpoint saved without shared state does not resume a trainShared run
    const snap = await t.snapshot(s as unknown as Record<string, unknown>, []);
    const on = await trainer(dir, { ...s, trainShared: true }, data);
    await expect(on.restore(snap)).rejects.toThrow(/without trainShared/);
  });
});
