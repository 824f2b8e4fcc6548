// A short training run lowers the loss in every supported family: 3 steps of the seed's method on one
// repeated microbatch of the fixture, top 2 layers trained (routed experts sparse + routers).
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { SampleSet } from '../../src/engine/train/types.ts';
import { rng } from '../helpers/random.ts';
import { FAMILIES } from '../../src/engine/model/families/index.ts';

function samples(seq: number, V: number, seed: number): SampleSet {
  const r = rng(seed);
  const all = Uint32Array.from({ length: 2 * seq }, () => Math.floor(r() * V));
  return {
    count: 2,
    seq,
    fill(i, ids, targets, off) {
      for (let j = 0; j < seq; j++) ids[off + j] = all[i * seq + j]!;
      for (let j = 0; j < seq; j++) targets[off + j] = j + 1 < seq ? all[i * seq + j + 1]! : 0xffffffff;
    },
  };
}

describe.each(FAMILIES.map((f) => f.arch))('%s', (family) => {
  it('3 training steps lower the loss on their microbatch', async () => {
    const gpu = await nodeGpu();
    const dir = `test/fixtures/${family}`;
    const m = await openModel(gpu, dir, { trainFrom: 2 });
    const data = samples(12, m.spec.vocab, 11);
    const t = new Trainer(gpu, m.spec, m.weights, {
      frac: 0.005, steps: 3, microbatch: 2, accum: 1, seq: 12, lrPeak: 2e-2, wd: 0.005, trainFrom: 2, reselectEvery: 0,
      evalEvery: 0, nImportance: 1, frozenCacheN: 2, seed: 1, evalWindows: null,
    }, data);
    const before = await t.evaluate(data, null);
    await t.init([[0, 1]]);
    for (let i = 0; i < 3; i++) expect((await t.trainStep()).record.finite).toBe(true);
    const after = await t.evaluate(data, null);
    expect(t.trainableParams).toBeGreaterThan(0);
    expect(after.loss).toBeLessThan(before.loss);
  });
});
