// Shared by train-flags*.test.ts: seeded random samples, a full run of STEPS steps (two reselections) with eval loss
// before and after and a checkpoint after SNAP_AFTER, a resumed run from it, and the checks every flag must pass.
import { expect } from 'vitest';
import { openModel } from '../../src/cli/load-model.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { SampleSet } from '../../src/engine/train/types.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import { importanceBatches } from '../../src/engine/train/run.ts';
import { decodeTrainCheckpoint, encodeTrainCheckpoint } from '../../src/engine/train/checkpoint-file.ts';
import { memorySource } from '../../src/engine/io/byte-source.ts';
import { randomSamples } from '../helpers/samples.ts';
export { randomSamples };

export const STEPS = 4; // reselections before steps 2 and 4
export const SNAP_AFTER = 3; // resume across the second reselection

export const settings = (over: Partial<TrainSettings>): TrainSettings => ({
  frac: 0.01, steps: STEPS, microbatch: 2, accum: 1, seq: 12, lrPeak: 2e-2, wd: 0.005, trainFrom: 2, reselectEvery: 2,
  evalEvery: 0, nImportance: 3, frozenCacheN: 100, seed: 11, evalWindows: null, ...over,
});

export interface Model { dir: string; q4?: boolean }

async function trainer(gpu: GpuContext, m: Model, s: TrainSettings, data: SampleSet): Promise<Trainer> {
  const loaded = await openModel(gpu, m.dir, { trainFrom: s.trainFrom, trainShared: s.trainShared, quantizeExperts: m.q4 ? { groupSize: 32 } : undefined });
  await loaded.ckpt.close();
  return new Trainer(gpu, loaded.spec, loaded.weights, s, data);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let o = 0;
  for (const c of chunks) (out.set(c, o), (o += c.byteLength));
  return out;
}

/** A full run: eval loss before and after, step losses, and a checkpoint after step SNAP_AFTER when asked. */
export async function fullRun(gpu: GpuContext, m: Model, s: TrainSettings, data: SampleSet, snap = false) {
  const t = await trainer(gpu, m, s, data);
  const before = (await t.evaluate(data, null)).loss;
  await t.init(importanceBatches(s.seed, s.nImportance, s.microbatch, data.count));
  const losses: number[] = [];
  let ckpt: Uint8Array | null = null;
  for (let i = 0; i < STEPS; i++) {
    losses.push((await t.trainStep()).record.loss);
    if (snap && i + 1 === SNAP_AFTER) ckpt = concat(encodeTrainCheckpoint(await t.snapshot(s as unknown as Record<string, unknown>, [])));
  }
  const after = (await t.evaluate(data, null)).loss;
  return { t, before, after, losses, ckpt };
}

/** Losses of steps SNAP_AFTER+1..STEPS from the checkpoint, on freshly loaded weights. */
export async function resumed(gpu: GpuContext, m: Model, s: TrainSettings, data: SampleSet, ckpt: Uint8Array): Promise<number[]> {
  const t = await trainer(gpu, m, s, data);
  await t.restore(await decodeTrainCheckpoint(memorySource(ckpt, 'train-state.safetensors')));
  const out: number[] = [];
  for (let i = SNAP_AFTER; i < STEPS; i++) out.push((await t.trainStep()).record.loss);
  return out;
}

export function expectFlagRun(on: Awaited<ReturnType<typeof fullRun>>, off: { losses: number[] }, again: number[]): void {
  expect(on.losses.every(Number.isFinite)).toBe(true);
  expect(on.t.turnovers.length).toBe(2);
  expect(on.after, 'eval loss after vs before').toBeLessThan(on.before);
  expect(on.losses[STEPS - 1]!).toBeLessThan(on.losses[0]!);
  expect(on.losses.some((x, i) => x !== off.losses[i]), 'the flag changes the run').toBe(true);
  for (let i = 0; i < again.length; i++) expect(Math.abs(again[i]! - on.losses[SNAP_AFTER + i]!), `resumed step ${SNAP_AFTER + i + 1}`).toBeLessThanOrEqual(1e-5);
}
