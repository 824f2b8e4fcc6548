// Shared experts trained like routed experts (TrainSettings.trainShared, off by default): in every trained layer with a
// shared MLP (DeepSeek-V3 `shared_experts`, Qwen2-MoE `shared_expert`), its gate|up and its down are two more selection
// tensors with the same FRAC, importance, SparseAdam, reselection and turnover as the routed ones (docs/method.md).
//
// Per layer: G = [gate | up] ([2, IS, H] flat), D = down ([H, IS]). Gradients: the shared MLP is one small dense MLP, so each
// pass computes its dense weight gradients (sharedBackward through the FrozenGrads map; cost ≈ its forward) and the active
// entries are gathered from them — no sparse kernel. Qwen2-MoE's scalar shared_expert_gate stays frozen.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, readU32, scratchBuffer, writeBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec, TensorEntry } from '../model/spec.ts';
import type { ModelWeights } from './weights.ts';
import type { FrozenGrads } from './backward.ts';
import type { ExtraArrays, LayerState as SavedLayer } from './checkpoint-file.ts';
import { activeCount } from './schedule.ts';
import { absAddInPlace } from '../ops/elementwise.ts';
import { topkSelect } from '../ops/topk.ts';
import { checkFinite, gatherMasters, scatterMasters } from '../ops/adam.ts';
import { setMinus } from './sorted-sets.ts';
import { Selection, type EntrySteps, type KeptState } from './selection.ts';

/** One shared selection tensor: its selection, its current weights (f32, this tensor's index space), W0 and the dense gradient of the current pass. */
interface SharedTensor {
  sel: Selection;
  w: GPUBuffer;
  base: GPUBuffer;
  dense: GPUBuffer;
  /** Σ|grad| of the importance pass (only between startImportance and the first select). */
  importance: GPUBuffer | null;
}

interface SharedLayer {
  layer: number;
  names: { gate: string; up: string; down: string };
  IS: number;
  H: number;
  /** Dense gradients by weight: gate and up [IS, H] (packed into G's dense buffer after each pass), down [H, IS]. */
  dGate: GPUBuffer;
  dUp: GPUBuffer;
  G: SharedTensor;
  D: SharedTensor;
}

const numel = (e: TensorEntry): number => e.shape.reduce((a, b) => a * b, 1);

export class SharedTraining {
  readonly layers: SharedLayer[] = [];
  /** Dense gradients (+=) of the trained shared weights by checkpoint name, for TrainGraph.pass. */
  readonly grads: FrozenGrads = new Map();

  /** null unless `on` and some trained layer has shared experts. Shared weights of those layers must be f32. */
  static create(gpu: GpuContext, spec: ModelSpec, weights: ModelWeights, trained: number[], frac: number, on: boolean, entrySteps: EntrySteps | null = null): SharedTraining | null {
    if (!on || !spec.moe.sharedExperts) return null;
    const layers = trained.filter((L) => spec.layers[L]!.mlp === 'moe');
    return layers.length ? new SharedTraining(gpu, spec, weights, layers, frac, entrySteps) : null;
  }

  private constructor(readonly gpu: GpuContext, spec: ModelSpec, weights: ModelWeights, layers: number[], frac: number, readonly entrySteps: EntrySteps | null) {
    const enc = new Encoder(gpu, 'shared-train.init');
    const retired: GPUBuffer[] = [];
    for (const L of layers) {
      const t = weights.layers[L]!.t;
      const entry = (role: string) => spec.layers[L]!.tensors.find((e) => e.role === role)!;
      const [gate, up, down] = [t['shared.gate']!, t['shared.up']!, t['shared.down']!];
      if (gate.dtype !== 'f32' || up.dtype !== 'f32' || down.dtype !== 'f32') {
        throw new Error(`layer ${L}: trained shared-expert weights must be loaded as f32 (loadWeights f32SharedLayers)`);
      }
      const per = numel(entry('shared.gate'));
      const [IS, H] = entry('shared.gate').shape as [number, number];
      const f = (label: string, n: number, kind: string) => createBuffer(gpu, { label: `L${L}.shared.${label}`, size: n * 4, kind });
      // gate and up move into one buffer so that G is one index space; forward and backward read them at offsets.
      const gu = f('gate_up', 2 * per, 'weights');
      enc.copy(gate.buf, gate.offset * 4, gu, 0, per * 4);
      enc.copy(up.buf, up.offset * 4, gu, per * 4, per * 4);
      retired.push(gate.buf, up.buf);
      t['shared.gate'] = { ...gate, buf: gu, offset: 0 };
      t['shared.up'] = { ...up, buf: gu, offset: per };
      const baseGu = f('base.gate_up', 2 * per, 'weights');
      const baseDown = f('base.down', per, 'weights');
      enc.copy(gu, 0, baseGu, 0, 2 * per * 4);
      enc.copy(down.buf, down.offset * 4, baseDown, 0, per * 4);
      const names = { gate: entry('shared.gate').name, up: entry('shared.up').name, down: entry('shared.down').name };
      const layer: SharedLayer = {
        layer: L, names, IS, H,
        dGate: f('dGate', per, 'workspace'),
        dUp: f('dUp', per, 'workspace'),
        G: { sel: new Selection(gpu, `L${L}.SG`, 2 * per, activeCount(frac, 2 * per), !!entrySteps), w: gu, base: baseGu, dense: f('dGateUp', 2 * per, 'workspace'), importance: null },
        D: { sel: new Selection(gpu, `L${L}.SD`, per, activeCount(frac, per), !!entrySteps), w: down.buf, base: baseDown, dense: f('dDown', per, 'workspace'), importance: null },
      };
      this.grads.set(names.gate, layer.dGate);
      this.grads.set(names.up, layer.dUp);
      this.grads.set(names.down, layer.D.dense);
      this.layers.push(layer);
    }
    enc.submit();
    for (const b of retired) b.destroy();
  }

  private *tensors(): Generator<SharedTensor> {
    for (const l of this.layers) yield* [l.G, l.D];
  }

  /** Active shared entries (counted in Trainer.trainableParams). */
  get trainableParams(): number {
    return this.layers.reduce((a, l) => a + l.G.sel.k + l.D.sel.k, 0);
  }

  /** Zeroes the dense gradients (before a pass, or before the ACCUM passes of a step). */
  clearGrads(enc: Encoder): void {
    for (const l of this.layers) (enc.clear(l.dGate), enc.clear(l.dUp), enc.clear(l.D.dense));
  }

  /** `grads` after a submitted clear: for a dense pass that starts from zero. */
  clearedGrads(): FrozenGrads {
    const enc = new Encoder(this.gpu, 'shared-train.clear');
    this.clearGrads(enc);
    enc.submit();
    return this.grads;
  }

  /** dGate and dUp → G's dense gradient [gate | up] (after the passes). */
  private packGateUp(enc: Encoder): void {
    for (const l of this.layers) {
      const bytes = l.IS * l.H * 4;
      enc.copy(l.dGate, 0, l.G.dense, 0, bytes);
      enc.copy(l.dUp, 0, l.G.dense, bytes, bytes);
    }
  }

  /** Importance accumulators (zero) for the first selection. */
  startImportance(): void {
    for (const s of this.tensors()) s.importance = createBuffer(this.gpu, { label: `${s.sel.name}.importance`, size: s.sel.numel * 4, kind: 'workspace' });
  }

  /** importance += |dense gradient of the last pass|. */
  addImportance(enc: Encoder): void {
    this.packGateUp(enc);
    for (const s of this.tensors()) absAddInPlace(enc, s.importance!, s.dense, s.sel.numel);
  }

  /**
   * New active sets = top-k of the importance (first selection) or of the last dense pass's |gradient| (reselection),
   * exactly as Trainer.select treats routed experts: grown entries restart from W0 when `resetGrown`, masters gathered from
   * the current weights, moments cleared (or carried for kept entries when `keepAdam`). Returns each tensor's turnover.
   */
  async select(topkWork: GPUBuffer, resetGrown: boolean, keepAdam: boolean): Promise<number[]> {
    let enc = new Encoder(this.gpu, 'shared-train.select');
    this.packGateUp(enc);
    for (const { sel, importance, dense } of this.tensors()) topkSelect(enc, sel.idx, importance ?? dense, topkWork, sel.numel, sel.k);
    enc.submit();
    const kept = new Map<Selection, KeptState>();
    if (keepAdam) for (const { sel } of this.tensors()) kept.set(sel, await sel.kept());
    const turnovers: number[] = [];
    const scratch: GPUBuffer[] = [];
    enc = new Encoder(this.gpu, 'shared-train.masters');
    for (const { sel, w, base } of this.tensors()) {
      const fresh = await readU32(this.gpu, sel.idx, 0, sel.k);
      const grown = setMinus(fresh, sel.host);
      if (resetGrown && grown.length) {
        const idx = scratchBuffer(this.gpu, grown, 'grown.idx', scratch);
        const vals = createBuffer(this.gpu, { label: 'grown.vals', size: grown.length * 4 });
        scratch.push(vals);
        gatherMasters(enc, vals, base, idx, grown.length, { dtype: 'f32' });
        scatterMasters(enc, w, vals, idx, null, grown.length, { dtype: 'f32' });
      }
      turnovers.push(sel.adopt(fresh));
      gatherMasters(enc, sel.master, w, sel.idx, sel.k, { dtype: 'f32' });
      sel.resetMoments(enc, fresh, kept.get(sel));
    }
    enc.submit();
    await this.gpu.device.queue.onSubmittedWorkDone();
    for (const b of scratch) b.destroy();
    for (const s of this.tensors()) (s.importance?.destroy(), (s.importance = null));
    return turnovers;
  }

  /** After the step's passes: gradients at the active entries, and the non-finite check on them. */
  gatherAndCheck(enc: Encoder, flag: GPUBuffer): void {
    this.packGateUp(enc);
    for (const { sel, dense } of this.tensors()) {
      gatherMasters(enc, sel.grad, dense, sel.idx, sel.k, { dtype: 'f32' });
      checkFinite(enc, flag, sel.grad, sel.k);
    }
  }

  /** SparseAdam on every shared selection (the routed experts' hyper-parameters and step count, or per-entry counts), masters → weights. */
  update(enc: Encoder, lr: number, t: number, weightDecay: number, guard: GPUBuffer | null = null): void {
    for (const { sel, w } of this.tensors()) {
      sel.update(enc, lr, t, weightDecay, this.entrySteps, guard);
      scatterMasters(enc, w, sel.master, sel.idx, guard, sel.k, { dtype: 'f32' });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Checkpoint and export

  /** Adds each layer's shared state to its saved layer as extra arrays `shared.<G|D>.<field>`. */
  async save(saved: SavedLayer[]): Promise<void> {
    for (const l of this.layers) {
      const at = saved.find((x) => x.layer === l.layer);
      if (!at) throw new Error(`layer ${l.layer}: no saved layer state to add the shared experts to`);
      const extra: ExtraArrays = { ...at.extra };
      for (const [tag, { sel, w }] of [['G', l.G], ['D', l.D]] as const) {
        const st = await sel.save();
        extra[`shared.${tag}.idx`] = st.idx;
        extra[`shared.${tag}.master`] = st.master;
        extra[`shared.${tag}.m`] = st.m;
        extra[`shared.${tag}.v`] = st.v;
        if (st.steps) extra[`shared.${tag}.steps`] = st.steps;
        extra[`shared.${tag}.touched`] = sel.touched.slice();
        extra[`shared.${tag}.touchedVal`] = await this.valuesAt(w, sel.touched);
      }
      at.extra = extra;
    }
  }

  /** Weights = W0 with every touched entry restored; indices, masters and moments as saved. */
  async restore(saved: SavedLayer[]): Promise<void> {
    const scratch: GPUBuffer[] = [];
    const enc = new Encoder(this.gpu, 'shared-train.restore');
    for (const l of this.layers) {
      const x = saved.find((c) => c.layer === l.layer)?.extra ?? {};
      for (const [tag, { sel: s, w, base }] of [['G', l.G], ['D', l.D]] as const) {
        const get = <T extends Float32Array | Uint32Array>(field: string, type: new (n: number) => T): T => {
          const a = x[`shared.${tag}.${field}`];
          if (!(a instanceof type)) throw new Error(`checkpoint layer ${l.layer} has no shared-expert state (${field}); it was saved without trainShared`);
          return a as T;
        };
        const idx = get('idx', Uint32Array), touched = get('touched', Uint32Array), touchedVal = get('touchedVal', Float32Array);
        const master = get('master', Float32Array), m = get('m', Float32Array), v = get('v', Float32Array);
        if ([idx, master, m, v].some((a) => a.length !== s.k) || touched.length !== touchedVal.length) {
          throw new Error(`checkpoint layer ${l.layer}: shared-expert state does not match this run's settings (k ${s.k})`);
        }
        enc.copy(base, 0, w, 0, s.numel * 4);
        if (touched.length) scatterMasters(enc, w, scratchBuffer(this.gpu, touchedVal, 'touched.vals', scratch), scratchBuffer(this.gpu, touched, 'touched.idx', scratch), null, touched.length, { dtype: 'f32' });
        const steps = s.steps ? get('steps', Uint32Array) : null;
        if (steps && steps.length !== s.k) throw new Error(`checkpoint layer ${l.layer}: shared-expert step counts do not match k ${s.k}`);
        if (!s.steps && x[`shared.${tag}.steps`]) throw new Error(`checkpoint layer ${l.layer} has per-entry step counts; resume with perEntryStep`);
        s.load({ idx, master, m, v, steps });
        s.touched = touched.slice();
      }
    }
    enc.submit();
    await this.gpu.device.queue.onSubmittedWorkDone();
    for (const b of scratch) b.destroy();
  }

  /** Current values of the trained shared tensors, by checkpoint name. */
  async changed(out: Map<string, Float32Array>): Promise<void> {
    for (const l of this.layers) {
      const gu = await readF32(this.gpu, l.G.w);
      const per = l.IS * l.H;
      out.set(l.names.gate, gu.slice(0, per));
      out.set(l.names.up, gu.slice(per, 2 * per));
      out.set(l.names.down, await readF32(this.gpu, l.D.w));
    }
  }

  private async valuesAt(w: GPUBuffer, idx: Uint32Array): Promise<Float32Array> {
    if (!idx.length) return new Float32Array(0);
    const scratch: GPUBuffer[] = [];
    const vals = createBuffer(this.gpu, { label: 'touched.vals', size: idx.length * 4 });
    const enc = new Encoder(this.gpu, 'shared-train.snapshot');
    gatherMasters(enc, vals, w, scratchBuffer(this.gpu, idx, 'touched.idx', scratch), idx.length, { dtype: 'f32' });
    enc.submit();
    const out = await readF32(this.gpu, vals, 0, idx.length);
    vals.destroy();
    for (const b of scratch) b.destroy();
    return out;
  }
}

/** A checkpoint's layers carry shared-expert state (saved with trainShared). */
export function hasSharedState(saved: SavedLayer[]): boolean {
  return saved.some((l) => Object.keys(l.extra ?? {}).some((k) => k.startsWith('shared.')));
}
