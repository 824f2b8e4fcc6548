// The cost model's counting device against a real device: the same demo training steps (a normal step, then a
// reselection step) counted on Dawn (its device's calls wrapped, kernels run) and on the counting device (nothing runs)
// give the same dispatches, submits, mapAsync calls, queue drains and bind groups created; the normal step blocks on one
// readback only.
import { afterAll, describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { countCalls, type CallCounts } from '../../src/engine/gpu/cost.ts';
import { countingGpu, recordReadbacks, type Replay } from '../../src/engine/gpu/counting.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import type { Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { randomSamples } from '../helpers/samples.ts';

const DEMO = 'public/models/usaf-demo-moe';
const SEQ = 16;
const settings: TrainSettings = {
  frac: 0.005, steps: 6, microbatch: 1, accum: 1, seq: SEQ, lrPeak: 2e-4, wd: 0.005, trainFrom: 7, reselectEvery: 3, evalEvery: 0,
  nImportance: 1, frozenCacheN: 4, seed: 3, evalWindows: null,
};

const opened: Checkpoint[] = [];
afterAll(async () => {
  for (const c of opened.splice(0)) await c.close();
});

/** Counts of [step 2 (normal), step 3 (reselection)] after init and step 1, pipelined as a run steps (runStep). */
async function countSteps(gpu: GpuContext, counts: CallCounts) {
  const m = await openModel(gpu, DEMO, { trainFrom: settings.trainFrom });
  opened.push(m.ckpt);
  const t = new Trainer(gpu, m.spec, m.weights, settings, randomSamples(8, SEQ, m.spec.vocab, 5));
  await t.init([[0]]);
  await t.runStep();
  const out = [];
  for (let s = 2; s <= 3; s++) {
    const a = { d: counts.dispatches, s: counts.submits, m: counts.mapAsync, w: counts.drains, b: counts.bindGroups };
    const r = await t.runStep();
    expect(r.done?.step).toBe(s - 1); // the step before, read while this one runs
    expect(r.done?.finite).toBe(true);
    out.push({ dispatches: counts.dispatches - a.d, submits: counts.submits - a.s, mapAsync: counts.mapAsync - a.m, drains: counts.drains - a.w, bindGroups: counts.bindGroups - a.b, reselect: r.reselect !== null });
  }
  expect((await t.flush())?.step).toBe(3);
  return out;
}

describe('counting device', () => {
  it('counts what a Dawn run of the demo step does: dispatches, submits, mapAsync, queue drains', async () => {
    const real = await nodeGpu({ fresh: true });
    // the counting device returns the Dawn run's readbacks in order: the same losses, flags and index sets, so the
    // code takes the same branches (a reselection's grown and dropped entries decide some dispatches)
    const replay: Replay = [];
    recordReadbacks(real.device, replay);
    const onDawn = await countSteps(real, countCalls(real.device));
    const fake = countingGpu(undefined, replay);
    const counted = await countSteps(fake.gpu, fake.counts);
    expect(onDawn.map((x) => x.reselect)).toEqual([false, true]);
    expect(onDawn[0]!.dispatches).toBeGreaterThan(50);
    expect(onDawn[0]!.submits).toBeGreaterThan(2); // the pass is split: the GPU starts while the rest is encoded
    // a normal step binds mostly what the last one bound: its bind groups come from the encoder's cache
    expect(onDawn[0]!.bindGroups).toBeLessThan(onDawn[0]!.dispatches / 4);
    // the normal step: one blocking readback (its loss rows, flag and timestamps in one mapAsync), no queue drain
    expect(onDawn[0]!.mapAsync).toBe(1);
    expect(onDawn[0]!.drains).toBe(0);
    expect(counted).toEqual(onDawn);
    expect(replay).toHaveLength(0); // every readback of the Dawn run was asked for again
  });
});
