// Golden training run: the GPU Trainer against the float64 oracle of the method (src/engine/ref/train-step.ts), step by
// step, on a tiny random Qwen3-MoE (2 layers, the last trained): importance → active sets, 4 steps with reselections
// before steps 2 and 4, SparseAdam on the active expert entries, router SGD with momentum, warm-up + cosine LR.
// After every step: the loss, the active sets, the masters and Adam moments, every expert weight, the router and its
// momentum buffer. Tolerances (f32 GPU vs float64): loss 2e-5 absolute; values within TOL·lr of one step's size.
import { afterAll, describe, expect, it } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import { readF32, readU32 } from '../../src/engine/gpu/buffers.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import { importanceBatches } from '../../src/engine/train/run.ts';
import { RefTrainer, refLearningRate, type RefBatch, type RefSelection } from '../../src/engine/ref/train-step.ts';
import { writeTinyModel, TINY, type TinyModel } from '../helpers/tiny-model.ts';
import { randomSamples } from '../helpers/samples.ts';

const STEPS = 4;
const S: TrainSettings = {
  frac: 0.01, steps: STEPS, microbatch: 2, accum: 1, seq: TINY.seq, lrPeak: 1e-2, wd: 0.05, trainFrom: 1, reselectEvery: 2,
  evalEvery: 0, nImportance: 2, frozenCacheN: 0, seed: 5, evalWindows: null,
  // every improvement flag off, explicitly: off must be the method itself (train-flags.test: off = never set)
  keepAdamState: false, perEntryStep: false, accumulatedReselect: false, trainShared: false,
};
/** Largest error allowed in any trained value, as a share of the step's learning rate (one Adam step moves ≈ lr). */
const TOL = 1e-3;
const LOSS_TOL = 2e-5;

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

describe('golden training run (tiny qwen3_moe, last layer trained) vs the float64 oracle', () => {
  let model: TinyModel | null = null;
  afterAll(() => model?.dispose());

  it('losses, active sets, masters, moments, expert weights and router agree at every step', async () => {
    model = await writeTinyModel({ layers: 2, seed: 3 });
    const data = randomSamples(4, S.seq, TINY.vocab, 9);
    const batchOf = (samples: number[]): RefBatch => {
      const n = samples.length * S.seq;
      const ids = new Uint32Array(n), targets = new Uint32Array(n);
      samples.forEach((x, i) => data.fill(x, ids, targets, i * S.seq));
      return { ids, targets, batch: samples.length, seq: S.seq };
    };

    const gpu = await nodeGpu();
    const m = await openModel(gpu, model.dir, { trainFrom: S.trainFrom });
    await m.ckpt.close();
    const t = new Trainer(gpu, m.spec, m.weights, S, data);
    const drawn: number[][] = [];
    const next = t.nextSamples.bind(t);
    t.nextSamples = () => {
      const x = next();
      drawn.push(x);
      return x;
    };
    const ref = new RefTrainer(model.spec, new Map([...model.tensors].map(([k, v]) => [k, v.slice()])), S);
    const imp = importanceBatches(S.seed, S.nImportance, S.microbatch, data.count);
    await t.init(imp);
    ref.init(imp.map(batchOf));
    expect(t.layers.length).toBe(1);
    const l = t.layers[0]!;

    const compare = async (what: string, lr: number) => {
      const tol = TOL * lr;
      for (const [name, sel, want] of [['G', l.G, ref.selG!], ['D', l.D, ref.selD!]] as const) {
        const idx = await readU32(gpu, sel.idx, 0, sel.k);
        expect(Array.from(idx), `${what}: ${name} active set`).toEqual(Array.from(want.idx));
        const got: Record<keyof RefSelection, Float32Array | Uint32Array> = {
          idx, master: await readF32(gpu, sel.master, 0, sel.k), m: await readF32(gpu, sel.m, 0, sel.k), v: await readF32(gpu, sel.v, 0, sel.k),
        };
        expect(maxAbs(got.master, want.master), `${what}: ${name} masters`).toBeLessThanOrEqual(tol);
        // m ≈ |g|, v ≈ g²: relative to the largest
        const big = (x: Float64Array) => Math.max(1e-30, ...x.map(Math.abs));
        expect(maxAbs(got.m, want.m) / big(want.m), `${what}: ${name} Adam m`).toBeLessThanOrEqual(1e-4);
        expect(maxAbs(got.v, want.v) / big(want.v), `${what}: ${name} Adam v`).toBeLessThanOrEqual(1e-4);
      }
      expect(maxAbs(await readF32(gpu, l.gu!), ref.G), `${what}: gate/up weights`).toBeLessThanOrEqual(tol);
      expect(maxAbs(await readF32(gpu, l.down!), ref.D), `${what}: down weights`).toBeLessThanOrEqual(tol);
      expect(maxAbs(await readF32(gpu, l.router), ref.router), `${what}: router`).toBeLessThanOrEqual(tol);
      if (ref.routerHasBuf) expect(maxAbs(await readF32(gpu, l.routerBuf), ref.routerBuf) / Math.max(...ref.routerBuf.map(Math.abs)), `${what}: router momentum`).toBeLessThanOrEqual(1e-4);
    };
    await compare('after the first selection', S.lrPeak);

    const losses: [number, number][] = [];
    for (let s = 1; s <= STEPS; s++) {
      const { record } = await t.trainStep();
      expect(record.finite).toBe(true);
      expect(drawn.length).toBe(s);
      const want = ref.trainStep(batchOf(drawn[s - 1]!));
      losses.push([record.loss, want]);
      expect(record.lr, `step ${s} lr`).toBeCloseTo(refLearningRate(s, STEPS, S.lrPeak), 12);
      expect(Math.abs(record.loss - want), `step ${s} loss`).toBeLessThanOrEqual(LOSS_TOL);
      await compare(`after step ${s}`, record.lr);
    }
    console.table(losses.map(([gpuLoss, oracle]) => ({ gpuLoss, oracle, diff: gpuLoss - oracle })));
    // the run exercised what it claims: two reselections that changed the sets, and the training moved the loss
    expect(t.turnovers.length).toBe(2);
    expect(ref.turnovers.length).toBe(4);
    expect(ref.turnovers.some((x) => x > 0)).toBe(true);
    expect(losses[STEPS - 1]![1]).not.toBe(losses[0]![1]);
  }, 300_000);
});
