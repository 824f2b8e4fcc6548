// A non-finite step is skipped on the GPU: one sample's token has a NaN embedding row, so the step that draws it has a
// NaN loss and NaN gradients. The optimizer kernels' guard leaves every trained value and optimizer state bit-identical
// (snapshots before and after that step), the step's record says finite: false, and the steps after it train on. The
// pipelined path (runStep, each step read a step late) gives the same records, bit for bit, and the same final state.
import { afterAll, describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { writeBuffer } from '../../src/engine/gpu/buffers.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { SampleSet, StepRecord } from '../../src/engine/train/types.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import type { TrainCheckpoint } from '../../src/engine/train/checkpoint-file.ts';
import type { Checkpoint } from '../../src/engine/io/checkpoint.ts';

const FIX = 'test/fixtures/qwen3_moe';
const SEQ = 12;
const POISON = 7; // the token whose embedding row is NaN; only sample 0 holds it
const s: TrainSettings = {
  frac: 0.01, steps: 6, microbatch: 1, accum: 1, seq: SEQ, lrPeak: 5e-3, wd: 0.005, trainFrom: 2, reselectEvery: 1000, evalEvery: 0,
  nImportance: 2, frozenCacheN: 100, seed: 11, evalWindows: null,
};

/** 4 samples of SEQ tokens in [10, 500); sample 0 has POISON at position 3. */
function samples(): SampleSet {
  const ids = Uint32Array.from({ length: 4 * SEQ }, (_, i) => 10 + ((i * 131 + 17) % 490));
  ids[3] = POISON;
  return {
    count: 4,
    seq: SEQ,
    fill(i, out, targets, off) {
      for (let j = 0; j < SEQ; j++) out[off + j] = ids[i * SEQ + j]!;
      for (let j = 0; j < SEQ; j++) targets[off + j] = j + 1 < SEQ ? ids[i * SEQ + j + 1]! : 0xffffffff;
    },
  };
}

const opened: Checkpoint[] = [];
afterAll(async () => {
  for (const c of opened.splice(0)) await c.close();
});

async function poisoned(gpu: GpuContext): Promise<Trainer> {
  const m = await openModel(gpu, FIX, { trainFrom: s.trainFrom });
  opened.push(m.ckpt);
  const e = m.weights.embed!; // (resident: the frozen layers are not streamed)
  const H = m.spec.hidden;
  if (e.dtype === 'f32') writeBuffer(gpu, e.buf, (e.offset + POISON * H) * 4, new Uint32Array(H).fill(0x7fc00000));
  else if (e.dtype === 'bf16') writeBuffer(gpu, e.buf, (e.offset + POISON * H) * 2, new Uint16Array(H).fill(0x7fc0));
  else throw new Error(`embedding dtype ${e.dtype}`);
  const t = new Trainer(gpu, m.spec, m.weights, s, samples());
  await t.init([[1], [2]]);
  return t;
}

/** The trained state of a snapshot (everything but the step counters). */
const state = (c: TrainCheckpoint) => ({ layers: c.layers, extra: c.extra, adamT: c.adamT });

describe('non-finite steps', () => {
  it('are skipped on the GPU, reported in their record, and pipelining changes nothing', async () => {
    const gpu = await nodeGpu();
    const a = await poisoned(gpu);
    const bad = [...a.order.slice(0, s.steps)].indexOf(0) + 1; // the step that draws sample 0 (first epoch: 4 steps)
    expect(bad).toBeGreaterThan(0);
    const records: StepRecord[] = [];
    let before: TrainCheckpoint | null = null;
    let after: TrainCheckpoint | null = null;
    for (let i = 1; i <= 4; i++) {
      if (i === bad) before = await a.snapshot({}, []);
      records.push((await a.trainStep()).record);
      if (i === bad) after = await a.snapshot({}, []);
    }
    expect(records.map((r) => r.finite)).toEqual([1, 2, 3, 4].map((i) => i !== bad));
    expect(Number.isNaN(records[bad - 1]!.loss)).toBe(true);
    expect(records.filter((r) => r.step !== bad).every((r) => Number.isFinite(r.loss))).toBe(true);
    expect(a.skipped).toBe(1);
    expect(after!.skipped).toBe(before!.skipped + 1);
    // bit-identical masters, moments, router weights and momentum, Adam's step count
    expect(state(after!)).toEqual(state(before!));
    const last = (await a.snapshot({}, [])).layers;
    expect(last).not.toEqual(after!.layers); // later steps still train

    const b = await poisoned(gpu);
    const late: StepRecord[] = [];
    for (let i = 1; i <= 4; i++) {
      const { done } = await b.runStep();
      if (done) late.push(done);
    }
    late.push((await b.flush())!);
    const strip = (r: StepRecord) => ({ step: r.step, loss: r.loss, lr: r.lr, finite: r.finite });
    expect(late.map(strip)).toEqual(records.map(strip));
    expect(b.skipped).toBe(1);
    expect(state(await b.snapshot({}, []))).toEqual(state(await a.snapshot({}, [])));
  });
});
