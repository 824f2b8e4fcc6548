// Times the first importance pass (Trainer.init) of a 4-bit run whose trained layers' experts come in chunks, with
// N_IMPORTANCE microbatches: wall time of init, best of `reps`, on whatever adapter nodeGpu gives (SwiftShader here).
// Build: node scripts/build-cli.mjs bench/importance-bench.ts .ib.mjs && node .ib.mjs [dir] [trainFrom] [chunk] [nImportance] [reps]
import { performance } from 'node:perf_hooks';
import { openModel } from '../src/cli/load-model.ts';
import { nodeGpu } from '../src/node/gpu.ts';
import { Trainer } from '../src/engine/train/trainer.ts';
import type { TrainSettings } from '../src/engine/train/settings.ts';
import { importanceBatches } from '../src/engine/train/run.ts';
import { randomSamples } from '../test/helpers/samples.ts';

const [dir = 'public/models/usaf-demo-moe', from = '7', chunk = '8', ni = '1', reps = '3'] = process.argv.slice(2);
const gpu = await nodeGpu();
const m = await openModel(gpu, dir, { trainFrom: Number(from), quantizeExperts: { groupSize: 128 } });
const seq = 16;
const data = randomSamples(8, seq, m.spec.vocab, 3);
const s: TrainSettings = {
  frac: 0.01, steps: 1, microbatch: 1, accum: 1, seq, lrPeak: 1e-3, wd: 0, trainFrom: Number(from), reselectEvery: 0, evalEvery: 0,
  nImportance: Number(ni), frozenCacheN: 8, seed: 1, evalWindows: null, expertChunk: Number(chunk),
};
const t = new Trainer(gpu, m.spec, m.weights, s, data);
const batches = importanceBatches(s.seed, s.nImportance, s.microbatch, data.count);
let best = Infinity;
for (let r = 0; r < Number(reps); r++) {
  const t0 = performance.now();
  await t.init(batches);
  best = Math.min(best, performance.now() - t0);
}
console.log(`${dir} trainFrom ${from}: ${t.chunks.length} expert chunks, ${t.layers.length} trained layers, N_IMPORTANCE ${ni}: init best of ${reps} ${best.toFixed(0)} ms, G idx[0..4] ${Array.from(t.layers[0]!.G.host.slice(0, 4))}`);
await m.ckpt.close();
process.exit(0);
