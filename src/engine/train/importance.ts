// Importance (docs/method.md): which entries of each selection tensor become active. Σ|grad| over N_IMPORTANCE microbatches at
// the current weights, or |grad| of one microbatch at a reselection, ranked by top-k into each selection's idx. The dense
// expert gradient is computed by the weight-gradient kernel itself, whole or (4-bit experts in chunks) chunk by chunk
// into an exact top-k over chunks.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import { topkSelect } from '../ops/topk.ts';
import { expertsBackwardWeights } from '../ops/experts.ts';
import { expertDims } from './forward.ts';
import { RunningTopk, TopkMerger } from './chunked-topk.ts';
import type { ExpertGradMode } from './backward.ts';
import type { TrainGraph } from './graph.ts';
import type { FrozenCache } from './frozen-cache.ts';
import type { SharedTraining } from './shared-train.ts';
import { activeCount } from './schedule.ts';
import type { TrainSettings } from './settings.ts';
import type { Selection, TrainedLayer } from './selection.ts';
import type { Q4Base } from './q4-base.ts';
import type { OnProgress } from './types.ts';

/** What the importance passes use of a run (the Trainer). */
export interface ImportanceRun {
  readonly gpu: GpuContext;
  readonly spec: ModelSpec;
  readonly s: TrainSettings;
  /** Tokens per microbatch. */
  readonly T: number;
  readonly graph: TrainGraph;
  readonly cache: FrozenCache;
  readonly layers: TrainedLayer[];
  readonly shared: SharedTraining | null;
  readonly q4: Q4Base;
  readonly topkWork: GPUBuffer;
  /** Ids and targets of these samples, sample-major. */
  batch(samples: number[]): { ids: Uint32Array; targets: Uint32Array };
  /** Expert-gradient modes for every trained layer (dense layers get none). */
  modes(make: (l: TrainedLayer) => ExpertGradMode): ExpertGradMode[];
  routers(on: boolean): (GPUBuffer | null)[];
}

export class Importance {
  /**
   * Dense expert-gradient scratch shared by all layers (each layer's is consumed right after its backward): [2·per],
   * [per]. With `transient` (4-bit fused runs) made for each ranking and freed after it; else held for the run.
   */
  private dense: { G: GPUBuffer; D: GPUBuffer } | null = null;
  /**
   * Instead of the dense scratch when a layer's experts come in several chunks (`chunked`): one chunk's dense gradient
   * (gate, up, down [cap·IE·H] each) and the exact top-k over chunks (running sets of gate, up and down, one merger),
   * made and freed together like the dense scratch.
   */
  readonly chunked: boolean;
  private topkSets: { runGate: RunningTopk; runUp: RunningTopk; runDown: RunningTopk; merger: TopkMerger } | null = null;
  private chunkGrad: { gate: GPUBuffer; up: GPUBuffer; down: GPUBuffer } | null = null;

  /** `per` = E·IE·H elements of one expert tensor of the trained layers (0: no MoE layer is trained, nothing to allocate). */
  constructor(private readonly run: ImportanceRun, private readonly chunks: [number, number][], private readonly per: number, private readonly transient = false) {
    this.chunked = per > 0 && chunks.length > 1;
    if (per && !transient) this.acquire();
  }

  /** The dense-gradient scratch (whole or one chunk), made when not there. */
  private acquire(): void {
    const { gpu, spec, s } = this.run;
    const b = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind: 'workspace' });
    if (this.chunked) {
      const kG = activeCount(s.frac, 2 * this.per), kD = activeCount(s.frac, this.per);
      this.topkSets ??= {
        runGate: new RunningTopk(gpu, kG, 'topk.run.gate'), runUp: new RunningTopk(gpu, kG, 'topk.run.up'), runDown: new RunningTopk(gpu, kD, 'topk.run.down'),
        merger: new TopkMerger(gpu, kG, this.run.topkWork),
      };
      const n = (this.chunks[0]![1] - this.chunks[0]![0]) * spec.moe.expertIntermediate * spec.hidden;
      this.chunkGrad ??= { gate: b('dense.chunk.gate', n), up: b('dense.chunk.up', n), down: b('dense.chunk.down', n) };
    } else this.dense ??= { G: b('denseG', 2 * this.per), D: b('denseD', this.per) };
  }

  /** transient: frees the dense-gradient scratch (and chunked: the top-k sets) after the recorded work (destroy waits for it). */
  private releaseDense(): void {
    if (!this.transient) return;
    const t = this.topkSets;
    const sets = t ? [t.runGate.val, t.runGate.idx, t.runUp.val, t.runUp.idx, t.runDown.val, t.runDown.idx, t.merger.candVal, t.merger.candIdx, t.merger.pick] : [];
    for (const x of [this.dense?.G, this.dense?.D, this.chunkGrad?.gate, this.chunkGrad?.up, this.chunkGrad?.down, ...sets]) x?.destroy();
    this.dense = null;
    this.chunkGrad = null;
    this.topkSets = null;
  }

  /**
   * idx of every selection (routed and shared) := top-k of Σ|grad| over the microbatches `importanceSamples`, at the
   * current weights. The scores of importanceGroup layers exist at once (default: all layers; 1 with 4-bit experts, whose
   * scores then live in the shared dense scratch): each group reruns the microbatches. The first selection, and
   * accumulatedReselect's reselections.
   */
  async rank(importanceSamples: number[][], onProgress?: OnProgress): Promise<void> {
    const { gpu, layers, shared } = this.run;
    const q4 = layers.some((l) => l.base.kind === 'q4');
    shared?.startImportance();
    // A reselection on a 4-bit base: Q4Base.load places the masters at idx until select(), so the new sets wait aside.
    const waiting = new Map<Selection, GPUBuffer>();
    const dest = (sel: Selection): GPUBuffer => {
      if (!q4 || !sel.host.length) return sel.idx;
      let b = waiting.get(sel);
      if (!b) waiting.set(sel, (b = createBuffer(gpu, { label: `${sel.name}.idx.new`, size: sel.k * 4, kind: 'workspace' })));
      return b;
    };
    const group = this.chunked ? layers.length : Math.max(1, this.run.s.importanceGroup ?? (q4 ? 1 : layers.length));
    if (this.chunked || group === 1) this.acquire();
    if (this.chunked) await this.chunkedImportance(importanceSamples, dest);
    // progress: one unit per microbatch pass (each group of layers reruns the microbatches)
    const passes = this.chunked ? 1 : Math.ceil(layers.length / group) * importanceSamples.length;
    let passed = 0;
    for (let g0 = 0; !this.chunked && g0 < layers.length; g0 += group) {
      const part = layers.slice(g0, g0 + group);
      const one = group === 1;
      const imp = new Map<TrainedLayer, [GPUBuffer, GPUBuffer]>(part.map((l) => [l, one
        ? [this.dense!.G, this.dense!.D]
        : [createBuffer(gpu, { label: 'impG', size: l.G.numel * 4, kind: 'workspace' }), createBuffer(gpu, { label: 'impD', size: l.D.numel * 4, kind: 'workspace' })]]));
      if (one) {
        const enc = new Encoder(gpu, 'importance.clear');
        enc.clear(this.dense!.G);
        enc.clear(this.dense!.D);
        enc.submit();
      }
      for (const samples of importanceSamples) {
        await this.densePass(samples, part, (l) => imp.get(l)!, 'abs');
        onProgress?.(++passed, passes);
        if (g0 === 0 && shared) {
          // shared experts: their |grad| from the first group's passes (every pass computes it)
          const e = new Encoder(gpu, 'shared.importance');
          shared.addImportance(e);
          e.submit();
        }
      }
      const enc = new Encoder(gpu, 'select.topk');
      for (const l of part) this.topk(enc, l, ...imp.get(l)!, dest);
      enc.submit();
      await gpu.device.queue.onSubmittedWorkDone();
      if (!one) for (const [g, d] of imp.values()) (g.destroy(), d.destroy());
    }
    if (this.chunked) onProgress?.(passes, passes);
    this.releaseDense();
    if (!waiting.size) return;
    const enc = new Encoder(gpu, 'select.idx');
    for (const [sel, b] of waiting) enc.copy(b, 0, sel.idx, 0, sel.k * 4);
    enc.submit();
    await gpu.device.queue.onSubmittedWorkDone();
    for (const b of waiting.values()) b.destroy();
  }

  /** idx of every routed selection := top-k of |grad| of one microbatch at the current weights (a reselection). */
  async rankByStep(samples: number[]): Promise<void> {
    const { layers } = this.run;
    this.acquire();
    if (this.chunked) await this.rankChunksInOnePass(samples, false, (sel) => sel.idx);
    else await this.densePass(samples, layers, () => [this.dense!.G, this.dense!.D], false, (e, l, dG, dD) => this.topk(e, l, dG, dD));
    this.releaseDense();
  }

  /**
   * One dense-gradient pass on `samples` for `layers`: each one's dense gradient goes into target(l) ([2·per] gate then
   * up, [per] down; assigned, or |grad| added with 'abs') and, when given, `consume` records right after that layer's
   * backward (before the next layer may overwrite a target shared by layers).
   */
  private async densePass(
    samples: number[],
    layers: TrainedLayer[],
    target: (l: TrainedLayer) => [GPUBuffer, GPUBuffer],
    accumulate: false | 'abs',
    consume?: (enc: Encoder, l: TrainedLayer, dG: GPUBuffer, dD: GPUBuffer) => void,
  ): Promise<number> {
    const run = this.run;
    const { ids, targets } = run.batch(samples);
    const per = run.layers[0]!.D.numel;
    const dense = (l: TrainedLayer): ExpertGradMode => {
      const [dG, dD] = target(l);
      return { kind: 'dense', dGate: { buffer: dG, offset: 0, size: per * 4 }, dUp: { buffer: dG, offset: per * 4, size: per * 4 }, dDown: dD, accumulate };
    };
    const r = await run.graph.pass(ids, run.s.microbatch, run.s.seq, {
      targets, cache: { cache: run.cache, samples }, dRouters: run.routers(false), frozenGrads: run.shared?.clearedGrads(), modes: run.modes((l) => (layers.includes(l) ? dense(l) : { kind: 'none' })),
      afterBackward: (enc, L) => {
        const l = layers.find((x) => x.layer === L);
        if (l && consume) consume(enc, l, ...target(l));
      },
    });
    return r.loss;
  }

  /**
   * Importance with the dense gradient in chunks of experts: per layer, per chunk, Σ|grad| of that chunk's experts over
   * the microbatches (one microbatch: a single pass for every chunk and layer; else each chunk reruns them: N_IMPORTANCE
   * passes per chunk and layer, and no memory beyond one chunk's gradient, where keeping every microbatch's per-row
   * gradients and inputs of a layer instead would take N_IMPORTANCE·T·K·(3·IE + H)·4 bytes), offered to the exact top-k
   * over chunks; the new sets go to dest(sel).
   */
  private async chunkedImportance(importanceSamples: number[][], dest: (sel: Selection) => GPUBuffer): Promise<void> {
    const { gpu, shared } = this.run;
    if (importanceSamples.length === 1) {
      // One microbatch: Σ|grad| is its |grad|, whose per-row gradients serve every chunk of every layer, so one pass ranks
      // them all (as rankByStep does): each chunk's gradient cleared, added as |.|, and offered right after the layer's
      // backward, in the same order as chunk by chunk; the same sets, without rerunning the forward and backward per
      // chunk and layer.
      await this.rankChunksInOnePass(importanceSamples[0]!, 'abs', dest);
      if (shared) {
        const e = new Encoder(gpu, 'shared.importance');
        shared.addImportance(e);
        e.submit();
      }
      await gpu.device.queue.onSubmittedWorkDone();
      return;
    }
    for (const [i, l] of this.run.layers.entries()) {
      for (let c = 0; c < this.run.q4.chunks.length; c++) {
        let enc = new Encoder(gpu, 'importance.clear');
        for (const b of Object.values(this.chunkGrad!)) enc.clear(b);
        enc.submit();
        for (const samples of importanceSamples) {
          await this.chunkedPass(samples, [l], (e) => this.denseChunkGrads(e, l, c, 'abs'));
          if (i === 0 && c === 0 && shared) {
            // shared experts: their |grad| from the first layer's first chunk's passes (every pass computes it)
            const e = new Encoder(gpu, 'shared.importance');
            shared.addImportance(e);
            e.submit();
          }
        }
        enc = new Encoder(gpu, 'select.topk');
        this.offerChunk(enc, l, c);
        enc.submit();
      }
      const enc = new Encoder(gpu, 'select.topk');
      this.finishTopk(enc, l, dest);
      enc.submit();
      await gpu.device.queue.onSubmittedWorkDone();
    }
  }

  /**
   * One pass on `samples` ranks every chunk of every trained layer: right after a layer's backward, each chunk's dense
   * gradient (assigned, or cleared and added as |.| with 'abs') is offered to the running top-k, then the sets go to
   * dest(sel).
   */
  private async rankChunksInOnePass(samples: number[], accumulate: false | 'abs', dest: (sel: Selection) => GPUBuffer): Promise<void> {
    await this.chunkedPass(samples, this.run.layers, (e, l) => {
      this.run.q4.chunks.forEach((_, c) => {
        if (accumulate) for (const b of Object.values(this.chunkGrad!)) e.clear(b);
        this.denseChunkGrads(e, l, c, accumulate);
        this.offerChunk(e, l, c);
      });
      this.finishTopk(e, l, dest);
    });
  }

  /**
   * One pass on `samples` with no expert weight gradients in the backward (per-row gradients of `layers` only: mode
   * 'rows'); `consume` is recorded right after each of `layers`' backward, while its per-row gradients are still in the
   * backward workspace.
   */
  private async chunkedPass(samples: number[], layers: TrainedLayer[], consume: (enc: Encoder, l: TrainedLayer) => void): Promise<number> {
    const run = this.run;
    const { ids, targets } = run.batch(samples);
    const r = await run.graph.pass(ids, run.s.microbatch, run.s.seq, {
      targets, cache: { cache: run.cache, samples }, dRouters: run.routers(false), frozenGrads: run.shared?.clearedGrads(), modes: run.modes((l) => (layers.includes(l) ? { kind: 'rows' } : { kind: 'none' })),
      afterBackward: (enc, L) => {
        const l = layers.find((x) => x.layer === L);
        if (l) consume(enc, l);
      },
    });
    return r.loss;
  }

  /** Dense gradient of chunk c's experts (=, or += |.| with 'abs') into the chunk gradient, from the layer's last backward. */
  private denseChunkGrads(enc: Encoder, l: TrainedLayer, c: number, accumulate: false | 'abs'): void {
    const { graph, spec } = this.run;
    const dc = this.chunkGrad!;
    const a = graph.acts[graph.trained.indexOf(l.layer)]!;
    const wk = graph.work;
    const d = { ...expertDims(spec, this.run.T, 'f32'), experts: this.run.q4.chunks[c]! };
    expertsBackwardWeights(enc, { gate: dc.gate, up: dc.up, down: dc.down }, a.hn, a, { dY: wk.dY, dG: wk.dG, dU: wk.dU, dXr: a.Y },
      { offsets: a.offsets, slot: a.slot, rowPair: a.rowPair, tiles: a.tiles }, d, accumulate);
  }

  /** Offers chunk c's dense gradient (in the chunk gradient) to the running top-k sets of gate, up and down. */
  private offerChunk(enc: Encoder, l: TrainedLayer, c: number): void {
    const dc = this.topkSets!;
    const g = this.chunkGrad!;
    const [e0, e1] = this.run.q4.chunks[c]!;
    const one = this.run.spec.moe.expertIntermediate * this.run.spec.hidden;
    const n = (e1 - e0) * one;
    dc.merger.offer(enc, dc.runGate, g.gate, n, e0 * one);
    dc.merger.offer(enc, dc.runUp, g.up, n, l.D.numel + e0 * one);
    dc.merger.offer(enc, dc.runDown, g.down, n, e0 * one);
  }

  /** G := top-k of gate ∪ up (every up index is above every gate index), D := top-k of down; into dest(sel). */
  private finishTopk(enc: Encoder, l: TrainedLayer, dest: (sel: Selection) => GPUBuffer): void {
    const dc = this.topkSets!;
    dc.merger.append(enc, dc.runGate, dc.runUp);
    dc.runUp.have = 0;
    dc.merger.finish(enc, dest(l.G), dc.runGate);
    dc.merger.finish(enc, dest(l.D), dc.runDown);
  }

  /** idx of G and D = top-k of |scores|. */
  private topk(enc: Encoder, l: TrainedLayer, sg: GPUBuffer, sd: GPUBuffer, dest = (sel: Selection) => sel.idx): void {
    const work = this.run.topkWork;
    topkSelect(enc, dest(l.G), sg, work, l.G.numel, l.G.k);
    topkSelect(enc, dest(l.D), sd, work, l.D.numel, l.D.k);
  }
}
