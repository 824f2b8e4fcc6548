// Contract: the run-time estimate shown before Start: the run's arithmetic, dispatches and waits (engine/plan/run-time.ts,
// with the settings resolved as the run resolves them) at the rates a short probe measured on this adapter
// (engine/plan/probe.ts).

import type { GpuContext } from '../engine/gpu/device.ts';
import type { ModelSpec } from '../engine/model/index.ts';
import { measureMatmulRate, type MatmulRate } from '../engine/plan/probe.ts';
import { evalTokens, runCalls, runFlops, runSeconds } from '../engine/plan/run-time.ts';
import { windowsIn } from '../engine/train/token-stream.ts';
import { resolveSteps, type Settings } from '../presets/schema.ts';
import { planSettings } from './plan.ts';
import type { DatasetSummary, RunEstimate } from './protocol.ts';

/** One probe per device and shape (the adapter does not change while the device lives). */
const probes = new WeakMap<GPUDevice, Map<string, Promise<MatmulRate>>>();

function probe(gpu: GpuContext, spec: ModelSpec): Promise<MatmulRate> {
  let byShape = probes.get(gpu.device);
  if (!byShape) probes.set(gpu.device, (byShape = new Map()));
  const key = `${spec.hidden}x${spec.moe.expertIntermediate}`;
  let p = byShape.get(key);
  if (!p) {
    p = measureMatmulRate(gpu, spec.hidden, spec.moe.expertIntermediate);
    p.catch(() => byShape.delete(key));
    byShape.set(key, p);
  }
  return p;
}

/** Windows one evaluation scores in a set of `tokens`: its windows of SEQ tokens (the last one padded), at most `evalWindows` (null = all). */
export function evalWindowsOf(tokens: number, seq: number, evalWindows: number | null): number {
  const windows = windowsIn(tokens, seq);
  return Math.min(windows, evalWindows ?? windows);
}

export async function estimateRun(gpu: GpuContext, spec: ModelSpec, settings: Settings, train: DatasetSummary,
  heldout: DatasetSummary | null, evalWindows: number | null): Promise<RunEstimate> {
  const s = planSettings(spec, settings, train.trainTokens, gpu.info.maxBufferSize, train.format === 'jsonl-ids');
  const steps = resolveSteps(settings, train.trainTokens);
  const inDomain = train.evalTokens > 0 ? train.evalTokens : train.trainTokens;
  const windows = [evalWindowsOf(inDomain, s.seq, evalWindows), ...(heldout ? [evalWindowsOf(heldout.tokens, s.seq, evalWindows)] : [])];
  const shape = {
    steps, microbatch: s.microbatch, accum: settings.accum, seq: s.seq, trainFrom: s.trainFrom, nImportance: settings.nImportance,
    reselectEvery: settings.reselectEvery, evalEvery: settings.evalEvery, frozenCacheN: s.frozenCacheN, evalWindows: windows,
    sequences: Math.max(1, Math.floor(train.trainTokens / s.seq)), quantized: !!s.quantizeExperts,
  };
  const f = runFlops(spec, shape);
  const c = runCalls(spec, shape, f.evaluations);
  const rate = await probe(gpu, spec);
  const [setupSeconds, trainSeconds, evalSeconds] = [runSeconds(f.setup, c.setup, rate), runSeconds(f.train, c.train, rate), runSeconds(f.evals, c.evals, rate)];
  return {
    seconds: setupSeconds + trainSeconds + evalSeconds,
    setupSeconds,
    trainSeconds,
    evalSeconds,
    stepSeconds: runSeconds(f.train, { ...c.train, pipelines: 0 }, rate) / Math.max(1, steps),
    evaluations: f.evaluations,
    evalTokens: evalTokens(shape),
    steps,
    flops: f.total,
    flopsPerSecond: rate.flopsPerSecond,
    dispatchSeconds: rate.dispatchSeconds,
    syncSeconds: rate.syncSeconds,
    compileSeconds: rate.compileSeconds,
    dispatches: c.setup.dispatches + c.train.dispatches + c.evals.dispatches,
    pipelines: c.setup.pipelines + c.train.pipelines + c.evals.pipelines,
    probe: `${rate.M}×${rate.K} by ${rate.K}×${rate.N} matrix product in ${Math.round(rate.ms)} ms`,
    cpu: gpu.info.cpu,
  };
}
