// A selection tensor (docs/method.md): the active entries of one trained weight tensor and their SparseAdam state, for
// routed experts (G = gate|up, D = down of a layer) and shared experts alike; and the trained MoE layer that holds two.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, readU32, writeBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';
import type { ExpertWeights } from './weights.ts';
import { sparseAdam, sparseAdamEntryT } from '../ops/adam.ts';
import { carryMoments, carryValues, setMinus, union } from './sorted-sets.ts';

/** perEntryStep: Adam's bias corrections by step count (adamBiasTable(tMax)). */
export interface EntrySteps { bias: GPUBuffer; tMax: number }

/** A selection's Adam state before a reselection (keepAdamState): moments and update counts [k] at the old indices. */
export interface KeptState { m: Float32Array; v: Float32Array; steps: Uint32Array | null; old: Uint32Array }

/** A selection's saved state: indices [k] ascending, masters and moments [k], update counts [k] (perEntryStep). */
export interface SelectionState { idx: Uint32Array; master: Float32Array; m: Float32Array; v: Float32Array; steps: Uint32Array | null }

/** Per selection tensor state: indices [k] ascending, masters/m/v/grad [k], and with perEntryStep the update counts [k] u32. */
export class Selection {
  readonly idx: GPUBuffer;
  readonly master: GPUBuffer;
  readonly m: GPUBuffer;
  readonly v: GPUBuffer;
  readonly steps: GPUBuffer | null;
  readonly grad: GPUBuffer;
  host: Uint32Array = new Uint32Array(0); // CPU copy of idx
  touched: Uint32Array = new Uint32Array(0); // every index ever active (sorted)
  /**
   * 4-bit base only: the values of the entries once trained and no longer active on the GPU (idx, val [cap], the first n
   * used; the active entries' values are in `master`), cap = every entry the run's reselections can drop. idx null when
   * not held on the GPU (the fused path: Q4Base uploads its host copy for the work that needs it).
   */
  readonly overlay: { idx: GPUBuffer | null; val: GPUBuffer; cap: number; n: number } | null = null;

  constructor(readonly gpu: GpuContext, readonly name: string, readonly numel: number, readonly k: number, perEntryStep: boolean, overlayCap: number | null = null, overlayIdx = true) {
    const f = (label: string, kind: string, n = k) => createBuffer(gpu, { label: `${name}.${label}`, size: n * 4, kind });
    if (overlayCap !== null) this.overlay = { idx: overlayIdx ? f('overlay.idx', 'masters', overlayCap) : null, val: f('overlay.val', 'masters', overlayCap), cap: overlayCap, n: 0 };
    this.idx = f('idx', 'masters');
    this.master = f('master', 'masters');
    this.m = f('m', 'optimizer');
    this.v = f('v', 'optimizer');
    this.steps = perEntryStep ? f('steps', 'optimizer') : null;
    this.grad = f('grad', 'workspace');
  }

  /** The Adam state to carry into a reselection (keepAdamState). */
  async kept(): Promise<KeptState> {
    const { gpu, k } = this;
    return { m: await readF32(gpu, this.m, 0, k), v: await readF32(gpu, this.v, 0, k), steps: this.steps && (await readU32(gpu, this.steps, 0, k)), old: this.host };
  }

  /** The new active set `fresh` (idx already holds it): returns its turnover (share of it not in the old set; 1 at the first). */
  adopt(fresh: Uint32Array): number {
    const turnover = this.host.length ? setMinus(fresh, this.host).length / fresh.length : 1;
    this.host = fresh;
    this.touched = union(this.touched, fresh);
    return turnover;
  }

  /** Adam state for the active set `fresh`: carried for the entries `kept` had (grown ones zero), else cleared. */
  resetMoments(enc: Encoder, fresh: Uint32Array, kept: KeptState | undefined): void {
    if (kept) {
      const [m, v] = carryMoments(kept.old, kept.m, kept.v, fresh);
      writeBuffer(this.gpu, this.m, 0, m);
      writeBuffer(this.gpu, this.v, 0, v);
      if (this.steps) writeBuffer(this.gpu, this.steps, 0, carryValues(kept.old, kept.steps!, fresh));
    } else {
      enc.clear(this.m);
      enc.clear(this.v);
      if (this.steps) enc.clear(this.steps);
    }
  }

  /** SparseAdam on the masters: step count `t`, or each entry's own count (perEntryStep, with `entrySteps`). */
  update(enc: Encoder, lr: number, t: number, weightDecay: number, entrySteps: EntrySteps | null, guard: GPUBuffer | null = null): void {
    if (this.steps && entrySteps) sparseAdamEntryT(enc, this.master, this.m, this.v, this.steps, this.grad, guard, entrySteps.bias, this.k, { lr, tMax: entrySteps.tMax, weightDecay });
    else sparseAdam(enc, this.master, this.m, this.v, this.grad, guard, this.k, { lr, t, weightDecay });
  }

  /** Indices, masters, moments and update counts, read back. */
  async save(): Promise<SelectionState> {
    const { gpu, k } = this;
    return {
      idx: this.host.slice(), master: await readF32(gpu, this.master, 0, k), m: await readF32(gpu, this.m, 0, k), v: await readF32(gpu, this.v, 0, k),
      steps: this.steps && (await readU32(gpu, this.steps, 0, k)),
    };
  }

  /** Indices, masters, moments and update counts (when this selection keeps them) as saved; lengths checked by the caller. */
  load(st: SelectionState): void {
    const { gpu } = this;
    if (this.steps && st.steps) writeBuffer(gpu, this.steps, 0, st.steps);
    writeBuffer(gpu, this.idx, 0, st.idx);
    writeBuffer(gpu, this.master, 0, st.master);
    writeBuffer(gpu, this.m, 0, st.m);
    writeBuffer(gpu, this.v, 0, st.v);
    this.host = st.idx.slice();
  }
}

/**
 * A trained MoE layer: two selection tensors G = gate and up of all experts ([2, E, IE, H] flat) and D = down
 * ([E, H, IE]), and its router, trained densely by SGD with momentum.
 */
export interface TrainedLayer {
  layer: number;
  /**
   * Current expert weights, f32: gu = [gate | up] ([2, E, IE, H], the G index space), down = [E, H, IE] (D). Null with
   * a 4-bit base: Q4Base materializes them, one chunk of experts at a time, into its scratch where they are needed.
   */
  gu: GPUBuffer | null;
  down: GPUBuffer | null;
  /** Base weights W0: f32 copies made at start, or (4-bit experts) the loaded 4-bit experts themselves. */
  base: { kind: 'f32'; gu: GPUBuffer; down: GPUBuffer } | { kind: 'q4'; experts: ExpertWeights };
  G: Selection;
  D: Selection;
  router: GPUBuffer; // [E, H] f32 (the weights' own buffer)
  dRouter: GPUBuffer; // [E, H]
  routerBuf: GPUBuffer; // [E, H] momentum
}
