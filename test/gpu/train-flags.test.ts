// The improvements over the seed behind flags (TrainSettings.perEntryStep, accumulatedReselect, with keepAdamState): each
// trains, lowers the loss, changes the run, and resumes exactly (next losses within 1e-5, across a reselection); with
// every flag off the losses are those of a run that never heard of them. 4-bit experts + shared experts: train-flags-q4.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/node/gpu.ts';
import { readU32 } from '../../src/engine/gpu/buffers.ts';
import { expectFlagRun, fullRun, randomSamples, resumed, settings, type Model } from './train-flags-run.ts';

const QWEN3: Model = { dir: 'test/fixtures/qwen3_moe' };

describe('training flags (qwen3_moe fixture, 2×12)', () => {
  const data = randomSamples(4, 12, 512, 5);
  let plainRun: ReturnType<typeof fullRun> | null = null; // flags never set (shared by the tests)
  const plain = async () => (plainRun ??= nodeGpu().then((gpu) => fullRun(gpu, QWEN3, settings({}), data)));

  it('all flags off: the same losses as flags never set; perEntryStep alone (counts all equal) changes nothing either', async () => {
    const gpu = await nodeGpu();
    const p = await plain();
    const off = await fullRun(gpu, QWEN3, settings({ keepAdamState: false, perEntryStep: false, accumulatedReselect: false, trainShared: false }), data);
    expect(off.losses).toEqual(p.losses);
    expect(off.after).toBe(p.after);
    // without keepAdamState every count restarts at each reselection, so all counts equal the global t
    const perEntry = await fullRun(gpu, QWEN3, settings({ perEntryStep: true }), data);
    expect(perEntry.losses).toEqual(p.losses);
  }, 120_000);

  it('perEntryStep with keepAdamState: trains, differs from keepAdamState alone, resumes exactly', async () => {
    const gpu = await nodeGpu();
    const s = settings({ keepAdamState: true, perEntryStep: true });
    const on = await fullRun(gpu, QWEN3, s, data, true);
    const off = await fullRun(gpu, QWEN3, settings({ keepAdamState: true }), data);
    expectFlagRun(on, off, await resumed(gpu, QWEN3, s, data, on.ckpt!));
    // kept entries' counts carried: after two reselections some count exceeds the steps since the last one
    const counts = await readU32(gpu, on.t.layers[0]!.G.steps!, 0, on.t.layers[0]!.G.k);
    expect(Math.max(...counts)).toBeGreaterThan(1);
    expect(Math.min(...counts)).toBe(1);
    await expect(resumed(gpu, QWEN3, settings({ keepAdamState: true }), data, on.ckpt!)).rejects.toThrow(/per-entry step counts/);
  }, 120_000);

  it('accumulatedReselect: trains, differs from the seed\'s one-microbatch reselection, resumes exactly', async () => {
    const gpu = await nodeGpu();
    const s = settings({ accumulatedReselect: true });
    const on = await fullRun(gpu, QWEN3, s, data, true);
    expectFlagRun(on, await plain(), await resumed(gpu, QWEN3, s, data, on.ckpt!));
    await expect(resumed(gpu, QWEN3, settings({}), data, on.ckpt!)).rejects.toThrow(/accumulatedReselect/);
  }, 120_000);
});
