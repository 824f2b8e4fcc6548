// Trained experts in chunks, and the 4-bit base: a trained layer's experts come in chunks [e0, e1) (one chunk = all
// experts unless 4-bit with a smaller expertChunk). With 4-bit experts the layer keeps only its 4-bit W0. Forward and
// backward read W0 directly, the grouped GEMMs adding the trained entries' Δ to each weight slice they stage (fused,
// ops/experts.ts with the tables of ops/experts_q4.ts): no f32 expert weights on a step. A checkpoint and the delta read
// the touched entries alone (currentAt: W0 dequantized at those entries, the overlay's values, the masters). Where whole
// current f32 weights are needed (a selection's values, a full export of the changed tensors), they are materialized one
// chunk at a time into an f32 scratch shared by all layers: W0 dequantized, then the overlay (entries once trained, no
// longer active), then the active entries' masters. On the fused path that scratch is
// made for the piece of work and freed after it (release); on the materialized path (fusedExperts false) it is held for
// the run and the steps load each chunk into it. With an f32 base there is one chunk and nothing to materialize.
import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, scratchBuffer, writeBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import { dequantizeExperts, expertsQ4At } from '../quant/experts-q4.ts';
import { gatherMasters, scatterMasters } from '../ops/adam.ts';
import { buildSparseTable, dGeometry, expertsQ4Delta, gGeometry, sparseTableWords, type SparseTableGpu } from '../ops/experts_q4.ts';
import { lowerBound, setMinus, union } from './sorted-sets.ts';
import type { Selection, TrainedLayer } from './selection.ts';
import type { FusedExperts } from './weights.ts';

/** The f32 scratch of 4-bit runs: gu = [gate | up] of `cap` experts each ([2, cap, IE, H]), down [cap, H, IE]. */
export interface ExpertScratch { gu: GPUBuffer; down: GPUBuffer; cap: number }

/** A scratch of `cap` experts (the memory plan's experts.scratch items). */
export function expertScratch(gpu: GpuContext, spec: ModelSpec, cap: number): ExpertScratch {
  const n = cap * spec.moe.expertIntermediate * spec.hidden * 4;
  return {
    gu: createBuffer(gpu, { label: 'experts.scratch.gate_up', size: 2 * n, kind: 'workspace' }),
    down: createBuffer(gpu, { label: 'experts.scratch.down', size: n, kind: 'workspace' }),
    cap,
  };
}

type Target = { dtype: 'f32'; offset: number; range: [number, number] };

/** A layer's sparse tables and the index sets (by identity) they were built from: G active, G overlay, D active, D overlay. */
interface Tables { from: Uint32Array[]; G: SparseTableGpu; D: SparseTableGpu }

export class Q4Base {
  /** The overlay's indices as last written (writeOverlay), by selection. */
  private readonly overlays = new Map<Selection, Uint32Array>();
  private readonly tables = new Map<TrainedLayer, Tables>();

  /** Fused path: the Δ buffers of G and D, shared by the layers, and the layer whose Δ they hold (recorded). */
  private readonly deltas: { G?: GPUBuffer; D?: GPUBuffer } = {};
  private deltaOf: TrainedLayer | null = null;
  /** Fused path: the scratch made for the work in progress, and the overlay indices uploaded for it (freed by release). */
  private tmp: ExpertScratch | null = null;
  private readonly tmpIdx = new Map<Selection, GPUBuffer>();
  private readonly tmpBufs: GPUBuffer[] = [];

  /**
   * `scratch`: the one held for the run (materialized path); null on the fused path (or with an f32 base), where
   * `fused` layers get their sparse tables (tables) and any materialization a scratch of the first chunk's size.
   */
  constructor(readonly gpu: GpuContext, readonly spec: ModelSpec, readonly chunks: [number, number][], readonly scratch: ExpertScratch | null) {}

  /** The scratch to materialize into: the held one, else one made now and kept until release. */
  private buf(): ExpertScratch {
    return this.scratch ?? (this.tmp ??= expertScratch(this.gpu, this.spec, this.chunks[0]![1] - this.chunks[0]![0]));
  }

  /** Fused path: frees the scratch of the work just recorded (destroy waits for submitted work to finish reading it). */
  release(): void {
    this.tmp?.gu.destroy();
    this.tmp?.down.destroy();
    this.tmp = null;
    for (const b of this.tmpBufs.splice(0)) b.destroy();
    this.tmpIdx.clear();
  }

  /** A selection's overlay indices on the GPU: held (materialized path), else its host copy uploaded until release. */
  private overlayIdx(sel: Selection): GPUBuffer {
    if (sel.overlay!.idx) return sel.overlay!.idx;
    let b = this.tmpIdx.get(sel);
    if (!b) this.tmpIdx.set(sel, (b = scratchBuffer(this.gpu, this.overlays.get(sel) ?? new Uint32Array(0), `${sel.name}.overlay.idx`, this.tmpBufs)));
    return b;
  }

  /** Elements of one expert's gate, up or down. */
  private get one(): number {
    return this.spec.moe.expertIntermediate * this.spec.hidden;
  }

  /**
   * 4-bit base: chunk c of the layer's current weights into the shared scratch: its experts' W0 dequantized, then every
   * entry ever trained (its overlay value), then the active entries' masters (after the first selection), each scatter
   * filtered to the chunk's index ranges. Recorded before the chunk's GEMMs in forward and again in backward (the next
   * chunk or layer overwrites the scratch). Chosen over per-layer fp16 copies for memory (an 8-layer Qwen3-30B-A3B run:
   * 2.4 GiB of 4-bit bases + one scratch of at most 2.25 GiB vs 9 GiB of fp16), paid in bandwidth: see quant/FORMAT.md
   * "In the engine". f32 base: nothing to do (the weights are resident, one chunk).
   */
  load(enc: Encoder, l: TrainedLayer, c: number, masterIdx?: Map<Selection, GPUBuffer>): void {
    if (l.base.kind !== 'q4') return;
    const b = this.buf();
    dequantizeExperts(enc, b.gu, b.down, l.base.experts, this.spec, { experts: this.chunks[c]!, upAt: b.cap * this.one });
    this.overlayOnto(enc, l, c, masterIdx);
  }

  /**
   * Where chunk c of a selection tensor lives in the layer's weight buffers: index ranges [lo, hi) of the G or D index
   * space and the element offset each starts at (G: the chunk's gate rows, then its up rows at the scratch's up half).
   */
  targets(l: TrainedLayer, sel: Selection, c: number): { range: [number, number]; offset: number }[] {
    const [e0, e1] = this.chunks[c]!;
    const one = this.one;
    const per = l.D.numel;
    const upAt = l.base.kind === 'q4' ? this.buf().cap * one : per;
    if (sel === l.D) return [{ range: [e0 * one, e1 * one], offset: 0 }];
    return [{ range: [e0 * one, e1 * one], offset: 0 }, { range: [per + e0 * one, per + e1 * one], offset: upAt }];
  }

  /** 4-bit base: the overlay, then the masters (at `masterIdx` of a selection when given, else at its idx) onto chunk c. */
  private overlayOnto(enc: Encoder, l: TrainedLayer, c: number, masterIdx?: Map<Selection, GPUBuffer>): void {
    const b = this.buf();
    for (const [sel, w] of [[l.G, b.gu], [l.D, b.down]] as const) {
      for (const { range, offset } of this.targets(l, sel, c)) {
        const t = { dtype: 'f32', offset, range } as const;
        if (sel.overlay) scatterMasters(enc, w, sel.overlay.val, this.overlayIdx(sel), null, sel.overlay.n, t);
        if (sel.host.length) scatterMasters(enc, w, sel.master, masterIdx?.get(sel) ?? sel.idx, null, sel.k, t);
      }
    }
  }

  /**
   * The current weights at entries `idx` (ascending) of selection tensor `sel`, without materializing the layer: W0 at
   * those entries (dequantized on the GPU as the kernels do), then the overlay's values, then the active entries' masters
   * (the order `load` puts them on). Memory: idx, the masters and the overlay, on the GPU and the host.
   */
  async currentAt(l: TrainedLayer, sel: Selection, idx: Uint32Array): Promise<Float32Array> {
    if (l.base.kind !== 'q4') throw new Error('currentAt: not a 4-bit base');
    for (let j = 1; j < idx.length; j++) if (idx[j - 1]! >= idx[j]!) throw new Error(`currentAt: ${sel.name} entries are not ascending at ${j}`);
    const out = await expertsQ4At(this.gpu, l.base.experts, this.spec, sel === l.G ? 'G' : 'D', idx);
    const put = (at: Uint32Array, vals: Float32Array) => {
      for (let j = 0; j < at.length; j++) {
        const p = lowerBound(idx, at[j]!);
        if (p < idx.length && idx[p] === at[j]) out[p] = vals[j]!;
      }
    };
    const ov = this.overlays.get(sel);
    if (ov?.length) put(ov, await readF32(this.gpu, sel.overlay!.val, 0, ov.length));
    if (sel.host.length) put(sel.host, await readF32(this.gpu, sel.master, 0, sel.k));
    return out;
  }

  /** out[j] = the current weight at idx[j] (j < n) of selection tensor `sel`: an f32 base's resident weights. */
  gatherCurrent(enc: Encoder, l: TrainedLayer, sel: Selection, out: GPUBuffer, idx: GPUBuffer, n: number): void {
    if (l.base.kind !== 'f32') throw new Error('gatherCurrent: a 4-bit base is read with currentAt');
    gatherMasters(enc, out, sel === l.G ? l.gu! : l.down!, idx, n, { dtype: 'f32' });
  }

  /** 4-bit base: the overlay's indices := `dropped` (queue write: submit work that reads the old overlay first). */
  writeOverlay(sel: Selection, dropped: Uint32Array): void {
    const o = sel.overlay!;
    if (dropped.length > o.cap) throw new Error(`${sel.name}: ${dropped.length} entries no longer active exceed the overlay's ${o.cap} (more reselections than the settings allow for)`);
    if (dropped.length && o.idx) writeBuffer(this.gpu, o.idx, 0, dropped);
    o.n = dropped.length;
    this.overlays.set(sel, dropped);
    this.tmpIdx.delete(sel); // (an upload of the old indices is freed at release)
  }

  private get dims() {
    return { E: this.spec.moe.numExperts, IE: this.spec.moe.expertIntermediate, H: this.spec.hidden };
  }

  /**
   * Fused path, at the Trainer's construction: layer l's sparse tables and Δ buffers, each for the most entries it can
   * hold (k active + the overlay's capacity), written in place at every rebuild (the memory plan's sparse items).
   */
  addTables(l: TrainedLayer): void {
    const make = (sel: Selection, g: ReturnType<typeof gGeometry>, space: 'G' | 'D'): SparseTableGpu => {
      const most = sel.k + (sel.overlay?.cap ?? 0);
      const tab = createBuffer(this.gpu, { label: `${sel.name}.sparse.table`, size: sparseTableWords(g, most) * 4, kind: 'masters' });
      const delta = (this.deltas[space] ??= createBuffer(this.gpu, { label: `${space}.sparse.delta`, size: Math.max(1, most) * 4, kind: 'workspace' }));
      return { tab, delta, t: { nnz: 0, fPtr: 0, fAct: 0, bPtr: 0, cols: 0, bPos: 0 } };
    };
    const stale = [new Uint32Array(0)]; // no index set is this one: the first fused() builds
    this.tables.set(l, { from: stale, G: make(l.G, gGeometry(this.dims), 'G'), D: make(l.D, dGeometry(this.dims), 'D') });
  }

  /**
   * 4-bit base, a normal step: the layer's experts for the fused path (ExpertChunks.fused): the 4-bit W0 and the sparse
   * tables of its active and overlay entries, rebuilt on the host when either set changed (a selection, a resume), and
   * the Δ of every entry recorded (from the masters as they are now) with `delta`, or when another layer's Δ is in the
   * Δ buffers, which all layers share (the backward recomputes all but the top layer's: 20 bytes read per entry, against
   * 4 bytes per entry held for every layer). No f32 expert weights.
   */
  fused(enc: Encoder, l: TrainedLayer, delta: boolean): FusedExperts {
    if (l.base.kind !== 'q4') throw new Error('fused: not a 4-bit base');
    const w = l.base.experts;
    w.resident?.(enc);
    const none = new Uint32Array(0);
    const from = [l.G.host, this.overlays.get(l.G) ?? none, l.D.host, this.overlays.get(l.D) ?? none];
    const t = this.tables.get(l);
    if (!t) throw new Error(`fused: layer ${l.layer} has no sparse tables (Q4Base.addTables)`);
    if (t.from.some((a, i) => a !== from[i])) {
      const dims = this.dims;
      const up = (sel: Selection, i: number, into: SparseTableGpu): SparseTableGpu => {
        const { words, flat: _, ...rest } = buildSparseTable(sel === l.G ? gGeometry(dims) : dGeometry(dims), from[i]!, from[i + 1]!);
        if (words.byteLength > into.tab.size) throw new Error(`${sel.name}: ${rest.nnz} trained entries exceed the sparse table's capacity`);
        writeBuffer(this.gpu, into.tab, 0, words);
        return { ...into, t: rest };
      };
      Object.assign(t, { from, G: up(l.G, 0, t.G), D: up(l.D, 2, t.D) });
      this.deltaOf = null;
    }
    if (delta || this.deltaOf !== l) {
      this.deltaOf = l;
      for (const [sel, tab, x, L] of [[l.G, t.G, w.gate, this.spec.hidden], [l.D, t.D, w.down, this.spec.moe.expertIntermediate]] as const) {
        expertsQ4Delta(enc, tab, sel.master, sel.overlay?.val ?? null, { buf: x.buf, szWord: x.q4!.sz, L, G: x.q4!.G });
      }
    }
    return { w, G: t.G, D: t.D };
  }

  /**
   * 4-bit base, at a new selection `fresh` (idx already holds it): the values the new overlay (every entry ever touched
   * and not in `fresh`) and the new masters take, per selection, in scratch buffers. Chunk by chunk: W0 dequantized; grown
   * entries' W0 values gathered (when `resetGrown`); the current weights put on (old overlay + old masters at the old
   * indices); the grown entries back at W0; then the values gathered. Submitted here: the old overlay is rewritten after.
   */
  selectValues(l: TrainedLayer, fresh: { G: Uint32Array; D: Uint32Array }, resetGrown: boolean, scratch: GPUBuffer[]): Map<Selection, { overlay: GPUBuffer; master: GPUBuffer }> {
    const up = (data: Uint32Array, label: string) => scratchBuffer(this.gpu, data, label, scratch);
    const f32 = (n: number, label: string) => {
      const b = createBuffer(this.gpu, { label, size: Math.max(4, n * 4), kind: 'workspace' });
      scratch.push(b);
      return b;
    };
    if (l.base.kind !== 'q4') throw new Error('selectValues: not a 4-bit base');
    const base = l.base.experts;
    const b = this.buf();
    const oldIdx = new Map<Selection, GPUBuffer>();
    const plan = [l.G, l.D].map((sel) => {
      const fr = sel === l.G ? fresh.G : fresh.D;
      const grown = resetGrown ? setMinus(fr, sel.host) : new Uint32Array(0);
      const touched = setMinus(union(sel.touched, fr), fr); // the new overlay's entries
      if (sel.host.length) oldIdx.set(sel, up(sel.host, 'old.idx'));
      return {
        sel, w: sel === l.G ? b.gu : b.down, grown: grown.length, grownIdx: up(grown, 'grown.idx'), grownVals: f32(grown.length, 'grown.vals'),
        touched: touched.length, touchedIdx: up(touched, 'touched.idx'), overlay: f32(touched.length, 'overlay.new'), master: f32(sel.k, 'master.new'),
      };
    });
    const enc = new Encoder(this.gpu, 'select.masters');
    this.chunks.forEach((experts, c) => {
      const each = (f: (p: (typeof plan)[number], t: Target) => void) => {
        for (const p of plan) for (const { range, offset } of this.targets(l, p.sel, c)) f(p, { dtype: 'f32', offset, range });
      };
      dequantizeExperts(enc, b.gu, b.down, base, this.spec, { experts, upAt: b.cap * this.one });
      each((p, t) => gatherMasters(enc, p.grownVals, p.w, p.grownIdx, p.grown, t));
      this.overlayOnto(enc, l, c, oldIdx);
      each((p, t) => scatterMasters(enc, p.w, p.grownVals, p.grownIdx, null, p.grown, t));
      each((p, t) => gatherMasters(enc, p.overlay, p.w, p.touchedIdx, p.touched, t));
      each((p, t) => gatherMasters(enc, p.master, p.w, p.sel.idx, p.sel.k, t));
    });
    enc.submit();
    return new Map(plan.map((p) => [p.sel, { overlay: p.overlay, master: p.master }]));
  }

  /** A layer's current expert weights on the host: gu [2·per] (gate then up), down [per]; 4-bit: chunk by chunk. */
  async currentWeights(l: TrainedLayer): Promise<[Float32Array, Float32Array]> {
    if (l.base.kind === 'f32') return [await readF32(this.gpu, l.gu!), await readF32(this.gpu, l.down!)];
    const one = this.one;
    const per = l.D.numel;
    const gu = new Float32Array(2 * per), down = new Float32Array(per);
    const b = this.buf();
    for (const [c, [e0, e1]] of this.chunks.entries()) {
      const enc = new Encoder(this.gpu, 'export');
      this.load(enc, l, c);
      enc.submit();
      const n = (e1 - e0) * one;
      gu.set(await readF32(this.gpu, b.gu, 0, n), e0 * one);
      gu.set(await readF32(this.gpu, b.gu, b.cap * one * 4, n), per + e0 * one);
      down.set(await readF32(this.gpu, b.down, 0, n), e0 * one);
    }
    this.release();
    return [gu, down];
  }
}
