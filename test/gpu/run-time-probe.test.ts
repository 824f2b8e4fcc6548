// The probe's compile time (engine/plan/probe.ts) against the compiles a run really pays: on a fresh device, the demo
// model's first evaluation window (which compiles every forward kernel, runKernels(...).evals) minus the same window
// again (all compiled), held within 3× of the probe's compile time times the kernels counted: the probe compiles the
// matrix product's kernel, the forward also attention's and the experts' larger ones (measured here under load 10:
// 58.6 s paid, 30.9 s estimated; in Chromium the Quick demo e2e pays about what it estimates). Also the probe's rates
// are positive and finite.
import { expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import { measureMatmulRate } from '../../src/engine/plan/probe.ts';
import { runKernels } from '../../src/engine/plan/run-time.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { SampleSet } from '../../src/engine/train/types.ts';

const DEMO = 'public/models/usaf-demo-moe';

function samples(count: number, seq: number): SampleSet {
  return { count, seq, fill(i, ids, targets, off) { for (let j = 0; j < seq; j++) (ids[off + j] = (i * 7 + j) % 64, targets[off + j] = j + 1 < seq ? (i * 7 + j + 1) % 64 : 0xffffffff); } };
}

it('the probe\'s compile time, times the forward kernels counted, is within 3× of what the first evaluation pays for them', async () => {
  const gpu = await nodeGpu({ fresh: true });
  const m = await openModel(gpu, DEMO, { trainFrom: 4, quantizeExperts: { groupSize: 128 } });
  const s = { frac: 0.005, steps: 2, microbatch: 1, accum: 1, seq: 16, lrPeak: 1e-3, wd: 0, trainFrom: 4, reselectEvery: 0, evalEvery: 0, nImportance: 1, frozenCacheN: 4, seed: 1, evalWindows: 1 };
  const t = new Trainer(gpu, m.spec, m.weights, s, samples(4, 16));
  await gpu.device.queue.onSubmittedWorkDone();
  const set = samples(1, 16);
  const time = async () => {
    const t0 = performance.now();
    await t.evaluate(set, 1);
    return (performance.now() - t0) / 1000;
  };
  const first = await time(); // compiles the forward's kernels
  const again = Math.min(await time(), await time());
  const rate = await measureMatmulRate(gpu, m.spec.hidden, m.spec.moe.expertIntermediate);
  for (const x of [rate.flopsPerSecond, rate.dispatchSeconds, rate.syncSeconds, rate.compileSeconds]) expect(Number.isFinite(x) && x >= 0).toBe(true);
  expect(rate.compileSeconds).toBeGreaterThan(0);
  const estimated = rate.compileSeconds * runKernels({ trainFrom: 4, quantized: true }).evals.length;
  const measured = first - again;
  console.log(`compile: first window ${first.toFixed(2)} s, again ${again.toFixed(2)} s; estimated ${estimated.toFixed(2)} s (${rate.compileSeconds.toFixed(3)} s a kernel); probe ${rate.ms.toFixed(0)} ms`);
  expect(measured, `measured ${measured} s, estimated ${estimated} s`).toBeLessThanOrEqual(3 * estimated);
  expect(measured, `measured ${measured} s, estimated ${estimated} s`).toBeGreaterThanOrEqual(estimated / 3);
  gpu.device.destroy();
}, 300_000);
