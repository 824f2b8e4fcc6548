// The seed's training method on the GPU (docs/method.md): importance → top-k selection per tensor, SparseAdam over compact
// masters of the active entries, router SGD with momentum, RigL-style reselection, warm-up + cosine LR, skipped
// non-finite steps, periodic in-domain and held-out evaluation. Weights and optimizer state stay on the GPU.
// The parts: selection.ts (the selection tensors), importance.ts (which entries become active), q4-base.ts (experts in
// chunks, the 4-bit base), state.ts (checkpoint and export), sorted-sets.ts, rng.ts.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readU32, writeBuffer } from '../gpu/buffers.ts';
import type { TrainCheckpoint } from './checkpoint-file.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { ModelWeights } from './weights.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { assertFits, isFused, overlayCapacity, splitExperts, withExpertChunk, type PlanSettings } from '../plan/memory.ts';
import { withHeadRows } from '../plan/head.ts';
import { TrainGraph } from './graph.ts';
import { FrozenCache } from './frozen-cache.ts';
import type { ExpertGradMode } from './backward.ts';
import { activeCount, isReselectStep, learningRate } from './schedule.ts';
import { TOPK_WORKSPACE_WORDS } from '../ops/topk.ts';
import { adamBiasTable, checkFinite, gatherMasters, routerSgd, scatterMasters } from '../ops/adam.ts';
import { SharedTraining } from './shared-train.ts';
import { evaluateFromStore, type WindowStore } from './frozen-pass.ts';
import { planSettings, type TrainSettings } from './settings.ts';
import type { OnProgress, ReselectRecord, SampleSet, StepRecord } from './types.ts';
import { drawBatches, importanceRng, Rng } from './rng.ts';
import { setMinus } from './sorted-sets.ts';
import { Selection, type KeptState, type TrainedLayer } from './selection.ts';
import { Importance } from './importance.ts';
import { Q4Base, expertScratch, type ExpertScratch } from './q4-base.ts';
import { changedTensors, restore, snapshot, valuesAt } from './state.ts';
import { costScope } from '../gpu/cost.ts';
import { ReadbackRing } from '../gpu/ring.ts';
import { GpuSpan, SPAN_BYTES, spanSeconds } from '../gpu/timing.ts';
import { XENT_IGNORE } from '../ops/xent.ts';

/** The readback slot: the non-finite flag at 0, the step's timestamps at SPAN_AT, then each microbatch's loss rows [T]. */
const SPAN_AT = 8;
const ROWS_AT = SPAN_AT + SPAN_BYTES;

/** A submitted step whose outcome is not read yet: what its record needs besides the readback. */
interface PendingStep {
  step: number;
  lr: number;
  tokens: number;
  /** Each microbatch's targets (XENT_IGNORE rows do not count in the loss). */
  masks: Uint32Array[];
  /** Wall seconds since the previous step's final submit (or this step's start). */
  wall: number;
  /** Wall seconds of the step's reselection (not in its timestamps). */
  extra: number;
  read: Promise<ArrayBuffer>;
}

export class Trainer {
  readonly graph: TrainGraph;
  readonly layers: TrainedLayer[] = [];
  readonly cache: FrozenCache;
  readonly topkWork: GPUBuffer;
  readonly flag: GPUBuffer; // [1] u32: non-finite seen this step
  /** Shared-expert selections (null unless trainShared and the model has shared experts). */
  readonly shared: SharedTraining | null;
  step = 0; // last completed step
  adamT = 0;
  skipped = 0;
  routerHasBuf = false;
  turnovers: number[] = [];
  rng: Rng;
  /** accumulatedReselect: the importance stream, past the first selection's N_IMPORTANCE microbatches (saved in checkpoints). */
  readonly impRng: Rng;
  order: Uint32Array;
  cursor = 0;
  epoch = 0;
  readonly T: number;
  /** Set to an object to collect wall time per phase (syncs between phases: slower; for the bench). */
  phases: Record<string, number> | null = null;
  /** The memory plan's settings of this run (taken before the trained layers' experts are replaced). */
  readonly planned: PlanSettings;
  /** The importance passes and their dense-gradient scratch. */
  readonly importance: Importance;
  /**
   * 4-bit experts on the materialized path (fusedExperts false): the one f32 scratch every trained layer's current
   * weights are materialized into, one chunk of experts at a time, held for the run: gu = [gate | up] of `cap` experts
   * each ([2, cap, IE, H]), down [cap, H, IE]. Null on the fused path (Q4Base makes one for a selection or an export).
   */
  readonly scratch: ExpertScratch | null = null;
  /** 4-bit experts on the fused path (the default): steps read the 4-bit W0 plus the sparse correction. */
  readonly fused: boolean = false;
  /** The expert chunks [e0, e1) of a trained layer (one chunk = all experts unless 4-bit with a smaller expertChunk). */
  readonly chunks: [number, number][];
  /** The trained experts chunk by chunk, and the 4-bit base's materialization. */
  readonly q4: Q4Base;
  /** perEntryStep: Adam's bias corrections by step count, [2·(steps + 1)] (adamBiasTable). */
  readonly adamBias: GPUBuffer | null = null;
  /** Eval sets whose inputs of layer trainFrom are stored (frozen-pass.ts): evaluate runs only the trained layers. */
  readonly evalStores = new Map<SampleSet, { store: WindowStore; count: number }>();
  /** Frozen layers are streamed (not on the GPU): every sample's frozen output is cached by the layer-major pass. */
  readonly streamed: boolean;
  /** Each step's readback: non-finite flag (u32 at 0), timestamps (SPAN_AT), loss rows of every microbatch (ROWS_AT). */
  private readonly ring: ReadbackRing;
  /** The step's GPU time from timestamp queries (null without the feature: wall time between step submissions). */
  private readonly span: GpuSpan | null;
  /** The last submitted step, until its readback is taken (runStep, flush). */
  private pending: PendingStep | null = null;
  /** performance.now() at the last step's final submit (null after a flush: the next step times from its start). */
  private lastSubmit: number | null = null;

  constructor(readonly gpu: GpuContext, readonly spec: ModelSpec, readonly weights: ModelWeights, readonly s: TrainSettings, readonly data: SampleSet) {
    if (data.seq !== s.seq) throw new Error(`samples are ${data.seq} tokens, settings say SEQ ${s.seq}`);
    const lim = gpu.device.limits;
    const maxBinding = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    this.planned = withHeadRows(spec, withExpertChunk(spec, planSettings(s, data.count, weights), s.gpuBytes, maxBinding), s.gpuBytes, maxBinding);
    if (s.gpuBytes !== undefined) assertFits(spec, this.planned, s.gpuBytes);
    if (s.expertChunk !== undefined && !this.planned.quantizeExperts && s.expertChunk < spec.moe.numExperts) throw new Error('expertChunk applies to 4-bit experts (quantizeExperts) only');
    this.chunks = splitExperts(spec.moe.numExperts, this.planned.expertChunk);
    this.T = s.microbatch * s.seq;
    this.graph = new TrainGraph(gpu, spec, weights, s.trainFrom, this.T, this.planned.headRows);
    this.streamed = weights.layers.some((l) => l.streamed);
    // streamed: every sample is cached, in host memory (the GPU holds only the trained layers)
    const cached = s.trainFrom === 0 ? 0 : this.streamed ? data.count : Math.min(s.frozenCacheN, data.count);
    this.cache = new FrozenCache(gpu, cached, s.seq, spec.hidden, `${spec.arch}:${s.trainFrom}:${s.seq}`, this.streamed ? 'host' : 'gpu');
    this.topkWork = createBuffer(gpu, { label: 'topk.work', size: TOPK_WORKSPACE_WORDS * 4, kind: 'workspace' });
    this.flag = createBuffer(gpu, { label: 'finite.flag', size: 4, kind: 'workspace' });
    this.ring = new ReadbackRing(gpu, ROWS_AT + s.accum * this.T * 4, 2, 'train.step.readback');
    this.span = GpuSpan.create(gpu);
    this.rng = new Rng(s.seed >>> 0);
    this.order = this.rng.shuffle(data.count);
    this.impRng = importanceRng(s.seed);
    drawBatches(this.impRng, s.nImportance, s.microbatch, data.count);
    if (s.perEntryStep) {
      this.adamBias = createBuffer(gpu, { label: 'adam.bias', size: 2 * (s.steps + 1) * 4, kind: 'optimizer' });
      writeBuffer(gpu, this.adamBias, 0, adamBiasTable(s.steps));
    }
    const { numExperts: E, expertIntermediate: IE } = spec.moe;
    const H = spec.hidden;
    const per = E * IE * H;
    const enc = new Encoder(gpu, 'trainer.init');
    const retired: GPUBuffer[] = [];
    const moeLayers = this.graph.trained.filter((L) => spec.layers[L]!.mlp === 'moe');
    const q4 = moeLayers.length > 0 && weights.layers[moeLayers[0]!]!.experts!.gate.dtype === 'q4';
    this.fused = q4 && isFused(this.planned);
    if (moeLayers.length) {
      if ((per * 4) % gpu.device.limits.minStorageBufferOffsetAlignment) throw new Error(`expert tensor of ${per} elements is not aligned for a buffer binding`);
      if (q4 && !this.fused) this.scratch = expertScratch(gpu, spec, this.chunks[0]![1] - this.chunks[0]![0]);
      else if (!q4 && this.chunks.length > 1) throw new Error('expertChunk applies to 4-bit experts only');
    }
    this.importance = new Importance(this, this.chunks, moeLayers.length ? per : 0, this.fused);
    this.q4 = new Q4Base(gpu, spec, this.chunks, this.scratch);
    for (const L of moeLayers) {
      const lw = weights.layers[L]!;
      const ex = lw.experts!;
      const f = (label: string, n: number, kind: string) => createBuffer(gpu, { label: `L${L}.${label}`, size: n * 4, kind });
      let gu: GPUBuffer | null = null, down: GPUBuffer | null = null, base: TrainedLayer['base'];
      if (q4) {
        if (ex.gate.dtype !== 'q4') throw new Error(`layer ${L}: expert weights must all be 4-bit or none`);
        // The layer keeps only its 4-bit base; forward and backward read it (fused) or the scratch, materialized right before.
        base = { kind: 'q4', experts: ex };
        if (this.scratch) {
          const sc = this.scratch;
          const upAt = sc.cap * IE * H;
          lw.experts = { gate: { buf: sc.gu, dtype: 'f32', shape: ex.gate.shape, offset: 0 }, up: { buf: sc.gu, dtype: 'f32', shape: ex.up.shape, offset: upAt }, down: { buf: sc.down, dtype: 'f32', shape: ex.down.shape, offset: 0 } };
        }
      } else {
        if (ex.gate.dtype !== 'f32') throw new Error(`layer ${L}: trained expert weights must be loaded as f32 (loadWeights f32ExpertLayers)`);
        // gate and up move into one buffer so that the G selection tensor is one index space.
        gu = f('gate_up', 2 * per, 'weights');
        enc.copy(ex.gate.buf, ex.gate.offset * 4, gu, 0, per * 4);
        enc.copy(ex.up.buf, ex.up.offset * 4, gu, per * 4, per * 4);
        const baseGu = f('base.gate_up', 2 * per, 'weights');
        const baseDown = f('base.down', per, 'weights');
        enc.copy(gu, 0, baseGu, 0, 2 * per * 4);
        enc.copy(ex.down.buf, ex.down.offset * 4, baseDown, 0, per * 4);
        retired.push(ex.gate.buf, ex.up.buf);
        down = ex.down.buf;
        base = { kind: 'f32', gu: baseGu, down: baseDown };
        lw.experts = { gate: { buf: gu, dtype: 'f32', shape: ex.gate.shape, offset: 0 }, up: { buf: gu, dtype: 'f32', shape: ex.up.shape, offset: per }, down: { buf: down, dtype: 'f32', shape: ex.down.shape, offset: 0 } };
      }
      this.layers.push({
        layer: L,
        gu,
        down,
        base,
        G: new Selection(gpu, `L${L}.G`, 2 * per, activeCount(s.frac, 2 * per), !!s.perEntryStep, q4 ? overlayCapacity(s, 2 * per) : null, !this.fused),
        D: new Selection(gpu, `L${L}.D`, per, activeCount(s.frac, per), !!s.perEntryStep, q4 ? overlayCapacity(s, per) : null, !this.fused),
        router: lw.t.router!.buf,
        dRouter: f('dRouter', E * H, 'workspace'),
        routerBuf: f('routerBuf', E * H, 'optimizer'),
      });
    }
    if (this.fused) for (const l of this.layers) this.q4.addTables(l);
    if (q4) for (const l of this.layers) weights.layers[l.layer]!.expertChunks = { ranges: this.chunks, load: (e, c) => this.q4.load(e, l, c), ...(this.fused ? { fused: (e: Encoder, delta: boolean) => this.q4.fused(e, l, delta) } : {}) };
    enc.submit();
    // The loaded gate/up buffers were copied into gu by the submitted work; WebGPU frees them once it has run.
    for (const b of retired) b.destroy();
    this.shared = SharedTraining.create(gpu, spec, weights, this.graph.trained, s.frac, !!s.trainShared, this.adamBias ? { bias: this.adamBias, tMax: s.steps } : null);
  }

  /** Trainable parameter count: active expert entries + router weights. */
  get trainableParams(): number {
    const r = this.spec.moe.numExperts * this.spec.hidden;
    return this.layers.reduce((a, l) => a + l.G.k + l.D.k + r, 0) + (this.shared?.trainableParams ?? 0);
  }

  /** The next microbatch's sample indices (epoch-wise seeded shuffle). */
  nextSamples(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.s.microbatch; i++) {
      if (this.cursor >= this.order.length) {
        this.epoch++;
        this.order = this.rng.shuffle(this.data.count);
        this.cursor = 0;
      }
      out.push(this.order[this.cursor++]!);
    }
    return out;
  }

  /** Ids and targets of these samples, sample-major. */
  batch(samples: number[]): { ids: Uint32Array; targets: Uint32Array } {
    const ids = new Uint32Array(samples.length * this.s.seq);
    const targets = new Uint32Array(samples.length * this.s.seq);
    samples.forEach((x, i) => this.data.fill(x, ids, targets, i * this.s.seq));
    return { ids, targets };
  }

  /** Modes for every trained layer (dense layers get none). */
  modes(make: (l: TrainedLayer) => ExpertGradMode): ExpertGradMode[] {
    return this.graph.trained.map((L) => {
      const l = this.layers.find((x) => x.layer === L);
      return l ? make(l) : { kind: 'none' };
    });
  }

  /** A training step's modes: expert gradients at the active entries only. */
  private sparseModes(): ExpertGradMode[] {
    return this.modes((l) => ({ kind: 'sparse', idxG: l.G.idx, nG: l.G.k, gradG: l.G.grad, idxD: l.D.idx, nD: l.D.k, gradD: l.D.grad }));
  }

  /** Router-gradient buffers of the trained layers (none unless `on`). */
  routers(on: boolean): (GPUBuffer | null)[] {
    return this.graph.trained.map((L) => (on ? this.layers.find((x) => x.layer === L)?.dRouter ?? null : null));
  }

  /**
   * Importance (Σ|grad| over N_IMPORTANCE microbatches at W0, summed by the weight-gradient kernel itself) → first active
   * sets, masters from W0 (importance.ts).
   */
  async init(importanceSamples: number[][], onProgress?: OnProgress): Promise<void> {
    await this.importance.rank(importanceSamples, onProgress);
    await this.select(false);
  }

  /**
   * New active sets (idx, already selected by top-k); grown entries restart from W0 (when `resetGrown`), masters gathered
   * from the current weights, Adam state cleared. Returns the turnover of each tensor (share of the new set not in the old).
   */
  private async select(resetGrown: boolean): Promise<number[]> {
    const turnovers: number[] = [];
    const keep = resetGrown && !!this.s.keepAdamState;
    const kept = new Map<Selection, KeptState>();
    if (keep) for (const l of this.layers) for (const sel of [l.G, l.D]) kept.set(sel, await sel.kept());
    for (const l of this.layers) {
      const fresh = { G: await readU32(this.gpu, l.G.idx, 0, l.G.k), D: await readU32(this.gpu, l.D.idx, 0, l.D.k) };
      const scratch: GPUBuffer[] = []; // this layer's: destroyed after its work is submitted (freed once it is done)
      const q4 = l.base.kind === 'q4' ? this.q4.selectValues(l, fresh, resetGrown, scratch) : null;
      const enc = new Encoder(this.gpu, 'select.masters');
      for (const [sel, w, base] of [[l.G, l.gu, l.base.kind === 'f32' ? l.base.gu : null], [l.D, l.down, l.base.kind === 'f32' ? l.base.down : null]] as const) {
        const fr = sel === l.G ? fresh.G : fresh.D;
        const grown = setMinus(fr, sel.host);
        if (base && resetGrown && grown.length) {
          const idx = createBuffer(this.gpu, { label: 'grown.idx', size: grown.length * 4 });
          writeBuffer(this.gpu, idx, 0, grown);
          scratch.push(idx);
          const vals = createBuffer(this.gpu, { label: 'grown.vals', size: grown.length * 4 });
          scratch.push(vals);
          gatherMasters(enc, vals, base, idx, grown.length, { dtype: 'f32' });
          scatterMasters(enc, w!, vals, idx, null, grown.length, { dtype: 'f32' });
        }
        turnovers.push(sel.adopt(fr));
        const v = q4?.get(sel);
        if (v) {
          const dropped = setMinus(sel.touched, fr);
          this.q4.writeOverlay(sel, dropped);
          if (dropped.length) enc.copy(v.overlay, 0, sel.overlay!.val, 0, dropped.length * 4);
          enc.copy(v.master, 0, sel.master, 0, sel.k * 4);
        } else gatherMasters(enc, sel.master, w!, sel.idx, sel.k, { dtype: 'f32' });
        sel.resetMoments(enc, fr, kept.get(sel));
      }
      enc.submit();
      this.q4.release(); // (fused: the next layer makes its scratch anew: one layer's work at a time)
      for (const b of scratch) b.destroy();
    }
    if (this.shared) turnovers.push(...(await this.shared.select(this.topkWork, resetGrown, keep)));
    if (!keep) this.adamT = 0;
    await this.gpu.device.queue.onSubmittedWorkDone();
    return turnovers;
  }


  /**
   * One training step s (1-based), waiting for its own record: runStep, then flush (one mapAsync, no queue drain). Tests
   * and benches that look at each step's loss; a run pipelines with runStep.
   */
  async trainStep(): Promise<{ record: StepRecord; reselect: ReselectRecord | null }> {
    if (this.pending) throw new Error('trainStep: the last runStep is not read yet (flush first)');
    const { reselect } = await this.runStep();
    return { record: (await this.flush())!, reselect };
  }

  /**
   * One training step s (1-based): reselection when due, ACCUM microbatches, then the update, which the optimizer kernels
   * skip on the GPU when a gradient or loss row is non-finite (the flag). Nothing is awaited on a normal step but the
   * readback of step s - 1 (loss rows, flag, timestamps, mapped when it was submitted), taken after step s's passes are
   * submitted; step s's own record comes with the next runStep or flush. Returns step s - 1's record (null if none was
   * pending) and step s's reselection.
   */
  async runStep(): Promise<{ done: StepRecord | null; reselect: ReselectRecord | null }> {
    const s = this.step + 1;
    const t0 = performance.now();
    const batches = Array.from({ length: this.s.accum }, () => this.nextSamples());
    let reselect: ReselectRecord | null = null;
    let done: StepRecord | null = null;
    let wallExtra = 0;
    if (isReselectStep(s, this.s.reselectEvery)) {
      done = await this.collect(); // the selection resets the step count: the last step's outcome first
      const tRes = performance.now();
      costScope(this.gpu.device, 'reselection');
      if (this.s.accumulatedReselect) {
        // the step's own microbatch + N_IMPORTANCE - 1 more from the importance stream, as the first selection
        await this.importance.rank([batches[0]!, ...drawBatches(this.impRng, this.s.nImportance - 1, this.s.microbatch, this.data.count)]);
      } else await this.importance.rankByStep(batches[0]!);
      const turnovers = await this.select(true);
      const turnover = turnovers.reduce((a, b) => a + b, 0) / Math.max(1, turnovers.length);
      this.turnovers.push(turnover);
      reselect = { step: s, turnover, turnovers };
      costScope(this.gpu.device, null);
      wallExtra = performance.now() - tRes;
      if (this.phases) this.phases.reselection = (this.phases.reselection ?? 0) + wallExtra;
    }
    const slot = this.ring.slot();
    const enc = new Encoder(this.gpu, 'optimizer');
    this.span?.begin(enc);
    for (const l of this.layers) {
      enc.clear(l.G.grad);
      enc.clear(l.D.grad);
      enc.clear(l.dRouter);
    }
    enc.clear(this.flag);
    this.shared?.clearGrads(enc);
    enc.submit();
    const T = this.T;
    const masks: Uint32Array[] = [];
    let tokens = 0;
    for (const [i, samples] of batches.entries()) {
      const { ids, targets } = this.batch(samples);
      masks.push(targets);
      await this.graph.pass(ids, this.s.microbatch, this.s.seq, {
        ...this.stepPass(samples, targets),
        phases: this.phases ?? undefined,
        lossRows: (e, rows) => {
          e.section = 'optimizer';
          checkFinite(e, this.flag, rows, T); // a non-finite loss skips the step as a non-finite gradient does
          e.copy(rows, 0, slot, ROWS_AT + i * T * 4, T * 4);
          if (i === batches.length - 1) this.checkGradients(e, slot);
        },
      });
      tokens += this.s.microbatch * this.s.seq;
    }
    const tOpt = performance.now();
    // Step s - 1's outcome decides Adam's step count and the router's momentum start: read while the GPU runs step s.
    if (this.pending) done = await this.collect();
    const enc2 = new Encoder(this.gpu, 'optimizer');
    const lr = learningRate(s, this.s.steps, this.s.lrPeak);
    this.encodeUpdate(enc2, lr, this.adamT + 1); // Adam's t is counted on the host once the step is known to be applied
    if (this.span) this.span.end(enc2, slot, SPAN_AT);
    enc2.submit();
    const now = performance.now();
    if (this.phases) {
      await this.gpu.device.queue.onSubmittedWorkDone(); // the bench's per-phase wall times only
      this.phases.optimizer = (this.phases.optimizer ?? 0) + performance.now() - tOpt;
    }
    const wall = (now - (this.lastSubmit ?? t0)) / 1000;
    this.lastSubmit = now;
    this.pending = { step: s, lr, tokens, masks, wall, extra: wallExtra / 1000, read: this.ring.send() };
    this.step = s;
    return { done, reselect };
  }

  /** The update of every trained value from its gradient; each kernel does nothing when `this.flag` is set. */
  private encodeUpdate(enc: Encoder, lr: number, t: number): void {
    for (const l of this.layers) {
      for (const [sel, w] of [[l.G, l.gu], [l.D, l.down]] as const) {
        sel.update(enc, lr, t, this.s.wd, this.adamBias && { bias: this.adamBias, tMax: this.s.steps }, this.flag);
        if (w) scatterMasters(enc, w, sel.master, sel.idx, this.flag, sel.k, { dtype: 'f32' }); // 4-bit: the fused Δ or Q4Base.load does it
      }
      routerSgd(enc, l.router, l.routerBuf, l.dRouter, this.flag, l.dRouter.size / 4, { lr, weightDecay: this.s.wd, hasBuf: this.routerHasBuf });
    }
    this.shared?.update(enc, lr, t, this.s.wd, this.flag);
  }

  /** The step's non-finite checks of every gradient into the flag, copied to the readback slot at 0. */
  private checkGradients(enc: Encoder, slot: GPUBuffer): void {
    for (const l of this.layers) {
      checkFinite(enc, this.flag, l.G.grad, l.G.k);
      checkFinite(enc, this.flag, l.D.grad, l.D.k);
      checkFinite(enc, this.flag, l.dRouter, l.dRouter.size / 4);
    }
    this.shared?.gatherAndCheck(enc, this.flag);
    enc.copy(this.flag, 0, slot, 0, 4);
  }

  /**
   * Reads the last submitted step's outcome (waiting for its GPU work) and returns its record, null if none is pending.
   * Its update was applied on the GPU unless flagged non-finite: Adam's step count, the skip count and the router's
   * momentum follow here. Call before anything that reads the trainer's state (evaluation, checkpoint, end of a run).
   */
  async flush(): Promise<StepRecord | null> {
    this.lastSubmit = null; // the next step's wall time starts with it, not here
    return this.collect();
  }

  private async collect(): Promise<StepRecord | null> {
    const p = this.pending;
    if (!p) return null;
    this.pending = null;
    const bytes = await p.read;
    const finite = new Uint32Array(bytes, 0, 1)[0] === 0;
    if (finite) {
      this.adamT++;
      this.routerHasBuf = true;
    } else this.skipped++;
    const rows = new Float32Array(bytes, ROWS_AT, p.masks.length * this.T);
    let loss = 0;
    p.masks.forEach((targets, i) => {
      let sum = 0;
      let valid = 0;
      targets.forEach((x, j) => {
        if (x !== XENT_IGNORE) (sum += rows[i * this.T + j]!, valid++);
      });
      loss += sum / Math.max(1, valid) / p.masks.length;
    });
    // GPU time of the step (plus its reselection's wall time) from timestamps; else wall time between step submissions
    const gpuSec = this.span ? spanSeconds(bytes, SPAN_AT) : null;
    const sec = gpuSec !== null ? gpuSec + p.extra : p.wall;
    return { step: p.step, loss, lr: p.lr, finite, sec, tok_s: p.tokens / sec };
  }

  /**
   * A normal step's work on the first samples with its update skipped: compiles the step's kernels on a fresh device,
   * so that a resumed run's first step is timed on its own. Changes no trained state: the pass's gradients are cleared
   * by the next step, the update runs with the non-finite flag set (every optimizer kernel then leaves its values and
   * state as they are, as for a skipped step), the data order is not touched, and the frozen cache (used as a step uses
   * it: streamed frozen layers are not on the GPU) only gains the rows of these samples, which never change.
   */
  async warmUp(): Promise<void> {
    const samples = Array.from({ length: this.s.microbatch }, (_, i) => i % this.data.count);
    const { ids, targets } = this.batch(samples);
    await this.graph.pass(ids, this.s.microbatch, this.s.seq, {
      ...this.stepPass(samples, targets),
      lossRows: (e, rows) => checkFinite(e, this.flag, rows, this.T),
    });
    this.gpu.device.queue.writeBuffer(this.flag, 0, new Uint32Array([1]));
    const enc = new Encoder(this.gpu, 'optimizer');
    this.encodeUpdate(enc, learningRate(this.step + 1, this.s.steps, this.s.lrPeak), this.adamT + 1);
    enc.clear(this.flag);
    enc.submit();
    await this.gpu.device.queue.onSubmittedWorkDone();
  }

  /** A training step's pass over `samples`: their cached frozen rows, router and selected entries' gradients. */
  private stepPass(samples: number[], targets: Uint32Array) {
    return {
      targets,
      cache: { cache: this.cache, samples },
      dRouters: this.routers(true),
      modes: this.sparseModes(),
      frozenGrads: this.shared?.grads,
      gradScale: 1 / this.s.accum,
    };
  }

  /** Mean loss over the windows of a sample set (forward only, current weights). */
  async evaluate(set: SampleSet, maxWindows: number | null, onProgress?: OnProgress): Promise<{ loss: number; ppl: number; tokens: number }> {
    const n = Math.min(set.count, maxWindows ?? set.count);
    const B = this.s.microbatch;
    const stored = this.evalStores.get(set);
    if (stored && stored.count >= n) {
      const r = await evaluateFromStore(this.graph.fwd, this.spec, this.s.trainFrom, set, n, B, stored.store, onProgress);
      const loss = r.sum / Math.max(1, r.tokens);
      return { loss, ppl: Math.exp(loss), tokens: r.tokens };
    }
    if (this.streamed) throw new Error('frozen layers are streamed: fill the frozen cache (frozen-pass.ts) before evaluating');
    let sum = 0;
    let tokens = 0;
    for (let w = 0; w < n; w += B) {
      const count = Math.min(B, n - w);
      const ids = new Uint32Array(count * set.seq);
      const targets = new Uint32Array(count * set.seq);
      for (let i = 0; i < count; i++) set.fill(w + i, ids, targets, i * set.seq);
      const r = await this.graph.fwd.run(ids, count, set.seq, { targets });
      sum += r.sumLoss;
      tokens += r.tokens;
      onProgress?.(w + count, n);
    }
    const loss = sum / Math.max(1, tokens);
    return { loss, ppl: Math.exp(loss), tokens };
  }

  // ---------------------------------------------------------------------------------------------
  // Checkpoint and export (state.ts)

  /** Everything needed to continue this run exactly (read back from the GPU). */
  snapshot(settings: Record<string, unknown>, log: object[]): Promise<TrainCheckpoint> {
    if (this.pending) throw new Error(`snapshot: step ${this.pending.step} is not read yet (flush first)`);
    return snapshot(this, settings, log);
  }

  /** Continue from a snapshot: weights = base with every touched entry restored, optimizer and data state as saved. */
  restore(c: TrainCheckpoint): Promise<void> {
    return restore(this, c);
  }

  /**
   * Full current values of the trained tensors, by checkpoint name (per-expert or fused, as the spec names them). With
   * `onto` (4-bit runs), entries never trained keep that checkpoint's values instead of the dequantized base's.
   */
  changedTensors(onto?: Checkpoint, opts?: { skipQ4Experts?: boolean }): Promise<Map<string, Float32Array>> {
    return changedTensors(this, onto, opts);
  }

  /** A trained layer's current weights at every entry ever trained in index space G or D (memory: those entries only). */
  touchedValues(l: TrainedLayer, space: 'G' | 'D'): Promise<Float32Array> {
    return valuesAt(this, l, l[space], l[space].touched);
  }
}
