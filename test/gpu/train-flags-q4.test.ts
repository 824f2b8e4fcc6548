// The flags over the seed with 4-bit routed experts (importance one layer at a time, the fused path: no expert scratch
// held) and trained shared experts (their own step counts and importance): train, lower the loss, change the run,
// resume exactly across a reselection that draws from the checkpointed importance stream.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/node/gpu.ts';
import { expectFlagRun, fullRun, randomSamples, resumed, settings, type Model } from './train-flags-run.ts';

const QWEN2_Q4: Model = { dir: 'test/fixtures/qwen2_moe', q4: true };

describe('training flags with 4-bit experts and trained shared experts (qwen2_moe fixture, 2×12)', () => {
  const data = randomSamples(4, 12, 512, 6);

  it('accumulatedReselect and perEntryStep (+ keepAdamState): trains, differs, resumes exactly', async () => {
    const gpu = await nodeGpu();
    const s = settings({ trainShared: true, keepAdamState: true, perEntryStep: true, accumulatedReselect: true });
    const on = await fullRun(gpu, QWEN2_Q4, s, data, true);
    expect(on.t.fused).toBe(true);
    expect(on.t.scratch).toBeNull();
    expect(on.t.shared).not.toBeNull();
    const off = await fullRun(gpu, QWEN2_Q4, settings({ trainShared: true, keepAdamState: true }), data);
    expectFlagRun(on, off, await resumed(gpu, QWEN2_Q4, s, data, on.ckpt!));
  }, 120_000);
});
