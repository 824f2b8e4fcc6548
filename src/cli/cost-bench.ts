// `usaf bench --cost`: the real training code on the counting device (engine/gpu/counting.ts), a normal step and a
// reselection step counted (dispatches, submits, blocking readbacks, FLOPs and bytes per kernel and phase), and a
// roofline estimate per phase for a named device: each dispatch takes max(FLOPs / peak, bytes / bandwidth).

import { readFile } from 'node:fs/promises';
import { countingGpu } from '../engine/gpu/counting.ts';
import { countsBetween, type CountSnapshot, type KernelTally, type Roofline } from '../engine/gpu/cost.ts';
import type { ModelSpec } from '../engine/model/spec.ts';
import { syntheticTrainer, type SyntheticOptions } from './train-bench.ts';

/** f32 peaks (no tensor cores: the kernels are f32 FMA) and memory bandwidth. */
export const ROOFLINES: Record<string, Roofline> = {
  h100: { name: 'H100 SXM', flops: 67e12, bytes_per_s: 3.35e12, gpu_bytes: 80e9 },
  h200: { name: 'H200', flops: 67e12, bytes_per_s: 4.8e12, gpu_bytes: 141e9 },
  rx7900xtx: { name: 'RX 7900 XTX', flops: 61e12, bytes_per_s: 0.96e12, gpu_bytes: 24 * 2 ** 30 },
};

/** A named device, or a JSON file {name, flops, bytes_per_s, gpu_bytes?}. */
export async function rooflineOf(nameOrFile: string): Promise<Roofline> {
  const known = ROOFLINES[nameOrFile.toLowerCase()];
  if (known) return known;
  if (!nameOrFile.endsWith('.json')) throw new Error(`--device: "${nameOrFile}" is neither ${Object.keys(ROOFLINES).join(', ')} nor a .json file`);
  const j = JSON.parse(await readFile(nameOrFile, 'utf8')) as Partial<Roofline>;
  for (const k of ['flops', 'bytes_per_s'] as const) {
    if (!(typeof j[k] === 'number' && j[k]! > 0)) throw new Error(`--device ${nameOrFile}: "${k}" must be a positive number (FLOP/s, bytes/s)`);
  }
  if (j.gpu_bytes !== undefined && !(typeof j.gpu_bytes === 'number' && j.gpu_bytes > 0)) throw new Error(`--device ${nameOrFile}: "gpu_bytes" must be a positive number (bytes of GPU memory)`);
  return { name: typeof j.name === 'string' ? j.name : nameOrFile, flops: j.flops!, bytes_per_s: j.bytes_per_s!, ...(j.gpu_bytes !== undefined ? { gpu_bytes: j.gpu_bytes } : {}) };
}

export interface StepTotals {
  dispatches: number;
  submits: number;
  blocking_readbacks: number;
  flops: number;
  bytes: number;
}

export interface PhaseCost {
  dispatches: number;
  flops: number;
  bytes: number;
  ms: number;
  bound: 'compute' | 'memory';
}

export interface CostReport {
  model: string;
  device: Roofline;
  microbatch: number;
  seq: number;
  layers: number;
  normal: CountSnapshot;
  reselect: CountSnapshot;
  /** Wall time of the JS that encodes each step on the counting device (no GPU work, no waits). */
  encodeMs: { normal: number; reselect: number };
  peakBytes: number;
  uncosted: string[];
}

const totals = (c: CountSnapshot): StepTotals => ({ dispatches: c.dispatches, submits: c.submits, blocking_readbacks: c.blocking, flops: c.flops, bytes: c.bytes });

/** Tallies merged by phase (the part of `phase\tkernel` before the tab), or by kernel. */
export function groupBy(c: CountSnapshot, by: 'phase' | 'kernel'): Map<string, KernelTally> {
  const out = new Map<string, KernelTally>();
  for (const [key, t] of c.kernels) {
    const [phase, kernel] = key.split('\t') as [string, string];
    const k = by === 'phase' ? phase : kernel;
    const o = out.get(k) ?? { dispatches: 0, flops: 0, bytes: 0, computeSec: 0, memorySec: 0 };
    for (const f of ['dispatches', 'flops', 'bytes', 'computeSec', 'memorySec'] as const) o[f] += t[f];
    out.set(k, o);
  }
  return out;
}

const phaseCost = (t: KernelTally): PhaseCost => ({
  dispatches: t.dispatches, flops: t.flops, bytes: t.bytes, ms: +((t.computeSec + t.memorySec) * 1e3).toPrecision(6), bound: t.computeSec >= t.memorySec ? 'compute' : 'memory',
});

/** Runs init, a warm-up step, a normal step and a reselection step of the synthetic model on the counting device. */
export async function costModel(spec: ModelSpec, model: string, device: Roofline, o: Omit<SyntheticOptions, 'steps' | 'reselectEvery' | 'zeros'>): Promise<CostReport> {
  const { gpu, counts } = countingGpu(`counting device (${device.name} roofline)`);
  counts.roofline = device;
  const t = await syntheticTrainer(gpu, spec, { ...o, steps: 3, reselectEvery: 3, zeros: true });
  await t.init([Array.from({ length: o.microbatch }, (_, i) => i)]);
  await t.runStep(); // step 1: kernels made once (as on a GPU)
  // as a run steps (runTraining): pipelined, each step reading the one before it
  const step = async () => {
    const a = counts.now();
    const t0 = performance.now();
    await t.runStep();
    const ms = performance.now() - t0;
    return { c: countsBetween(a, counts.now()), ms };
  };
  const normal = await step(); // step 2
  const reselect = await step(); // step 3: reselection (RESELECT_EVERY 3)
  await t.flush();
  return {
    model, device, microbatch: o.microbatch, seq: o.seq, layers: spec.numLayers, normal: normal.c, reselect: reselect.c,
    encodeMs: { normal: normal.ms, reselect: reselect.ms }, peakBytes: counts.peakBytes, uncosted: [...counts.uncosted].sort(),
  };
}

/** The `--cost` JSON: per step totals, phases of the normal step (+ the reselection's), and the normal step's estimate. */
export function costJson(r: CostReport) {
  const phases = Object.fromEntries([...groupBy(r.normal, 'phase')].map(([k, t]) => [k, phaseCost(t)]));
  const resel = [...groupBy(r.reselect, 'phase')].filter(([k]) => k.startsWith('reselection'));
  if (resel.length) {
    const sum = resel.reduce((a, [, t]) => ({ dispatches: a.dispatches + t.dispatches, flops: a.flops + t.flops, bytes: a.bytes + t.bytes, computeSec: a.computeSec + t.computeSec, memorySec: a.memorySec + t.memorySec }),
      { dispatches: 0, flops: 0, bytes: 0, computeSec: 0, memorySec: 0 });
    phases.reselection = phaseCost(sum);
  }
  const ms = Object.entries(phases).filter(([k]) => k !== 'reselection').reduce((a, [, p]) => a + p.ms, 0);
  const tokens = r.microbatch * r.seq;
  return {
    per_step: totals(r.normal),
    reselect_step: totals(r.reselect),
    phases,
    estimate: { device: r.device.name, ms: +ms.toPrecision(6), tok_s: +(tokens / (ms / 1e3)).toFixed(0) },
  };
}

const g = (x: number) => (x >= 1e12 ? `${(x / 1e12).toFixed(3)} T` : x >= 1e9 ? `${(x / 1e9).toFixed(3)} G` : x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${x.toFixed(0)} `);

/** Human-readable lines: per step counts, per phase and per kernel FLOPs/bytes/time. */
export function costLines(r: CostReport): string[] {
  const out: string[] = [];
  out.push(`cost model: ${r.model}, ${r.layers} trained layers, microbatch ${r.microbatch} x seq ${r.seq}, roofline ${r.device.name} (${g(r.device.flops)}FLOP/s, ${g(r.device.bytes_per_s)}B/s)`);
  out.push(`peak GPU bytes ${g(r.peakBytes)}B; JS time to encode a step: normal ${r.encodeMs.normal.toFixed(1)} ms, reselection ${r.encodeMs.reselect.toFixed(1)} ms`);
  if (r.uncosted.length) out.push(`kernels without a declared cost: ${r.uncosted.join(', ')}`);
  for (const [name, c] of [['normal step', r.normal], ['reselection step', r.reselect]] as const) {
    out.push('', `${name}: ${c.dispatches} dispatches, ${c.submits} submits, ${c.blocking} blocking readbacks (${c.mapAsync} mapAsync + ${c.drains} queue drains), ${c.writes} writes (${g(c.writeBytes)}B), ${c.bindGroups} bind groups created, ${g(c.flops)}FLOP, ${g(c.bytes)}B`);
    out.push(`  ${'phase'.padEnd(34)} ${'disp'.padStart(6)} ${'FLOP'.padStart(10)} ${'bytes'.padStart(10)} ${'ms'.padStart(9)}  bound`);
    for (const [k, t] of groupBy(c, 'phase')) {
      const p = phaseCost(t);
      out.push(`  ${k.padEnd(34)} ${String(p.dispatches).padStart(6)} ${g(p.flops).padStart(10)} ${g(p.bytes).padStart(10)} ${p.ms.toFixed(3).padStart(9)}  ${p.bound}`);
    }
    out.push(`  ${'kernel'.padEnd(34)} ${'disp'.padStart(6)} ${'FLOP'.padStart(10)} ${'bytes'.padStart(10)} ${'ms'.padStart(9)}  bound`);
    const kernels = [...groupBy(c, 'kernel')].sort((a, b) => b[1].computeSec + b[1].memorySec - (a[1].computeSec + a[1].memorySec));
    for (const [k, t] of kernels) {
      const p = phaseCost(t);
      out.push(`  ${k.padEnd(34)} ${String(p.dispatches).padStart(6)} ${g(p.flops).padStart(10)} ${g(p.bytes).padStart(10)} ${p.ms.toFixed(3).padStart(9)}  ${p.bound}`);
    }
  }
  return out;
}
