// The kernels the run-time estimate says a run compiles (engine/plan/run-time.ts runKernels), part by part, against the
// pipelines the real run creates: the trainer and runTraining on the counting device (gpu/counting.ts, nothing runs),
// every createComputePipeline call recorded by its label and attributed to the phase under way. Demo-shaped model,
// 4-bit and f32 experts, with and without frozen layers.
import { describe, expect, it } from 'vitest';
import { countingGpu } from '../../../src/engine/gpu/counting.ts';
import { loadWeights } from '../../../src/engine/train/weights.ts';
import { randomExpertsQ4 } from '../../../src/engine/quant/experts-q4.ts';
import { Trainer } from '../../../src/engine/train/trainer.ts';
import { runTraining } from '../../../src/engine/train/run.ts';
import { runCalls, runKernels, type RunShape } from '../../../src/engine/plan/run-time.ts';
import { syntheticCheckpoint, syntheticSpec } from '../../../src/cli/synthetic.ts';
import type { SampleSet } from '../../../src/engine/train/types.ts';

const seq = 16;

function samples(count: number, vocab: number): SampleSet {
  return {
    count, seq, fill(i, ids, targets, off) {
      for (let j = 0; j < seq; j++) ids[off + j] = (i * 7919 + j * 104729) % vocab;
      for (let j = 0; j < seq; j++) targets[off + j] = j + 1 < seq ? ids[off + j + 1]! : 0xffffffff;
    },
  };
}

/** Labels of the pipelines a whole run creates, by the part of the run under way: evaluations, set-up (importance), steps. */
async function pipelinesOfRun(quantized: boolean, trainFrom: number) {
  const spec = await syntheticSpec('demo', null);
  const { gpu } = countingGpu();
  const trained = new Set(Array.from({ length: spec.numLayers - trainFrom }, (_, i) => trainFrom + i));
  const weights = await loadWeights(gpu, spec, syntheticCheckpoint(spec, true), quantized
    ? { quantizeExperts: { groupSize: 128 }, makeExperts: (L) => randomExpertsQ4(gpu, spec, L, 128) }
    : { f32ExpertLayers: trained });
  const s = { frac: 0.005, steps: 12, microbatch: 1, accum: 1, seq, lrPeak: 1e-3, wd: 0.005, trainFrom, reselectEvery: 8, evalEvery: 5, nImportance: 1, frozenCacheN: 20, seed: 0, evalWindows: 4 };
  const t = new Trainer(gpu, spec, weights, s, samples(20, spec.vocab));
  const seen = { evals: [] as string[], setup: [] as string[], train: [] as string[] };
  let part: keyof typeof seen | null = null;
  const create = gpu.device.createComputePipeline.bind(gpu.device);
  gpu.device.createComputePipeline = (d) => {
    if (!part) throw new Error(`pipeline ${d.label} created outside a phase`);
    seen[part].push(String(d.label));
    return create(d);
  };
  await runTraining(t, {
    inDomain: samples(10, spec.vocab), heldout: samples(10, spec.vocab), sink: null, checkpointEvery: 0, settings: {},
    events: { onPhase: (p) => { part = p.phase === 'evaluation' ? 'evals' : p.phase === 'importance' ? 'setup' : p.phase === 'training' ? 'train' : part; } },
  });
  return { spec, seen };
}

const sorted = (a: readonly string[]) => [...a].sort();

describe('runKernels', () => {
  for (const [quantized, trainFrom] of [[true, 4], [false, 4], [true, 0]] as const) {
    it(`names the pipelines a run creates in each part (${quantized ? '4-bit' : 'f32'} experts, TRAIN_FROM ${trainFrom})`, async () => {
      const { spec, seen } = await pipelinesOfRun(quantized, trainFrom);
      const k = runKernels({ trainFrom, quantized });
      expect(sorted(k.evals)).toEqual(sorted(seen.evals));
      expect(sorted(k.setup)).toEqual(sorted(seen.setup));
      expect(sorted(k.train)).toEqual(sorted(seen.train));
      const shape: RunShape = {
        steps: 12, microbatch: 1, accum: 1, seq, trainFrom, nImportance: 1, reselectEvery: 8, evalEvery: 5, frozenCacheN: 20, sequences: 20, evalWindows: [4, 4], quantized,
      };
      const c = runCalls(spec, shape, 4);
      expect([c.evals.pipelines, c.setup.pipelines, c.train.pipelines]).toEqual([seen.evals.length, seen.setup.length, seen.train.length]);
    }, 60_000);
  }
});
