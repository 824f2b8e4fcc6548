// A run's state off the GPU: the checkpoint that continues it exactly (snapshot / restore) and the full current values of
// the trained tensors for export (changedTensors).

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, scratchBuffer, writeBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { decodeF32 } from '../io/dtype.ts';
import { scatterMasters } from '../ops/adam.ts';
import { readWeight } from './weights.ts';
import { TRAIN_CHECKPOINT_VERSION, type TrainCheckpoint, type LayerState as SavedLayer } from './checkpoint-file.ts';
import { hasSharedState, type SharedTraining } from './shared-train.ts';
import type { Rng } from './rng.ts';
import type { TrainSettings } from './settings.ts';
import type { Selection, TrainedLayer } from './selection.ts';
import type { Q4Base } from './q4-base.ts';

/** What snapshot and restore read and write of a run (the Trainer). */
export interface RunState {
  readonly gpu: GpuContext;
  readonly spec: ModelSpec;
  readonly s: TrainSettings;
  readonly layers: TrainedLayer[];
  readonly shared: SharedTraining | null;
  readonly q4: Q4Base;
  readonly cache: { readonly id: string };
  readonly rng: Rng;
  readonly impRng: Rng;
  step: number;
  adamT: number;
  skipped: number;
  routerHasBuf: boolean;
  turnovers: number[];
  order: Uint32Array;
  cursor: number;
  epoch: number;
}

/** The current weights of selection tensor `sel` at the sorted indices `idx` (4-bit: Q4Base.currentAt; never the whole layer). */
export async function valuesAt(t: Pick<RunState, 'gpu' | 'q4'>, l: TrainedLayer, sel: Selection, idx: Uint32Array): Promise<Float32Array> {
  const { gpu } = t;
  if (!idx.length) return new Float32Array(0);
  if (l.base.kind === 'q4') return t.q4.currentAt(l, sel, idx);
  const ib = createBuffer(gpu, { label: 'touched.idx', size: idx.length * 4 });
  const vb = createBuffer(gpu, { label: 'touched.vals', size: idx.length * 4 });
  writeBuffer(gpu, ib, 0, idx);
  const enc = new Encoder(gpu, 'values.at');
  t.q4.gatherCurrent(enc, l, sel, vb, ib, idx.length);
  enc.submit();
  const out = await readF32(gpu, vb, 0, idx.length);
  ib.destroy();
  vb.destroy();
  return out;
}

/** Everything needed to continue this run exactly (read back from the GPU). */
export async function snapshot(t: RunState, settings: Record<string, unknown>, log: object[]): Promise<TrainCheckpoint> {
  const { gpu } = t;
  const layers: SavedLayer[] = [];
  for (const l of t.layers) {
    const vals = (sel: Selection, idx: Uint32Array) => valuesAt(t, l, sel, idx);
    const G = await l.G.save(), D = await l.D.save();
    layers.push({
      layer: l.layer,
      idxG: G.idx, idxD: D.idx,
      masterG: G.master, mG: G.m, vG: G.v,
      masterD: D.master, mD: D.m, vD: D.v,
      touchedG: l.G.touched.slice(),
      touchedValG: await vals(l.G, l.G.touched),
      touchedD: l.D.touched.slice(),
      touchedValD: await vals(l.D, l.D.touched),
      router: await readF32(gpu, l.router),
      routerBuf: t.routerHasBuf ? await readF32(gpu, l.routerBuf) : null,
      ...(G.steps && D.steps ? { extra: { stepsG: G.steps, stepsD: D.steps } } : {}),
    });
  }
  await t.shared?.save(layers);
  return {
    version: TRAIN_CHECKPOINT_VERSION,
    settings,
    step: t.step,
    rng: { seed: t.s.seed, state: t.s.accumulatedReselect ? [t.rng.state, t.impRng.state] : [t.rng.state] },
    dataOrder: { epoch: t.epoch, cursor: t.cursor, order: t.order.slice() },
    frozenCacheId: t.cache.id,
    skipped: t.skipped,
    turnovers: t.turnovers.slice(),
    adamT: t.adamT,
    layers,
    log,
  };
}

/** Continue from a snapshot: weights = base with every touched entry restored, optimizer and data state as saved. */
export async function restore(t: RunState, c: TrainCheckpoint): Promise<void> {
  const { gpu } = t;
  if (c.layers.length !== t.layers.length) throw new Error(`checkpoint has ${c.layers.length} trained layers, this run has ${t.layers.length}`);
  if (!t.shared && hasSharedState(c.layers)) throw new Error('checkpoint trained the shared experts (trainShared); this run does not');
  if (!!t.s.accumulatedReselect !== c.rng.state.length > 1) {
    throw new Error(`checkpoint was saved ${c.rng.state.length > 1 ? 'with' : 'without'} accumulatedReselect (its importance stream); resume the same way`);
  }
  const scratch: GPUBuffer[] = [];
  const up = (data: Uint32Array | Float32Array, label: string) => scratchBuffer(gpu, data, label, scratch);
  const enc = new Encoder(gpu, 'restore');
  t.layers.forEach((l, i) => {
    const c1 = c.layers[i]!;
    if (c1.layer !== l.layer || c1.idxG.length !== l.G.k || c1.idxD.length !== l.D.k) throw new Error(`checkpoint layer ${c1.layer} does not match this run's settings (layer ${l.layer}, k ${l.G.k}/${l.D.k})`);
    for (const [sel, w, base, idx, master, m, v, touched, tvals, steps] of [
      [l.G, l.gu, l.base.kind === 'f32' ? l.base.gu : null, c1.idxG, c1.masterG, c1.mG, c1.vG, c1.touchedG, c1.touchedValG, c1.extra?.stepsG],
      [l.D, l.down, l.base.kind === 'f32' ? l.base.down : null, c1.idxD, c1.masterD, c1.mD, c1.vD, c1.touchedD, c1.touchedValD, c1.extra?.stepsD],
    ] as const) {
      if (!!sel.steps !== (steps !== undefined)) throw new Error(`checkpoint layer ${l.layer} ${steps ? 'has' : 'has no'} per-entry step counts; resume with${steps ? '' : 'out'} perEntryStep`);
      if (sel.steps && steps && (!(steps instanceof Uint32Array) || steps.length !== sel.k)) throw new Error(`checkpoint layer ${l.layer}: per-entry step counts do not match k ${sel.k}`);
      if (base) {
        enc.copy(base, 0, w!, 0, sel.numel * 4);
        if (touched.length) scatterMasters(enc, w!, up(tvals, 'touched.vals'), up(touched, 'touched.idx'), null, touched.length, { dtype: 'f32' });
      } else {
        // the overlay holds the touched entries that are not active
        const active = new Set(idx);
        const keep = Array.from(touched, (i) => !active.has(i));
        t.q4.writeOverlay(sel, touched.filter((_, j) => keep[j]));
        const vals = tvals.filter((_, j) => keep[j]);
        if (vals.length) writeBuffer(gpu, sel.overlay!.val, 0, vals);
      }
      sel.load({ idx, master, m, v, steps: steps instanceof Uint32Array ? steps : null });
      sel.touched = touched.slice();
    }
    writeBuffer(gpu, l.router, 0, c1.router);
    if (c1.routerBuf) writeBuffer(gpu, l.routerBuf, 0, c1.routerBuf);
  });
  enc.submit();
  await gpu.device.queue.onSubmittedWorkDone();
  for (const b of scratch) b.destroy();
  await t.shared?.restore(c.layers);
  t.routerHasBuf = c.layers.some((x) => x.routerBuf !== null);
  t.step = c.step;
  t.adamT = c.adamT;
  t.skipped = c.skipped;
  t.turnovers = c.turnovers.slice();
  t.rng.state = c.rng.state[0]! >>> 0;
  if (t.s.accumulatedReselect) t.impRng.state = c.rng.state[1]! >>> 0;
  t.order = c.dataOrder.order.slice();
  t.cursor = c.dataOrder.cursor;
  t.epoch = c.dataOrder.epoch;
}

/**
 * Full current values of the trained tensors, by checkpoint name (per-expert or fused, as the spec names them). With
 * `onto` (4-bit runs), entries never trained keep that checkpoint's values instead of the dequantized base's.
 */
export async function changedTensors(t: RunState, onto?: Checkpoint, opts: { skipQ4Experts?: boolean } = {}): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  const { numExperts: E, expertIntermediate: IE } = t.spec.moe;
  const per = IE * t.spec.hidden;
  for (const l of t.layers) {
    if (opts.skipQ4Experts && l.base.kind === 'q4') {
      // the experts' trained values come sparse (valuesAt over the touched entries): only the router here
      for (const e of t.spec.layers[l.layer]!.tensors) if (e.role === 'router') out.set(e.name, await readF32(t.gpu, l.router));
      continue;
    }
    let [gu, down] = await t.q4.currentWeights(l);
    if (onto && l.base.kind === 'q4') [gu, down] = await touchedOnto(t.spec, onto, l, gu, down);
    for (const e of t.spec.layers[l.layer]!.tensors) {
      const x = e.expert ?? 0;
      if (e.role === 'router') out.set(e.name, await readF32(t.gpu, l.router));
      else if (e.role === 'expert.gate') out.set(e.name, gu.slice(x * per, (x + 1) * per));
      else if (e.role === 'expert.up') out.set(e.name, gu.slice((E + x) * per, (E + x + 1) * per));
      else if (e.role === 'expert.down') out.set(e.name, down.slice(x * per, (x + 1) * per));
      else if (e.role === 'expert.gate_up_fused') {
        const fused = new Float32Array(2 * E * per);
        for (let k = 0; k < E; k++) {
          fused.set(gu.subarray(k * per, (k + 1) * per), 2 * k * per);
          fused.set(gu.subarray((E + k) * per, (E + k + 1) * per), (2 * k + 1) * per);
        }
        out.set(e.name, fused);
      } else if (e.role === 'expert.down_fused') out.set(e.name, down);
    }
  }
  await t.shared?.changed(out);
  return out;
}

/**
 * A 4-bit run's trained values over the checkpoint's own (not the dequantized base's): gu/down [G, D index spaces] from
 * the checkpoint, with every touched entry from the current weights. For a sparse delta against that checkpoint.
 */
async function touchedOnto(spec: ModelSpec, ckpt: Checkpoint, l: TrainedLayer, gu: Float32Array, down: Float32Array): Promise<[Float32Array, Float32Array]> {
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const per = IE * spec.hidden;
  const bg = new Float32Array(gu.length), bd = new Float32Array(down.length);
  for (const e of spec.layers[l.layer]!.tensors) {
    if (!e.role.startsWith('expert.')) continue;
    const r = await readWeight(ckpt, e, spec.quantization);
    const v = decodeF32(r.dtype, r.bytes);
    const x = e.expert ?? 0;
    if (e.role === 'expert.gate') bg.set(v, x * per);
    else if (e.role === 'expert.up') bg.set(v, (E + x) * per);
    else if (e.role === 'expert.down') bd.set(v, x * per);
    else if (e.role === 'expert.down_fused') bd.set(v);
    else if (e.role === 'expert.gate_up_fused') {
      for (let k = 0; k < E; k++) {
        bg.set(v.subarray(2 * k * per, (2 * k + 1) * per), k * per);
        bg.set(v.subarray((2 * k + 1) * per, (2 * k + 2) * per), (E + k) * per);
      }
    }
  }
  for (const i of l.G.touched) bg[i] = gu[i]!;
  for (const i of l.D.touched) bd[i] = down[i]!;
  return [bg, bd];
}
