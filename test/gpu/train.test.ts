// Training end to end on the GPU: a resumed run continues the same run (next losses equal within 1e-5), the frozen
// cache gives the same results as recomputing, export → reload reproduces the fine-tuned eval loss, the sparse delta
// round-trips, and on the demo model the training loss falls.
import { afterAll, describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { SampleSet } from '../../src/engine/train/types.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import { importanceBatches } from '../../src/engine/train/run.ts';
import { encodeTrainCheckpoint, decodeTrainCheckpoint } from '../../src/engine/train/checkpoint-file.ts';
import { memorySource } from '../../src/engine/io/byte-source.ts';
import { memorySink } from '../../src/engine/io/sink.ts';
import { exportModel } from '../../src/engine/train/export.ts';
import { applyDelta, makeDelta } from '../../src/engine/train/delta.ts';
import { openCheckpoint, type Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { loadWeights } from '../../src/engine/train/weights.ts';
import { Forward } from '../../src/engine/train/forward.ts';
import { pipelinesBuilt } from '../../src/engine/gpu/kernel.ts';
import { randomSamples } from '../helpers/samples.ts';

const FIX = 'test/fixtures/qwen3_moe';

/** count random samples of seq tokens over vocab V (seeded), next-token targets. */
function settings(over: Partial<TrainSettings>): TrainSettings {
  return { frac: 0.005, steps: 6, microbatch: 2, accum: 1, seq: 12, lrPeak: 5e-3, wd: 0.005, trainFrom: 2, reselectEvery: 3, evalEvery: 0, nImportance: 2, frozenCacheN: 100, seed: 7, evalWindows: null, ...over };
}

const opened: Checkpoint[] = [];
afterAll(async () => {
  for (const c of opened.splice(0)) await c.close();
});

async function trainer(gpu: GpuContext, s: TrainSettings, data: SampleSet, dir = FIX): Promise<Trainer> {
  const m = await openModel(gpu, dir, { trainFrom: s.trainFrom });
  opened.push(m.ckpt);
  return new Trainer(gpu, m.spec, m.weights, s, data);
}

describe('training (qwen3_moe fixture)', () => {
  const data = randomSamples(6, 12, 512, 3);
  const s = settings({});

  it('resume continues the same run; the frozen cache changes nothing; export and delta round-trip', async () => {
    const gpu = await nodeGpu();
    // Uninterrupted run: 5 steps (reselection at step 3).
    const a = await trainer(gpu, s, data);
    await a.init(importanceBatches(s.seed, s.nImportance, s.microbatch, data.count));
    const full: number[] = [];
    let snap: Uint8Array | null = null;
    let snap3: Uint8Array | null = null;
    for (let i = 0; i < 5; i++) {
      full.push((await a.trainStep()).record.loss);
      if (i === 1) snap = concat(encodeTrainCheckpoint(await a.snapshot(s as unknown as Record<string, unknown>, [])));
      if (i === 2) snap3 = concat(encodeTrainCheckpoint(await a.snapshot(s as unknown as Record<string, unknown>, [])));
    }
    expect(a.turnovers.length).toBe(1);
    expect(full.every(Number.isFinite)).toBe(true);

    // Resumed from the checkpoint after step 2 (step 3 reselects), on freshly loaded weights.
    const b = await trainer(gpu, s, data);
    await b.restore(await decodeTrainCheckpoint(memorySource(snap!, 'train-state.safetensors')));
    await b.warmUp(); // what runTraining does after a restore: it must change nothing
    const resumed: number[] = [];
    for (let i = 2; i < 5; i++) resumed.push((await b.trainStep()).record.loss);
    // After step 3 (step 4 is a normal step), on a fresh device: the warm-up compiles every kernel of a normal step, so
    // that the first resumed step's time is its own; its skipped update changes nothing.
    const b3 = await trainer(await nodeGpu({ fresh: true }), s, data);
    await b3.restore(await decodeTrainCheckpoint(memorySource(snap3!, 'train-state.safetensors')));
    await b3.warmUp();
    const built = pipelinesBuilt();
    const step4 = (await b3.trainStep()).record.loss;
    expect(pipelinesBuilt() - built, 'pipelines compiled by the first resumed step').toBe(0);
    expect(Math.abs(step4 - full[3]!), 'step 4 resumed on a fresh device').toBeLessThanOrEqual(1e-5);
    for (let i = 0; i < 3; i++) expect(Math.abs(resumed[i]! - full[i + 2]!), `step ${i + 3}`).toBeLessThanOrEqual(1e-5);

    // Same run with no frozen cache: identical losses.
    const c = await trainer(gpu, { ...s, frozenCacheN: 0 }, data);
    await c.init(importanceBatches(s.seed, s.nImportance, s.microbatch, data.count));
    for (let i = 0; i < 5; i++) expect(Math.abs((await c.trainStep()).record.loss - full[i]!), `no-cache step ${i + 1}`).toBeLessThanOrEqual(1e-6);
    expect(a.cache.hits).toBeGreaterThan(0);

    // Export → reload → the same eval loss as the trainer's own weights.
    const evalSet = randomSamples(2, 12, 512, 99);
    const want = await a.evaluate(evalSet, null);
    const changed = await a.changedTensors();
    const base = await openCheckpoint(nodeFolder(FIX));
    opened.push(base);
    const sink = memorySink('export');
    await exportModel(sink, base, nodeFolder(FIX), changed);
    const exported = await openCheckpoint(sink.folder());
    const spec = a.spec;
    const w = await loadWeights(gpu, spec, exported);
    const fwd = new Forward(gpu, spec, w, { maxTokens: 2 * 12 });
    const ids = new Uint32Array(24), targets = new Uint32Array(24);
    evalSet.fill(0, ids, targets, 0);
    evalSet.fill(1, ids, targets, 12);
    const got = await fwd.run(ids, 2, 12, { targets });
    // bf16 rounding of the trained entries in the export moves the loss a little.
    expect(Math.abs(got.loss - want.loss)).toBeLessThan(2e-3);

    // Sparse delta: applying it onto the base gives back exactly the trained tensors.
    const d = await makeDelta(base, changed, { frac: s.frac, steps: 5 });
    const applied = await applyDelta(base, concat(d.chunks as Uint8Array[]));
    expect([...applied.keys()].sort()).toEqual([...changed.keys()].sort());
    for (const [name, v] of changed) expect(Buffer.compare(Buffer.from(applied.get(name)!.buffer), Buffer.from(v.buffer)), name).toBe(0);
  });
});

describe('training (demo model)', () => {
  it('the training loss falls on its data', async () => {
    const gpu = await nodeGpu();
    const data = randomSamples(1, 16, 4096, 5);
    const s = settings({ seq: 16, microbatch: 1, trainFrom: 4, lrPeak: 2e-2, steps: 4, reselectEvery: 0, nImportance: 1 });
    const t = await trainer(gpu, s, data, 'public/models/usaf-demo-moe');
    const before = await t.evaluate(data, null);
    await t.init([[0]]);
    const losses: number[] = [];
    for (let i = 0; i < 4; i++) losses.push((await t.trainStep()).record.loss);
    const after = await t.evaluate(data, null);
    expect(losses[0]).toBeCloseTo(before.loss, 4);
    expect(losses[3]!).toBeLessThan(losses[0]!);
    expect(after.loss).toBeLessThan(before.loss);
  });
});

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) (out.set(c, o), (o += c.byteLength));
  return out;
}
