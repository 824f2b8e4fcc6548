// Training throughput of a model at microbatch × seq with the seed's settings, and the share of time per phase
// (frozen forward, trained forward, backward, optimizer, reselection). Used by `usaf bench`.
import type { GpuContext } from '../engine/gpu/device.ts';
import { openModel } from './load-model.ts';
import { Trainer } from '../engine/train/trainer.ts';
import type { SampleSet, StepRecord } from '../engine/train/types.ts';
import { PhaseClock } from '../engine/gpu/timing.ts';
import { defaultTrainFrom } from './commands/train.ts';
import { readSpec } from './load-model.ts';
import { Encoder } from '../engine/gpu/encoder.ts';
import { allocatedBytes } from '../engine/gpu/buffers.ts';
import { loadWeights } from '../engine/train/weights.ts';
import { planMemory } from '../engine/plan/memory.ts';
import type { ModelSpec } from '../engine/model/spec.ts';
import { syntheticCheckpoint } from './synthetic.ts';
import { randomExpertsQ4 } from '../engine/quant/experts-q4.ts';

/**
 * 4-bit experts: wall time of materializing one trained layer into the f32 scratch, every expert chunk in turn (mostly
 * dequantizing its base; the overlay and master scatters are k-sized), and how often a training step does it.
 */
async function materializeTiming(gpu: GpuContext, t: Trainer): Promise<{ materialize_ms: number; materializations_per_step: number }> {
  const l = t.layers[0]!;
  const base = l.base;
  if (base.kind !== 'q4') throw new Error('materializeTiming: not a 4-bit run');
  const reps = 3;
  const run = () => {
    const enc = new Encoder(gpu, 'bench.materialize');
    t.chunks.forEach((_, c) => t.q4.load(enc, l, c)); // every expert chunk of the layer
    enc.submit();
    return gpu.device.queue.onSubmittedWorkDone();
  };
  await run();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await run();
  return { materialize_ms: +((performance.now() - t0) / reps).toFixed(2), materializations_per_step: 2 * t.layers.length };
}

export async function trainBench(gpu: GpuContext, modelDir: string, microbatch: number, seq: number, steps: number, quantizeExperts?: { groupSize: number }) {
  const spec = await readSpec(modelDir);
  const trainFrom = defaultTrainFrom(spec.numLayers);
  const model = await openModel(gpu, modelDir, { trainFrom, quantizeExperts });
  const V = model.spec.vocab;
  // Synthetic samples (bench only): deterministic ids; enough samples that the frozen cache is exercised.
  const count = microbatch * (steps + 4);
  const data: SampleSet = {
    count,
    seq,
    fill(i, ids, targets, off) {
      for (let j = 0; j < seq; j++) ids[off + j] = (i * 7919 + j * 104729) % V;
      for (let j = 0; j < seq; j++) targets[off + j] = j + 1 < seq ? ids[off + j + 1]! : 0xffffffff;
    },
  };
  const t = new Trainer(gpu, model.spec, model.weights, {
    frac: 0.005, steps: 180, microbatch, accum: 1, seq, lrPeak: 2e-4, wd: 0.005, trainFrom, reselectEvery: 2, evalEvery: 0,
    nImportance: 1, frozenCacheN: count, seed: 0, evalWindows: null,
  }, data);
  await t.init([Array.from({ length: microbatch }, (_, i) => i)]);
  await t.trainStep(); // warm-up: compiles every kernel
  // Timed steps without phase syncs (includes one reselection at step 2 → no: step 2 was the warm-up's successor).
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await t.trainStep();
  const sec = (performance.now() - t0) / 1000 / steps;
  // Phase shares from one more run of the same number of steps with syncs between phases.
  t.phases = {};
  for (let i = 0; i < steps; i++) await t.trainStep();
  const total = Object.values(t.phases).reduce((a, b) => a + b, 0);
  const share = Object.fromEntries(Object.entries(t.phases).map(([k, v]) => [k, +(v / total).toFixed(3)]));
  const q4 = quantizeExperts ? { group_size: quantizeExperts.groupSize, ...(await materializeTiming(gpu, t)) } : null;
  return { model: modelDir, quantize_experts: q4, train_from: trainFrom, microbatch, seq, steps_timed: steps, sec_per_step: +sec.toFixed(3), tokens_per_s: +((microbatch * seq) / sec).toFixed(1), phase_share: share, phase_ms_per_step: Object.fromEntries(Object.entries(t.phases).map(([k, v]) => [k, +(v / steps).toFixed(1)])) };
}

/**
 * Training throughput of a synthetic model (synthetic.ts: random bf16 weights; the routed experts random 4-bit tensors made
 * directly on the GPU) whose layers all train: the top layers of a published model, from the embedding instead of cached hidden
 * states (the same work per step), with the full-vocabulary loss. Reports tokens/s, seconds per phase and GPU bytes.
 */
export interface SyntheticOptions {
  microbatch: number;
  seq: number;
  steps: number;
  groupSize: number;
  expertChunk?: number;
  /** TrainSettings.fusedExperts: 4-bit W0 + the sparse correction instead of the f32 scratch. */
  fusedExperts?: boolean;
  gpuBytes?: number;
  /** Reselection every N steps (default 0: none). */
  reselectEvery?: number;
  /** All-zero bf16 tensors instead of random ones (the cost model: nothing is computed). */
  zeros?: boolean;
}

/** The synthetic model's weights (4-bit experts made on the GPU) and a Trainer over all its layers, not yet initialized. */
export async function syntheticTrainer(gpu: GpuContext, spec: ModelSpec, o: SyntheticOptions): Promise<Trainer> {
  const weights = await loadWeights(gpu, spec, syntheticCheckpoint(spec, o.zeros), {
    quantizeExperts: { groupSize: o.groupSize },
    makeExperts: (L) => randomExpertsQ4(gpu, spec, L, o.groupSize),
  });
  const V = spec.vocab, seq = o.seq;
  const count = o.microbatch * (2 * o.steps + 3);
  const data: SampleSet = {
    count,
    seq,
    fill(i, ids, targets, off) {
      for (let j = 0; j < seq; j++) ids[off + j] = (i * 7919 + j * 104729) % V;
      for (let j = 0; j < seq; j++) targets[off + j] = j + 1 < seq ? ids[off + j + 1]! : 0xffffffff;
    },
  };
  const settings = {
    frac: 0.005, steps: 180, microbatch: o.microbatch, accum: 1, seq, lrPeak: 2e-4, wd: 0.005, trainFrom: 0, reselectEvery: o.reselectEvery ?? 0, evalEvery: 0,
    nImportance: 1, frozenCacheN: 0, seed: 0, evalWindows: null, expertChunk: o.expertChunk, fusedExperts: o.fusedExperts, gpuBytes: o.gpuBytes,
  };
  return new Trainer(gpu, spec, weights, settings, data);
}

export async function syntheticTrainBench(gpu: GpuContext, spec: ModelSpec, o: SyntheticOptions) {
  const t0 = performance.now();
  const t = await syntheticTrainer(gpu, spec, o);
  const tLoad = performance.now();
  const seq = o.seq, V = spec.vocab;
  const setupBytes = allocatedBytes(gpu);
  await t.init([Array.from({ length: o.microbatch }, (_, i) => i)]);
  const tInit = performance.now();
  await t.trainStep(); // warm-up: compiles the remaining kernels
  // timed steps pipelined as a run steps them (runStep: one readback a step, read a step late)
  const steps = async () => {
    const out: StepRecord[] = [];
    for (let i = 0; i < o.steps; i++) {
      const { done } = await t.runStep();
      if (done) out.push(done);
    }
    out.push((await t.flush())!);
    return out;
  };
  const t1 = performance.now();
  const records = await steps();
  const sec = (performance.now() - t1) / 1000 / o.steps;
  // per phase: GPU time from timestamps, steps pipelined as above; without timestamps, wall time with syncs between phases
  const clock = PhaseClock.start(gpu);
  if (clock) await steps();
  else {
    t.phases = {};
    for (let i = 0; i < o.steps; i++) await t.trainStep();
  }
  const phases = clock ? (await clock.stop()).phases : t.phases!;
  const plan = planMemory(spec, t.planned);
  const ms = (x: number) => +x.toFixed(1);
  return {
    arch: spec.arch, layers: spec.numLayers, experts: spec.moe.numExperts, hidden: spec.hidden, vocab: V, group_size: o.groupSize,
    microbatch: o.microbatch, seq, steps_timed: o.steps, expert_chunks: t.chunks.length,
    sec_per_step: +sec.toFixed(4), tokens_per_s: +((o.microbatch * seq) / sec).toFixed(1),
    // each step's own time: GPU time from timestamps, else wall time between step submissions (Trainer.flush)
    step_sec: records.map((r) => +r.sec.toFixed(4)), step_timing: gpu.hasTimestamps ? 'timestamps' : 'wall between submissions',
    phase_ms_per_step: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, +(v / o.steps).toFixed(3)])),
    phase_timing: clock ? 'timestamps (a phase runs to the next mark)' : 'wall, synced between phases',
    load_quantize_s: +((tLoad - t0) / 1000).toFixed(2), importance_s: +((tInit - tLoad) / 1000).toFixed(2),
    gpu_bytes_after_setup: setupBytes, gpu_bytes_now: allocatedBytes(gpu), plan_peak_bytes: plan.peak,
    ...(await materializeTiming(gpu, t)),
  };
}
