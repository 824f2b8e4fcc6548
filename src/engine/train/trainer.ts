// The seed's training method on the GPU (METHOD.md): importance → top-k selection per tensor, SparseAdam over compact
// masters of the active entries, router SGD with momentum, RigL-style reselection, warm-up + cosine LR, skipped
// non-finite steps, periodic in-domain and held-out evaluation. Weights and optimizer state stay on the GPU.
//
// Per trained MoE layer, two selection tensors: G = gate and up of all experts ([2, E, IE, H] flat), D = down ([E, H, IE]).

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, readU32, writeBuffer } from '../gpu/buffers.ts';
import type { TrainCheckpoint, LayerState as SavedLayer } from './checkpoint-file.ts';
import { TRAIN_CHECKPOINT_VERSION } from './checkpoint-file.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import { readWeight, type ExpertWeights, type ModelWeights } from './weights.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { decodeF32 } from '../io/dtype.ts';
import { dequantizeExperts } from '../quant/experts-q4.ts';
import { assertFits, overlayCapacity, splitExperts, withExpertChunk, type PlanSettings } from '../plan/memory.ts';
import { TrainGraph } from './graph.ts';
import { FrozenCache } from './frozen-cache.ts';
import type { ExpertGradMode } from './backward.ts';
import { activeCount, isReselectStep, learningRate } from './schedule.ts';
import { topkSelect, TOPK_WORKSPACE_WORDS } from '../ops/topk.ts';
import { expertsBackwardWeights } from '../ops/experts.ts';
import { expertDims } from './forward.ts';
import { RunningTopk, TopkMerger } from './chunked-topk.ts';
import { adamBiasTable, checkFinite, gatherMasters, routerSgd, scatterMasters, sparseAdam, sparseAdamEntryT } from '../ops/adam.ts';
import { hasSharedState, SharedTraining } from './shared-train.ts';
import { evaluateFromStore, type WindowStore } from './frozen-pass.ts';

export type Sampling = 'random' | 'windows';

export interface TrainSettings {
  frac: number;
  steps: number;
  microbatch: number;
  accum: number;
  seq: number;
  lrPeak: number;
  wd: number;
  trainFrom: number;
  reselectEvery: number;
  evalEvery: number;
  nImportance: number;
  /** Samples whose frozen-layer output is cached on the GPU (0 = no cache). */
  frozenCacheN: number;
  seed: number;
  /** Cap on the windows of each eval set (null = all). */
  evalWindows: number | null;
  /** Improvement over the seed (off by default): at reselection, entries that stay active keep their Adam moments and the step count goes on. */
  keepAdamState?: boolean;
  /** Also train the shared experts of the trained layers (DeepSeek-V3, Qwen2-MoE) as selection tensors (shared-train.ts). */
  trainShared?: boolean;
  /**
   * Improvement over the seed (off by default): Adam's bias correction uses each active entry's own update count (grown
   * entries start at 0; kept entries keep theirs with keepAdamState, else all restart at reselection like the moments).
   */
  perEntryStep?: boolean;
  /**
   * Improvement over the seed (off by default): each reselection ranks entries by |gradient| summed over N_IMPORTANCE
   * microbatches (the step's own + N_IMPORTANCE - 1 drawn like the first importance pass) instead of the step's one.
   */
  accumulatedReselect?: boolean;
  /**
   * How training samples are drawn from the token stream (samples.ts trainSamples): 'random' (the seed's: STEPS·MICROBATCH·ACCUM
   * windows of SEQ tokens at uniformly random start positions, drawn from SEED) or 'windows' (the consecutive SEQ-token
   * windows the evaluation scores, shuffled per epoch). Absent = 'windows' (how runs checkpointed before it existed ran).
   */
  sampling?: Sampling;
  /**
   * Trained layers whose importance scores exist at once (default all; 1 with 4-bit experts); each group reruns the passes.
   * With experts in several chunks: always 1 (each chunk of each layer reruns them).
   */
  importanceGroup?: number;
  /**
   * GPU memory the run must fit (WebGPU does not report it): when set, the Trainer refuses settings whose memory plan
   * exceeds it, with a PlanError that proposes settings that fit.
   */
  gpuBytes?: number;
  /**
   * 4-bit experts: experts per chunk of the f32 scratch a trained layer's weights are materialized into, one chunk at a
   * time (results are the same for every chunk size). Default: all experts, or with gpuBytes the largest chunk that fits
   * (plan/memory.ts chooseExpertChunk); either way within the adapter's largest buffer binding.
   */
  expertChunk?: number;
}

/** A fixed set of SEQ-token samples: ids and next-token targets, sample-major. */
export interface SampleSet {
  count: number;
  seq: number;
  /** Writes sample `i`'s ids and targets (IGNORE = 0xffffffff) into the given arrays at `offset`. */
  fill(i: number, ids: Uint32Array, targets: Uint32Array, offset: number): void;
}

export interface StepRecord { step: number; loss: number; lr: number; finite: boolean; sec: number; tok_s: number }
export interface EvalRecord { step: number; eval_loss: number; eval_ppl: number; heldout_loss: number | null; heldout_ppl: number | null }
export interface ReselectRecord { step: number; turnover: number; turnovers: number[] }

/** Per selection tensor state: indices [k] ascending, masters/m/v/grad [k], and with perEntryStep the update counts [k] u32. */
class Selection {
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
   * used; the active entries' values are in `master`), cap = every entry the run's reselections can drop.
   */
  readonly overlay: { idx: GPUBuffer; val: GPUBuffer; cap: number; n: number } | null = null;
  constructor(gpu: GpuContext, readonly name: string, readonly numel: number, readonly k: number, overlayCap: number | null, perEntryStep: boolean) {
    const f = (label: string, kind: string, n = k) => createBuffer(gpu, { label: `${name}.${label}`, size: n * 4, kind });
    if (overlayCap !== null) this.overlay = { idx: f('overlay.idx', 'masters', overlayCap), val: f('overlay.val', 'masters', overlayCap), cap: overlayCap, n: 0 };
    this.idx = f('idx', 'masters');
    this.master = f('master', 'masters');
    this.m = f('m', 'optimizer');
    this.v = f('v', 'optimizer');
    this.steps = perEntryStep ? f('steps', 'optimizer') : null;
    this.grad = f('grad', 'workspace');
  }
}

interface LayerState {
  layer: number;
  /**
   * Current expert weights, f32: gu = [gate | up] ([2, E, IE, H], the G index space), down = [E, H, IE] (D). With a
   * 4-bit base these are the Trainer's one shared scratch, valid only right after loadChunk (one chunk of experts).
   */
  gu: GPUBuffer;
  down: GPUBuffer;
  /** Base weights W0: f32 copies made at start, or (4-bit experts) the loaded 4-bit experts themselves. */
  base: { kind: 'f32'; gu: GPUBuffer; down: GPUBuffer } | { kind: 'q4'; experts: ExpertWeights };
  G: Selection;
  D: Selection;
  router: GPUBuffer; // [E, H] f32 (the weights' own buffer)
  dRouter: GPUBuffer; // [E, H]
  routerBuf: GPUBuffer; // [E, H] momentum
}

/** The memory plan's settings of a run (4-bit when the loaded experts are). */
export function planSettings(s: TrainSettings, samples: number, weights?: ModelWeights): PlanSettings {
  if (weights?.layers.some((l) => l.streamed)) s = { ...s, frozenCacheN: samples }; // streamed: every sample cached
  const q4 = weights?.layers.find((l) => l.experts)?.experts?.gate.q4;
  return {
    trainFrom: s.trainFrom, microbatch: s.microbatch, seq: s.seq, frac: s.frac, frozenCacheN: Math.min(s.frozenCacheN, samples),
    quantizeExperts: q4 ? { groupSize: q4.G } : null, steps: s.steps, reselectEvery: s.reselectEvery, importanceGroup: s.importanceGroup,
    trainShared: !!s.trainShared, perEntryStep: !!s.perEntryStep, streamFrozen: !!weights?.layers.some((l) => l.streamed),
    ...(q4 && s.expertChunk !== undefined ? { expertChunk: s.expertChunk } : {}),
  };
}

/** Sorted-set difference size |a − b| (both ascending). */
export function countNotIn(a: Uint32Array, b: Uint32Array): number {
  let i = 0, j = 0, n = 0;
  while (i < a.length) {
    if (j >= b.length || a[i]! < b[j]!) (n++, i++);
    else if (a[i] === b[j]) (i++, j++);
    else j++;
  }
  return n;
}

/** Elements of a not in b (ascending). */
export function setMinus(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < a.length; i++) {
    while (j < b.length && b[j]! < a[i]!) j++;
    if (j >= b.length || b[j] !== a[i]) out.push(a[i]!);
  }
  return Uint32Array.from(out);
}

export function union(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  let i = 0, j = 0, n = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i]! <= b[j]!) ? a[i++]! : b[j++]!;
    if (n === 0 || out[n - 1] !== x) out[n++] = x;
  }
  return out.slice(0, n);
}

/** Adam moments of the entries of `fresh` that were in `old` (both ascending); zero for grown entries. */
export function carryMoments(old: Uint32Array, m: Float32Array, v: Float32Array, fresh: Uint32Array): [Float32Array, Float32Array] {
  return [carryValues(old, m, fresh), carryValues(old, v, fresh)];
}

/** Per-entry values (`vals` [old.length]) of the entries of `fresh` that were in `old` (both ascending); zero for grown ones. */
export function carryValues<T extends Float32Array | Uint32Array>(old: Uint32Array, vals: T, fresh: Uint32Array): T {
  const out = new (vals.constructor as new (n: number) => T)(fresh.length);
  let j = 0;
  for (let i = 0; i < fresh.length; i++) {
    while (j < old.length && old[j]! < fresh[i]!) j++;
    if (j < old.length && old[j] === fresh[i]) out[i] = vals[j]!;
  }
  return out;
}

/** Seeded PRNG (mulberry32); its state is one u32, saved in checkpoints. */
export class Rng {
  constructor(public state: number) {}
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  shuffle(n: number): Uint32Array {
    const a = Uint32Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
}

/** The importance microbatches' own stream: seeded from the run's seed with this salt (run.ts importanceBatches). */
export const importanceRng = (seed: number): Rng => new Rng((seed ^ 0x9e3779b9) >>> 0);

/** n microbatches of `microbatch` sample indices drawn uniformly from `count` samples (importance passes). */
export function drawBatches(rng: Rng, n: number, microbatch: number, count: number): number[][] {
  return Array.from({ length: n }, () => Array.from({ length: microbatch }, () => Math.floor(rng.next() * count)));
}

export class Trainer {
  readonly graph: TrainGraph;
  readonly layers: LayerState[] = [];
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
  /** Dense expert-gradient scratch shared by all layers (each layer's is consumed right after its backward): [2·per], [per]. */
  readonly denseG: GPUBuffer | null = null;
  readonly denseD: GPUBuffer | null = null;
  /**
   * Instead of denseG/denseD when a layer's experts come in several chunks: one chunk's dense gradient (gate, up, down
   * [cap·IE·H] each) and the exact top-k over chunks (running sets of gate, up and down, one merger).
   */
  readonly denseChunk: { gate: GPUBuffer; up: GPUBuffer; down: GPUBuffer; runGate: RunningTopk; runUp: RunningTopk; runDown: RunningTopk; merger: TopkMerger } | null = null;
  /**
   * 4-bit experts: the one f32 scratch every trained layer's current weights are materialized into, one chunk of experts
   * at a time: gu = [gate | up] of `cap` experts each ([2, cap, IE, H]), down [cap, H, IE].
   */
  readonly scratch: { gu: GPUBuffer; down: GPUBuffer; cap: number } | null = null;
  /** The expert chunks [e0, e1) of a trained layer (one chunk = all experts unless 4-bit with a smaller expertChunk). */
  readonly chunks: [number, number][];
  /** perEntryStep: Adam's bias corrections by step count, [2·(steps + 1)] (adamBiasTable). */
  readonly adamBias: GPUBuffer | null = null;
  /** Eval sets whose inputs of layer trainFrom are stored (frozen-pass.ts): evaluate runs only the trained layers. */
  readonly evalStores = new Map<SampleSet, { store: WindowStore; count: number }>();
  /** Frozen layers are streamed (not on the GPU): every sample's frozen output is cached by the layer-major pass. */
  readonly streamed: boolean;

  constructor(readonly gpu: GpuContext, readonly spec: ModelSpec, readonly weights: ModelWeights, readonly s: TrainSettings, readonly data: SampleSet) {
    if (data.seq !== s.seq) throw new Error(`samples are ${data.seq} tokens, settings say SEQ ${s.seq}`);
    const lim = gpu.device.limits;
    this.planned = withExpertChunk(spec, planSettings(s, data.count, weights), s.gpuBytes, Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize));
    if (s.gpuBytes !== undefined) assertFits(spec, this.planned, s.gpuBytes);
    if (s.expertChunk !== undefined && !this.planned.quantizeExperts && s.expertChunk < spec.moe.numExperts) throw new Error('expertChunk applies to 4-bit experts (quantizeExperts) only');
    this.chunks = splitExperts(spec.moe.numExperts, this.planned.expertChunk);
    this.T = s.microbatch * s.seq;
    this.graph = new TrainGraph(gpu, spec, weights, s.trainFrom, this.T);
    this.streamed = weights.layers.some((l) => l.streamed);
    // streamed: every sample is cached, in host memory (the GPU holds only the trained layers)
    const cached = s.trainFrom === 0 ? 0 : this.streamed ? data.count : Math.min(s.frozenCacheN, data.count);
    this.cache = new FrozenCache(gpu, cached, s.seq, spec.hidden, `${spec.arch}:${s.trainFrom}:${s.seq}`, this.streamed ? 'host' : 'gpu');
    this.topkWork = createBuffer(gpu, { label: 'topk.work', size: TOPK_WORKSPACE_WORDS * 4, kind: 'workspace' });
    this.flag = createBuffer(gpu, { label: 'finite.flag', size: 4, kind: 'workspace' });
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
    if (moeLayers.length) {
      if ((per * 4) % gpu.device.limits.minStorageBufferOffsetAlignment) throw new Error(`expert tensor of ${per} elements is not aligned for a buffer binding`);
      if (this.chunks.length > 1) {
        const n = (this.chunks[0]![1] - this.chunks[0]![0]) * IE * H;
        const kG = activeCount(s.frac, 2 * per), kD = activeCount(s.frac, per);
        const b = (label: string) => createBuffer(gpu, { label, size: n * 4, kind: 'workspace' });
        this.denseChunk = {
          gate: b('dense.chunk.gate'), up: b('dense.chunk.up'), down: b('dense.chunk.down'),
          runGate: new RunningTopk(gpu, kG, 'topk.run.gate'), runUp: new RunningTopk(gpu, kG, 'topk.run.up'), runDown: new RunningTopk(gpu, kD, 'topk.run.down'),
          merger: new TopkMerger(gpu, kG, this.topkWork),
        };
      } else {
        this.denseG = createBuffer(gpu, { label: 'denseG', size: 2 * per * 4, kind: 'workspace' });
        this.denseD = createBuffer(gpu, { label: 'denseD', size: per * 4, kind: 'workspace' });
      }
      if (weights.layers[moeLayers[0]!]!.experts!.gate.dtype === 'q4') {
        const cap = this.chunks[0]![1] - this.chunks[0]![0];
        this.scratch = {
          gu: createBuffer(gpu, { label: 'experts.scratch.gate_up', size: 2 * cap * IE * H * 4, kind: 'workspace' }),
          down: createBuffer(gpu, { label: 'experts.scratch.down', size: cap * IE * H * 4, kind: 'workspace' }),
          cap,
        };
      } else if (this.chunks.length > 1) throw new Error('expertChunk applies to 4-bit experts only');
    }
    for (const L of moeLayers) {
      const lw = weights.layers[L]!;
      const ex = lw.experts!;
      const f = (label: string, n: number, kind: string) => createBuffer(gpu, { label: `L${L}.${label}`, size: n * 4, kind });
      let gu: GPUBuffer, down: GPUBuffer, base: LayerState['base'];
      if (this.scratch) {
        if (ex.gate.dtype !== 'q4') throw new Error(`layer ${L}: expert weights must all be 4-bit or none`);
        // The layer keeps only its 4-bit base; forward and backward read the scratch, materialized right before.
        ({ gu, down } = this.scratch);
        base = { kind: 'q4', experts: ex };
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
      }
      const upAt = this.scratch ? this.scratch.cap * IE * H : per;
      lw.experts = { gate: { buf: gu, dtype: 'f32', shape: ex.gate.shape, offset: 0 }, up: { buf: gu, dtype: 'f32', shape: ex.up.shape, offset: upAt }, down: { buf: down, dtype: 'f32', shape: ex.down.shape, offset: 0 } };
      this.layers.push({
        layer: L,
        gu,
        down,
        base,
        G: new Selection(gpu, `L${L}.G`, 2 * per, activeCount(s.frac, 2 * per), this.scratch ? overlayCapacity(s, 2 * per) : null, !!s.perEntryStep),
        D: new Selection(gpu, `L${L}.D`, per, activeCount(s.frac, per), this.scratch ? overlayCapacity(s, per) : null, !!s.perEntryStep),
        router: lw.t.router!.buf,
        dRouter: f('dRouter', E * H, 'workspace'),
        routerBuf: f('routerBuf', E * H, 'optimizer'),
      });
    }
    if (this.scratch) for (const l of this.layers) weights.layers[l.layer]!.expertChunks = { ranges: this.chunks, load: (e, c) => this.loadChunk(e, l, c) };
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

  private batch(samples: number[]): { ids: Uint32Array; targets: Uint32Array } {
    const ids = new Uint32Array(samples.length * this.s.seq);
    const targets = new Uint32Array(samples.length * this.s.seq);
    samples.forEach((x, i) => this.data.fill(x, ids, targets, i * this.s.seq));
    return { ids, targets };
  }

  private trainedIndex(L: number): number {
    return this.graph.trained.indexOf(L);
  }

  /** Modes for every trained layer (dense layers get none). */
  private modes(make: (l: LayerState) => ExpertGradMode): ExpertGradMode[] {
    return this.graph.trained.map((L) => {
      const l = this.layers.find((x) => x.layer === L);
      return l ? make(l) : { kind: 'none' };
    });
  }

  private routers(on: boolean): (GPUBuffer | null)[] {
    return this.graph.trained.map((L) => (on ? this.layers.find((x) => x.layer === L)?.dRouter ?? null : null));
  }

  /**
   * One dense-gradient pass on `samples` for `layers`: each one's dense gradient goes into target(l) ([2·per] gate then
   * up, [per] down; assigned, or |grad| added with 'abs') and, when given, `consume` records right after that layer's
   * backward (before the next layer may overwrite a target shared by layers).
   */
  private async densePass(
    samples: number[],
    layers: LayerState[],
    target: (l: LayerState) => [GPUBuffer, GPUBuffer],
    accumulate: false | 'abs',
    consume?: (enc: Encoder, l: LayerState, dG: GPUBuffer, dD: GPUBuffer) => void,
  ): Promise<number> {
    const { ids, targets } = this.batch(samples);
    const per = this.layers[0]!.D.numel;
    const dense = (l: LayerState): ExpertGradMode => {
      const [dG, dD] = target(l);
      return { kind: 'dense', dGate: { buffer: dG, offset: 0, size: per * 4 }, dUp: { buffer: dG, offset: per * 4, size: per * 4 }, dDown: dD, accumulate };
    };
    const r = await this.graph.pass(ids, this.s.microbatch, this.s.seq, {
      targets, cache: { cache: this.cache, samples }, dRouters: this.routers(false), frozenGrads: this.shared?.clearedGrads(), modes: this.modes((l) => (layers.includes(l) ? dense(l) : { kind: 'none' })),
      afterBackward: (enc, L) => {
        const l = layers.find((x) => x.layer === L);
        if (l && consume) consume(enc, l, ...target(l));
      },
    });
    return r.loss;
  }

  /**
   * Importance (Σ|grad| over N_IMPORTANCE microbatches at W0, summed by the weight-gradient kernel itself) → first active
   * sets, masters from W0. The scores of importanceGroup layers exist at once (default: all layers; 1 with 4-bit experts,
   * whose scores then live in the shared dense scratch): each group reruns the microbatches.
   */
  async init(importanceSamples: number[][]): Promise<void> {
    await this.rankByImportance(importanceSamples);
    await this.select(false);
  }

  /**
   * idx of every selection (routed and shared) := top-k of Σ|grad| over the microbatches `importanceSamples`, at the
   * current weights, layers in importance groups (see init). The first selection, and accumulatedReselect's reselections.
   */
  private async rankByImportance(importanceSamples: number[][]): Promise<void> {
    this.shared?.startImportance();
    // A reselection on a 4-bit base: loadChunk() places the masters at idx until select(), so the new sets wait aside.
    const waiting = new Map<Selection, GPUBuffer>();
    const dest = (sel: Selection): GPUBuffer => {
      if (!this.scratch || !sel.host.length) return sel.idx;
      let b = waiting.get(sel);
      if (!b) waiting.set(sel, (b = createBuffer(this.gpu, { label: `${sel.name}.idx.new`, size: sel.k * 4, kind: 'workspace' })));
      return b;
    };
    if (this.denseChunk) await this.chunkedImportance(importanceSamples, dest);
    const group = this.denseChunk ? this.layers.length : Math.max(1, this.s.importanceGroup ?? (this.scratch ? 1 : this.layers.length));
    for (let g0 = 0; !this.denseChunk && g0 < this.layers.length; g0 += group) {
      const part = this.layers.slice(g0, g0 + group);
      const shared = group === 1;
      const imp = new Map<LayerState, [GPUBuffer, GPUBuffer]>(part.map((l) => [l, shared
        ? [this.denseG!, this.denseD!]
        : [createBuffer(this.gpu, { label: 'impG', size: l.G.numel * 4, kind: 'workspace' }), createBuffer(this.gpu, { label: 'impD', size: l.D.numel * 4, kind: 'workspace' })]]));
      if (shared) {
        const enc = new Encoder(this.gpu, 'importance.clear');
        enc.clear(this.denseG!);
        enc.clear(this.denseD!);
        enc.submit();
      }
      for (const samples of importanceSamples) {
        await this.densePass(samples, part, (l) => imp.get(l)!, 'abs');
        if (g0 === 0 && this.shared) {
          // shared experts: their |grad| from the first group's passes (every pass computes it)
          const e = new Encoder(this.gpu, 'shared.importance');
          this.shared.addImportance(e);
          e.submit();
        }
      }
      const enc = new Encoder(this.gpu, 'select.topk');
      for (const l of part) this.topk(enc, l, ...imp.get(l)!, dest);
      enc.submit();
      await this.gpu.device.queue.onSubmittedWorkDone();
      if (!shared) for (const [g, d] of imp.values()) (g.destroy(), d.destroy());
    }
    if (!waiting.size) return;
    const enc = new Encoder(this.gpu, 'select.idx');
    for (const [sel, b] of waiting) enc.copy(b, 0, sel.idx, 0, sel.k * 4);
    enc.submit();
    await this.gpu.device.queue.onSubmittedWorkDone();
    for (const b of waiting.values()) b.destroy();
  }

  /**
   * Importance with the dense gradient in chunks of experts: per layer, per chunk, Σ|grad| of that chunk's experts over
   * the microbatches (each chunk reruns them: N_IMPORTANCE passes per chunk and layer, and no memory beyond one chunk's
   * gradient, where keeping every microbatch's per-row gradients and inputs of a layer instead would take
   * N_IMPORTANCE·T·K·(3·IE + H)·4 bytes), offered to the exact top-k over chunks; the new sets go to dest(sel).
   */
  private async chunkedImportance(importanceSamples: number[][], dest: (sel: Selection) => GPUBuffer): Promise<void> {
    const dc = this.denseChunk!;
    for (const [i, l] of this.layers.entries()) {
      for (let c = 0; c < this.chunks.length; c++) {
        let enc = new Encoder(this.gpu, 'importance.clear');
        for (const b of [dc.gate, dc.up, dc.down]) enc.clear(b);
        enc.submit();
        for (const samples of importanceSamples) {
          await this.chunkedPass(samples, [l], (e) => this.denseChunkGrads(e, l, c, 'abs'));
          if (i === 0 && c === 0 && this.shared) {
            // shared experts: their |grad| from the first layer's first chunk's passes (every pass computes it)
            const e = new Encoder(this.gpu, 'shared.importance');
            this.shared.addImportance(e);
            e.submit();
          }
        }
        enc = new Encoder(this.gpu, 'select.topk');
        this.offerChunk(enc, l, c);
        enc.submit();
      }
      const enc = new Encoder(this.gpu, 'select.topk');
      this.finishTopk(enc, l, dest);
      enc.submit();
      await this.gpu.device.queue.onSubmittedWorkDone();
    }
  }

  /**
   * One pass on `samples` with no expert weight gradients in the backward (per-row gradients only); `consume` is recorded
   * right after each of `layers`' backward, while its per-row gradients are still in the backward workspace.
   */
  private async chunkedPass(samples: number[], layers: LayerState[], consume: (enc: Encoder, l: LayerState) => void): Promise<number> {
    const { ids, targets } = this.batch(samples);
    const r = await this.graph.pass(ids, this.s.microbatch, this.s.seq, {
      targets, cache: { cache: this.cache, samples }, dRouters: this.routers(false), frozenGrads: this.shared?.clearedGrads(), modes: this.modes(() => ({ kind: 'none' })),
      afterBackward: (enc, L) => {
        const l = layers.find((x) => x.layer === L);
        if (l) consume(enc, l);
      },
    });
    return r.loss;
  }

  /** Dense gradient of chunk c's experts (=, or += |.| with 'abs') into denseChunk, from the layer's last backward. */
  private denseChunkGrads(enc: Encoder, l: LayerState, c: number, accumulate: false | 'abs'): void {
    const dc = this.denseChunk!;
    const a = this.graph.acts[this.trainedIndex(l.layer)]!;
    const wk = this.graph.work;
    const d = { ...expertDims(this.spec, this.T, 'f32'), experts: this.chunks[c]! };
    expertsBackwardWeights(enc, { gate: dc.gate, up: dc.up, down: dc.down }, a.hn, a, { dY: wk.dY, dG: wk.dG, dU: wk.dU, dXr: a.Y },
      { offsets: a.offsets, slot: a.slot, rowPair: a.rowPair, tiles: a.tiles }, d, accumulate);
  }

  /** Offers chunk c's dense gradient (in denseChunk) to the running top-k sets of gate, up and down. */
  private offerChunk(enc: Encoder, l: LayerState, c: number): void {
    const dc = this.denseChunk!;
    const [e0, e1] = this.chunks[c]!;
    const one = this.spec.moe.expertIntermediate * this.spec.hidden;
    const n = (e1 - e0) * one;
    dc.merger.offer(enc, dc.runGate, dc.gate, n, e0 * one);
    dc.merger.offer(enc, dc.runUp, dc.up, n, l.D.numel + e0 * one);
    dc.merger.offer(enc, dc.runDown, dc.down, n, e0 * one);
  }

  /** G := top-k of gate ∪ up (every up index is above every gate index), D := top-k of down; into dest(sel). */
  private finishTopk(enc: Encoder, l: LayerState, dest: (sel: Selection) => GPUBuffer): void {
    const dc = this.denseChunk!;
    dc.merger.append(enc, dc.runGate, dc.runUp);
    dc.runUp.have = 0;
    dc.merger.finish(enc, dest(l.G), dc.runGate);
    dc.merger.finish(enc, dest(l.D), dc.runDown);
  }

  /** idx of G and D = top-k of |scores|. */
  private topk(enc: Encoder, l: LayerState, sg: GPUBuffer, sd: GPUBuffer, dest = (sel: Selection) => sel.idx): void {
    topkSelect(enc, dest(l.G), sg, this.topkWork, l.G.numel, l.G.k);
    topkSelect(enc, dest(l.D), sd, this.topkWork, l.D.numel, l.D.k);
  }

  /**
   * 4-bit base: chunk c of the layer's current weights into the shared scratch: its experts' W0 dequantized, then every
   * entry ever trained (its overlay value), then the active entries' masters (after the first selection), each scatter
   * filtered to the chunk's index ranges. Recorded before the chunk's GEMMs in forward and again in backward (the next
   * chunk or layer overwrites the scratch). Chosen over per-layer fp16 copies for memory (an 8-layer Qwen3-30B-A3B run:
   * 2.4 GiB of 4-bit bases + one scratch of at most 2.25 GiB vs 9 GiB of fp16), paid in bandwidth: see quant/FORMAT.md
   * "In the engine". f32 base: nothing to do (the weights are resident, one chunk).
   */
  loadChunk(enc: Encoder, l: LayerState, c: number, masterIdx?: Map<Selection, GPUBuffer>): void {
    if (l.base.kind !== 'q4') return;
    dequantizeExperts(enc, l.gu, l.down, l.base.experts, this.spec, { experts: this.chunks[c]!, upAt: this.scratch!.cap * this.spec.moe.expertIntermediate * this.spec.hidden });
    this.overlayOnto(enc, l, c, masterIdx);
  }

  /**
   * Where chunk c of a selection tensor lives in the layer's weight buffers: index ranges [lo, hi) of the G or D index
   * space and the element offset each starts at (G: the chunk's gate rows, then its up rows at the scratch's up half).
   */
  private chunkTargets(l: LayerState, sel: Selection, c: number): { range: [number, number]; offset: number }[] {
    const [e0, e1] = this.chunks[c]!;
    const one = this.spec.moe.expertIntermediate * this.spec.hidden; // one expert's gate, up or down
    const per = l.D.numel;
    const upAt = l.base.kind === 'q4' ? this.scratch!.cap * one : per;
    if (sel === l.D) return [{ range: [e0 * one, e1 * one], offset: 0 }];
    return [{ range: [e0 * one, e1 * one], offset: 0 }, { range: [per + e0 * one, per + e1 * one], offset: upAt }];
  }

  /** 4-bit base: the overlay, then the masters (at `masterIdx` of a selection when given, else at its idx) onto chunk c. */
  private overlayOnto(enc: Encoder, l: LayerState, c: number, masterIdx?: Map<Selection, GPUBuffer>): void {
    for (const [sel, w] of [[l.G, l.gu], [l.D, l.down]] as const) {
      for (const { range, offset } of this.chunkTargets(l, sel, c)) {
        const t = { dtype: 'f32', offset, range } as const;
        if (sel.overlay) scatterMasters(enc, w, sel.overlay.val, sel.overlay.idx, null, sel.overlay.n, t);
        if (sel.host.length) scatterMasters(enc, w, sel.master, masterIdx?.get(sel) ?? sel.idx, null, sel.k, t);
      }
    }
  }

  /** out[j] = the current weight at idx[j] (j < n) of selection tensor `sel`, chunk by chunk. */
  private gatherCurrent(enc: Encoder, l: LayerState, sel: Selection, out: GPUBuffer, idx: GPUBuffer, n: number): void {
    this.chunks.forEach((_, c) => {
      this.loadChunk(enc, l, c);
      for (const { range, offset } of this.chunkTargets(l, sel, c)) gatherMasters(enc, out, sel === l.G ? l.gu : l.down, idx, n, { dtype: 'f32', offset, range });
    });
  }

  /** 4-bit base: the overlay's indices := `dropped` (queue write: submit work that reads the old overlay first). */
  private writeOverlay(sel: Selection, dropped: Uint32Array): void {
    const o = sel.overlay!;
    if (dropped.length > o.cap) throw new Error(`${sel.name}: ${dropped.length} entries no longer active exceed the overlay's ${o.cap} (more reselections than the settings allow for)`);
    if (dropped.length) writeBuffer(this.gpu, o.idx, 0, dropped);
    o.n = dropped.length;
  }

  /**
   * New active sets (idx, already selected by topk); grown entries restart from W0 (when `resetGrown`), masters gathered
   * from the current weights, Adam state cleared. Returns the turnover of each tensor (share of the new set not in the old).
   */
  private async select(resetGrown: boolean): Promise<number[]> {
    const turnovers: number[] = [];
    const scratch: GPUBuffer[] = [];
    const keep = resetGrown && !!this.s.keepAdamState;
    const kept = new Map<Selection, { m: Float32Array; v: Float32Array; steps: Uint32Array | null; old: Uint32Array }>();
    if (keep) {
      for (const l of this.layers) for (const sel of [l.G, l.D]) {
        kept.set(sel, { m: await readF32(this.gpu, sel.m, 0, sel.k), v: await readF32(this.gpu, sel.v, 0, sel.k), steps: sel.steps && (await readU32(this.gpu, sel.steps, 0, sel.k)), old: sel.host });
      }
    }
    for (const l of this.layers) {
      const fresh = { G: await readU32(this.gpu, l.G.idx, 0, l.G.k), D: await readU32(this.gpu, l.D.idx, 0, l.D.k) };
      const q4 = l.base.kind === 'q4' ? this.selectValuesQ4(l, fresh, resetGrown, scratch) : null;
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
          scatterMasters(enc, w, vals, idx, null, grown.length, { dtype: 'f32' });
        }
        turnovers.push(sel.host.length ? grown.length / fr.length : 1);
        sel.host = fr;
        sel.touched = union(sel.touched, fr);
        const v = q4?.get(sel);
        if (v) {
          const dropped = setMinus(sel.touched, fr);
          this.writeOverlay(sel, dropped);
          if (dropped.length) enc.copy(v.overlay, 0, sel.overlay!.val, 0, dropped.length * 4);
          enc.copy(v.master, 0, sel.master, 0, sel.k * 4);
        } else gatherMasters(enc, sel.master, w, sel.idx, sel.k, { dtype: 'f32' });
        const k = kept.get(sel);
        if (k) {
          const [m, v] = carryMoments(k.old, k.m, k.v, fr);
          writeBuffer(this.gpu, sel.m, 0, m);
          writeBuffer(this.gpu, sel.v, 0, v);
          if (sel.steps) writeBuffer(this.gpu, sel.steps, 0, carryValues(k.old, k.steps!, fr));
        } else {
          enc.clear(sel.m);
          enc.clear(sel.v);
          if (sel.steps) enc.clear(sel.steps);
        }
      }
      enc.submit();
    }
    if (this.shared) turnovers.push(...(await this.shared.select(this.topkWork, resetGrown, keep)));
    if (!keep) this.adamT = 0;
    await this.gpu.device.queue.onSubmittedWorkDone();
    for (const b of scratch) b.destroy();
    return turnovers;
  }

  /**
   * 4-bit base, at a new selection `fresh` (idx already holds it): the values the new overlay (every entry ever touched
   * and not in `fresh`) and the new masters take, per selection, in scratch buffers. Chunk by chunk: W0 dequantized; grown entries' W0
   * values gathered (when `resetGrown`); the current weights put on (old overlay + old masters at the old indices); the
   * grown entries back at W0; then the values gathered. Submitted here: the old overlay is rewritten after.
   */
  private selectValuesQ4(l: LayerState, fresh: { G: Uint32Array; D: Uint32Array }, resetGrown: boolean, scratch: GPUBuffer[]): Map<Selection, { overlay: GPUBuffer; master: GPUBuffer }> {
    const up = (data: Uint32Array, label: string) => {
      const b = createBuffer(this.gpu, { label, size: Math.max(4, data.byteLength) });
      if (data.length) writeBuffer(this.gpu, b, 0, data);
      scratch.push(b);
      return b;
    };
    const f32 = (n: number, label: string) => {
      const b = createBuffer(this.gpu, { label, size: Math.max(4, n * 4), kind: 'workspace' });
      scratch.push(b);
      return b;
    };
    if (l.base.kind !== 'q4') throw new Error('selectValuesQ4: not a 4-bit base');
    const base = l.base.experts;
    const oldIdx = new Map<Selection, GPUBuffer>();
    const plan = [l.G, l.D].map((sel) => {
      const fr = sel === l.G ? fresh.G : fresh.D;
      const grown = resetGrown ? setMinus(fr, sel.host) : new Uint32Array(0);
      const touched = setMinus(union(sel.touched, fr), fr); // the new overlay's entries
      if (sel.host.length) oldIdx.set(sel, up(sel.host, 'old.idx'));
      return {
        sel, w: sel === l.G ? l.gu : l.down, grown: grown.length, grownIdx: up(grown, 'grown.idx'), grownVals: f32(grown.length, 'grown.vals'),
        touched: touched.length, touchedIdx: up(touched, 'touched.idx'), overlay: f32(touched.length, 'overlay.new'), master: f32(sel.k, 'master.new'),
      };
    });
    const enc = new Encoder(this.gpu, 'select.masters');
    this.chunks.forEach((experts, c) => {
      const each = (f: (p: (typeof plan)[number], t: { dtype: 'f32'; offset: number; range: [number, number] }) => void) => {
        for (const p of plan) for (const { range, offset } of this.chunkTargets(l, p.sel, c)) f(p, { dtype: 'f32', offset, range });
      };
      dequantizeExperts(enc, l.gu, l.down, base, this.spec, { experts, upAt: this.scratch!.cap * this.spec.moe.expertIntermediate * this.spec.hidden });
      each((p, t) => gatherMasters(enc, p.grownVals, p.w, p.grownIdx, p.grown, t));
      this.overlayOnto(enc, l, c, oldIdx);
      each((p, t) => scatterMasters(enc, p.w, p.grownVals, p.grownIdx, null, p.grown, t));
      each((p, t) => gatherMasters(enc, p.overlay, p.w, p.touchedIdx, p.touched, t));
      each((p, t) => gatherMasters(enc, p.master, p.w, p.sel.idx, p.sel.k, t));
    });
    enc.submit();
    return new Map(plan.map((p) => [p.sel, { overlay: p.overlay, master: p.master }]));
  }

  /** One training step s (1-based): reselection when due, ACCUM microbatches, then the update unless non-finite. */
  async trainStep(): Promise<{ record: StepRecord; reselect: ReselectRecord | null }> {
    const s = this.step + 1;
    const t0 = performance.now();
    const batches = Array.from({ length: this.s.accum }, () => this.nextSamples());
    let reselect: ReselectRecord | null = null;
    const tRes = performance.now();
    if (isReselectStep(s, this.s.reselectEvery)) {
      if (this.s.accumulatedReselect) {
        // the step's own microbatch + N_IMPORTANCE - 1 more from the importance stream, as the first selection
        await this.rankByImportance([batches[0]!, ...drawBatches(this.impRng, this.s.nImportance - 1, this.s.microbatch, this.data.count)]);
      } else if (this.denseChunk) {
        await this.chunkedPass(batches[0]!, this.layers, (e, l) => {
          this.chunks.forEach((_, c) => {
            this.denseChunkGrads(e, l, c, false);
            this.offerChunk(e, l, c);
          });
          this.finishTopk(e, l, (sel) => sel.idx);
        });
      } else await this.densePass(batches[0]!, this.layers, () => [this.denseG!, this.denseD!], false, (e, l, dG, dD) => this.topk(e, l, dG, dD));
      const turnovers = await this.select(true);
      const turnover = turnovers.reduce((a, b) => a + b, 0) / Math.max(1, turnovers.length);
      this.turnovers.push(turnover);
      reselect = { step: s, turnover, turnovers };
      if (this.phases) this.phases.reselection = (this.phases.reselection ?? 0) + performance.now() - tRes;
    }
    let enc = new Encoder(this.gpu, 'step.zero');
    for (const l of this.layers) {
      enc.clear(l.G.grad);
      enc.clear(l.D.grad);
      enc.clear(l.dRouter);
    }
    enc.clear(this.flag);
    this.shared?.clearGrads(enc);
    enc.submit();
    let loss = 0;
    let tokens = 0;
    for (const samples of batches) {
      const { ids, targets } = this.batch(samples);
      const r = await this.graph.pass(ids, this.s.microbatch, this.s.seq, {
        targets,
        cache: { cache: this.cache, samples },
        dRouters: this.routers(true),
        modes: this.modes((l) => ({ kind: 'sparse', idxG: l.G.idx, nG: l.G.k, gradG: l.G.grad, idxD: l.D.idx, nD: l.D.k, gradD: l.D.grad })),
        frozenGrads: this.shared?.grads,
        gradScale: 1 / this.s.accum,
        phases: this.phases ?? undefined,
      });
      loss += r.loss / this.s.accum;
      tokens += this.s.microbatch * this.s.seq;
    }
    const tOpt = performance.now();
    enc = new Encoder(this.gpu, 'step.check');
    for (const l of this.layers) {
      checkFinite(enc, this.flag, l.G.grad, l.G.k);
      checkFinite(enc, this.flag, l.D.grad, l.D.k);
      checkFinite(enc, this.flag, l.dRouter, l.dRouter.size / 4);
    }
    this.shared?.gatherAndCheck(enc, this.flag);
    enc.submit();
    const finite = Number.isFinite(loss) && (await readU32(this.gpu, this.flag, 0, 1))[0] === 0;
    const lr = learningRate(s, this.s.steps, this.s.lrPeak);
    if (finite) {
      this.adamT++;
      enc = new Encoder(this.gpu, 'step.update');
      for (const l of this.layers) {
        for (const [sel, w] of [[l.G, l.gu], [l.D, l.down]] as const) {
          if (sel.steps) sparseAdamEntryT(enc, sel.master, sel.m, sel.v, sel.steps, sel.grad, null, this.adamBias!, sel.k, { lr, tMax: this.s.steps, weightDecay: this.s.wd });
          else sparseAdam(enc, sel.master, sel.m, sel.v, sel.grad, null, sel.k, { lr, t: this.adamT, weightDecay: this.s.wd });
          if (l.base.kind === 'f32') scatterMasters(enc, w, sel.master, sel.idx, null, sel.k, { dtype: 'f32' }); // 4-bit: loadChunk() does it

        }
        routerSgd(enc, l.router, l.routerBuf, l.dRouter, null, l.dRouter.size / 4, { lr, weightDecay: this.s.wd, hasBuf: this.routerHasBuf });
      }
      this.shared?.update(enc, lr, this.adamT, this.s.wd);
      enc.submit();
      this.routerHasBuf = true;
    } else this.skipped++;
    this.step = s;
    await this.gpu.device.queue.onSubmittedWorkDone();
    if (this.phases) this.phases.optimizer = (this.phases.optimizer ?? 0) + performance.now() - tOpt;
    const sec = (performance.now() - t0) / 1000;
    return { record: { step: s, loss, lr, finite, sec, tok_s: tokens / sec }, reselect };
  }

  /** Mean loss over the windows of a sample set (forward only, current weights). */
  async evaluate(set: SampleSet, maxWindows: number | null): Promise<{ loss: number; ppl: number; tokens: number }> {
    const n = Math.min(set.count, maxWindows ?? set.count);
    const B = this.s.microbatch;
    const stored = this.evalStores.get(set);
    if (stored && stored.count >= n) {
      const r = await evaluateFromStore(this.graph.fwd, this.spec, this.s.trainFrom, set, n, B, stored.store);
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
    }
    const loss = sum / Math.max(1, tokens);
    return { loss, ppl: Math.exp(loss), tokens };
  }

  // ---------------------------------------------------------------------------------------------
  // Checkpoint and export

  /** Everything needed to continue this run exactly (read back from the GPU). */
  async snapshot(settings: Record<string, unknown>, log: object[]): Promise<TrainCheckpoint> {
    const layers: SavedLayer[] = [];
    for (const l of this.layers) {
      const vals = async (sel: Selection, idx: Uint32Array) => {
        if (!idx.length) return new Float32Array(0);
        const ib = createBuffer(this.gpu, { label: 'touched.idx', size: idx.length * 4 });
        const vb = createBuffer(this.gpu, { label: 'touched.vals', size: idx.length * 4 });
        writeBuffer(this.gpu, ib, 0, idx);
        const enc = new Encoder(this.gpu, 'snapshot');
        this.gatherCurrent(enc, l, sel, vb, ib, idx.length);
        enc.submit();
        const out = await readF32(this.gpu, vb, 0, idx.length);
        ib.destroy();
        vb.destroy();
        return out;
      };
      layers.push({
        layer: l.layer,
        idxG: l.G.host.slice(),
        idxD: l.D.host.slice(),
        masterG: await readF32(this.gpu, l.G.master, 0, l.G.k),
        mG: await readF32(this.gpu, l.G.m, 0, l.G.k),
        vG: await readF32(this.gpu, l.G.v, 0, l.G.k),
        masterD: await readF32(this.gpu, l.D.master, 0, l.D.k),
        mD: await readF32(this.gpu, l.D.m, 0, l.D.k),
        vD: await readF32(this.gpu, l.D.v, 0, l.D.k),
        touchedG: l.G.touched.slice(),
        touchedValG: await vals(l.G, l.G.touched),
        touchedD: l.D.touched.slice(),
        touchedValD: await vals(l.D, l.D.touched),
        router: await readF32(this.gpu, l.router),
        routerBuf: this.routerHasBuf ? await readF32(this.gpu, l.routerBuf) : null,
        ...(l.G.steps && l.D.steps ? { extra: { stepsG: await readU32(this.gpu, l.G.steps, 0, l.G.k), stepsD: await readU32(this.gpu, l.D.steps, 0, l.D.k) } } : {}),
      });
    }
    await this.shared?.save(layers);
    return {
      version: TRAIN_CHECKPOINT_VERSION,
      settings,
      step: this.step,
      rng: { seed: this.s.seed, state: this.s.accumulatedReselect ? [this.rng.state, this.impRng.state] : [this.rng.state] },
      dataOrder: { epoch: this.epoch, cursor: this.cursor, order: this.order.slice() },
      frozenCacheId: this.cache.id,
      skipped: this.skipped,
      turnovers: this.turnovers.slice(),
      adamT: this.adamT,
      layers,
      log,
    };
  }

  /** Continue from a snapshot: weights = base with every touched entry restored, optimizer and data state as saved. */
  async restore(c: TrainCheckpoint): Promise<void> {
    if (c.layers.length !== this.layers.length) throw new Error(`checkpoint has ${c.layers.length} trained layers, this run has ${this.layers.length}`);
    if (!this.shared && hasSharedState(c.layers)) throw new Error('checkpoint trained the shared experts (trainShared); this run does not');
    if (!!this.s.accumulatedReselect !== c.rng.state.length > 1) {
      throw new Error(`checkpoint was saved ${c.rng.state.length > 1 ? 'with' : 'without'} accumulatedReselect (its importance stream); resume the same way`);
    }
    const scratch: GPUBuffer[] = [];
    const up = (data: Uint32Array | Float32Array, label: string) => {
      const b = createBuffer(this.gpu, { label, size: Math.max(4, data.byteLength) });
      if (data.length) writeBuffer(this.gpu, b, 0, data);
      scratch.push(b);
      return b;
    };
    const enc = new Encoder(this.gpu, 'restore');
    this.layers.forEach((l, i) => {
      const c1 = c.layers[i]!;
      if (c1.layer !== l.layer || c1.idxG.length !== l.G.k || c1.idxD.length !== l.D.k) throw new Error(`checkpoint layer ${c1.layer} does not match this run's settings (layer ${l.layer}, k ${l.G.k}/${l.D.k})`);
      for (const [sel, w, base, idx, master, m, v, touched, tvals, steps] of [
        [l.G, l.gu, l.base.kind === 'f32' ? l.base.gu : null, c1.idxG, c1.masterG, c1.mG, c1.vG, c1.touchedG, c1.touchedValG, c1.extra?.stepsG],
        [l.D, l.down, l.base.kind === 'f32' ? l.base.down : null, c1.idxD, c1.masterD, c1.mD, c1.vD, c1.touchedD, c1.touchedValD, c1.extra?.stepsD],
      ] as const) {
        if (!!sel.steps !== (steps !== undefined)) throw new Error(`checkpoint layer ${l.layer} ${steps ? 'has' : 'has no'} per-entry step counts; resume with${steps ? '' : 'out'} perEntryStep`);
        if (sel.steps && steps) {
          if (!(steps instanceof Uint32Array) || steps.length !== sel.k) throw new Error(`checkpoint layer ${l.layer}: per-entry step counts do not match k ${sel.k}`);
          writeBuffer(this.gpu, sel.steps, 0, steps);
        }
        if (base) {
          enc.copy(base, 0, w, 0, sel.numel * 4);
          if (touched.length) scatterMasters(enc, w, up(tvals, 'touched.vals'), up(touched, 'touched.idx'), null, touched.length, { dtype: 'f32' });
        } else {
          // the overlay holds the touched entries that are not active
          const active = new Set(idx);
          const keep = Array.from(touched, (i) => !active.has(i));
          this.writeOverlay(sel, touched.filter((_, j) => keep[j]));
          const vals = tvals.filter((_, j) => keep[j]);
          if (vals.length) writeBuffer(this.gpu, sel.overlay!.val, 0, vals);
        }
        writeBuffer(this.gpu, sel.idx, 0, idx);
        writeBuffer(this.gpu, sel.master, 0, master);
        writeBuffer(this.gpu, sel.m, 0, m);
        writeBuffer(this.gpu, sel.v, 0, v);
        sel.host = idx.slice();
        sel.touched = touched.slice();
      }
      writeBuffer(this.gpu, l.router, 0, c1.router);
      if (c1.routerBuf) writeBuffer(this.gpu, l.routerBuf, 0, c1.routerBuf);
    });
    enc.submit();
    await this.gpu.device.queue.onSubmittedWorkDone();
    for (const b of scratch) b.destroy();
    await this.shared?.restore(c.layers);
    this.routerHasBuf = c.layers.some((x) => x.routerBuf !== null);
    this.step = c.step;
    this.adamT = c.adamT;
    this.skipped = c.skipped;
    this.turnovers = c.turnovers.slice();
    this.rng.state = c.rng.state[0]! >>> 0;
    if (this.s.accumulatedReselect) this.impRng.state = c.rng.state[1]! >>> 0;
    this.order = c.dataOrder.order.slice();
    this.cursor = c.dataOrder.cursor;
    this.epoch = c.dataOrder.epoch;
  }

  /**
   * A 4-bit run's trained values over the checkpoint's own (not the dequantized base's): gu/down [G, D index spaces] from
   * the checkpoint, with every touched entry from the current weights. For a sparse delta against that checkpoint.
   */
  private async touchedOnto(ckpt: Checkpoint, l: LayerState, gu: Float32Array, down: Float32Array): Promise<[Float32Array, Float32Array]> {
    const { numExperts: E, expertIntermediate: IE } = this.spec.moe;
    const per = IE * this.spec.hidden;
    const bg = new Float32Array(gu.length), bd = new Float32Array(down.length);
    for (const e of this.spec.layers[l.layer]!.tensors) {
      if (!e.role.startsWith('expert.')) continue;
      const r = await readWeight(ckpt, e, this.spec.quantization);
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

  /** A layer's current expert weights on the host: gu [2·per] (gate then up), down [per]; 4-bit: chunk by chunk. */
  private async currentWeights(l: LayerState): Promise<[Float32Array, Float32Array]> {
    if (l.base.kind === 'f32') return [await readF32(this.gpu, l.gu), await readF32(this.gpu, l.down)];
    const one = this.spec.moe.expertIntermediate * this.spec.hidden;
    const per = l.D.numel;
    const gu = new Float32Array(2 * per), down = new Float32Array(per);
    for (const [c, [e0, e1]] of this.chunks.entries()) {
      const enc = new Encoder(this.gpu, 'export');
      this.loadChunk(enc, l, c);
      enc.submit();
      const n = (e1 - e0) * one;
      gu.set(await readF32(this.gpu, l.gu, 0, n), e0 * one);
      gu.set(await readF32(this.gpu, l.gu, this.scratch!.cap * one * 4, n), per + e0 * one);
      down.set(await readF32(this.gpu, l.down, 0, n), e0 * one);
    }
    return [gu, down];
  }

  /**
   * Full current values of the trained tensors, by checkpoint name (per-expert or fused, as the spec names them). With
   * `onto` (4-bit runs), entries never trained keep that checkpoint's values instead of the dequantized base's.
   */
  async changedTensors(onto?: Checkpoint): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    const { numExperts: E, expertIntermediate: IE } = this.spec.moe;
    const per = IE * this.spec.hidden;
    for (const l of this.layers) {
      let [gu, down] = await this.currentWeights(l);
      if (onto && l.base.kind === 'q4') [gu, down] = await this.touchedOnto(onto, l, gu, down);
      for (const e of this.spec.layers[l.layer]!.tensors) {
        const x = e.expert ?? 0;
        if (e.role === 'router') out.set(e.name, await readF32(this.gpu, l.router));
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
    await this.shared?.changed(out);
    return out;
  }
}
