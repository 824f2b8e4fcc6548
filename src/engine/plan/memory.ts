// Contract: GPU bytes by kind that a training run allocates (loadWeights + Trainer + TrainGraph: Forward, LayerActs, xIn,
// BackwardWork), computed from a ModelSpec and the run's settings without a GPU; plus host RAM, storage and `fits`.
//
// Every item mirrors one createBuffer call of those constructors (same label, kind and size, rounded as createBuffer
// rounds: to a multiple of 4, at least 4). Keep this file in step with them: test/gpu/plan.test.ts compares it with
// allocatedBytes on the demo model. Legend: T = microbatch·seq tokens, H hidden, E experts, K top-k, IE expert width,
// per = E·IE·H (one expert role of a layer), V vocab.

import type { ModelSpec, TensorEntry, TensorRole } from '../model/spec.ts';
import { globalTensors, layerTensors } from '../model/tensors.ts';
import { attentionWidths, headWorkElements } from '../train/forward.ts';
import { EXPERT_TILE_M } from '../ops/experts.ts';
import { dGeometry, gGeometry, sparseTableWords } from '../ops/experts_q4.ts';
import { moeRouteMaxTiles } from '../ops/moe_route.ts';
import { TOPK_WORKSPACE_WORDS } from '../ops/topk.ts';
import { activeCount, isReselectStep } from '../train/schedule.ts';
import { q4ExpertLayouts } from '../quant/format.ts';
import { numel, planStorage, type StoragePlan } from './storage.ts';

export const KINDS = ['weights', 'masters', 'optimizer', 'activations', 'cache', 'workspace'] as const;
export type Kind = (typeof KINDS)[number];

export interface PlanSettings {
  /** First trained layer (layers trainFrom..N-1 train; 0 < trainFrom enables the frozen cache). */
  trainFrom: number;
  microbatch: number;
  seq: number;
  /** Trained share of each selection tensor (FRAC). */
  frac: number;
  /** Samples whose frozen-layer output the cache holds (the Trainer uses min(this, dataset samples)). */
  frozenCacheN: number;
  /** Routed experts of every layer in 4 bits (loadWeights quantizeExperts); absent or null: bf16 frozen, f32 trained. */
  quantizeExperts?: { groupSize: number } | null;
  /** 4-bit runs size each selection's overlay for their reselections (default METHOD's 180 steps, every 50). */
  steps?: number;
  reselectEvery?: number;
  /** Trained layers whose importance scores exist at once (the Trainer's default: all; 1 with 4-bit experts). */
  importanceGroup?: number;
  /** The shared experts of the trained MoE layers train too (loaded in f32; shared-train.ts's buffers). */
  trainShared?: boolean;
  /** Per-entry Adam step counts: a u32 [k] beside each selection's moments, and the bias-correction table [2·(steps+1)]. */
  perEntryStep?: boolean;
  /**
   * Frozen layers are not resident (loadWeights streamFrozenBelow): the layer-major pass loads one at a time, and every
   * training sample's frozen output is cached (set frozenCacheN to the sample count; planSettings does).
   */
  streamFrozen?: boolean;
  /**
   * 4-bit runs: experts per chunk of a trained layer's f32 scratch and dense gradient (its weights are materialized one
   * chunk at a time; splitExperts balances the chunks). Default all experts (one chunk); chooseExpertChunk picks one for
   * a budget. On the fused path only selections and a full export of the changed tensors work in chunks (the steps, a
   * checkpoint and the delta never do: they read the touched entries alone, Q4Base.currentAt).
   */
  expertChunk?: number;
  /**
   * 4-bit runs on the fused path unless false (TrainSettings.fusedExperts): each selection tensor's
   * sparse table and Δ are held; the f32 scratch and the dense gradient only while a selection or an export runs
   * (MemoryPlan.transient).
   */
  fusedExperts?: boolean;
  /**
   * 4-bit runs: the trained layers' 4-bit experts stay in host-visible upload buffers (LoadOptions.hostExperts), two GPU
   * slots hold the ones in use, and streamed frozen layers load their experts into the same slots. Chosen by
   * fitSettings when the run does not fit otherwise; the results are the same.
   */
  hostExperts?: boolean;
  /** The LM head's most token rows of logits at once (Forward's headRows; plan/head.ts withHeadRows). Default xentDefaultRows. */
  headRows?: number;
}

export interface PlanItem {
  label: string;
  kind: Kind;
  /** Bytes of one buffer (createBuffer's rounding applied). */
  bytes: number;
  /** Buffers of this size (e.g. one per trained layer). */
  count: number;
}

export type ByKind = Record<Kind, number> & { total: number };

export interface MemoryPlan {
  settings: PlanSettings;
  /** GPU bytes held from the Trainer's construction on, by kind (what allocatedBytes reports then). */
  gpu: ByKind;
  /**
   * Extra GPU bytes held for a while on top of `gpu`: the importance scores of Trainer.init, [2·per] + [per] per trained
   * MoE layer of a group (none when the group is one layer: its scores live in the dense-gradient scratch), plus the
   * shared experts' [2·IS·H] + [IS·H] per trained MoE layer with trainShared. 4-bit fused runs: the larger of those
   * scores, the dense-gradient scratch (a ranking) and the f32 expert scratch of one chunk (a selection's values, a full
   * export of the changed tensors), each made for that work and freed after it.
   */
  transient: number;
  /**
   * Streamed runs: GPU bytes of the largest frozen layer as the layer-major pass loads it (its buffers, and the 4-bit
   * quantizer's staging), or of the embedding (untied: streamed too), held during that pass only; 0 when resident.
   */
  staging: number;
  /** gpu.total + max(transient, staging): what must fit. */
  peak: number;
  /** Host-visible buffers of hosted experts (hostExperts): system memory on a discrete GPU, counted in `ram`. */
  hostVisible: number;
  /**
   * Host memory the engine needs besides the program and the dataset: the largest tensor while loading (checkpoint bytes
   * + the converted copy uploaded), or a checkpoint snapshot of the trained state, whichever is larger; with streamFrozen
   * plus the frozen cache, which is then in host memory.
   */
  ram: number;
  storage: StoragePlan;
  /** The same run with streamFrozen (its planMemory figures), for comparison. */
  streamedFrozen: { gpu: ByKind; peak: number; fits: (gpuBytes: number) => boolean };
  items: PlanItem[];
  fits(gpuBytes: number): boolean;
}

/**
 * Entries a 4-bit run's overlay must hold: the entries once trained and no longer active (the active ones are in the
 * masters) = at most k per reselection, and at most numel - k.
 */
export function overlayCapacity(s: { frac: number; steps: number; reselectEvery: number }, numel: number): number {
  let selections = 1;
  for (let step = 2; s.reselectEvery > 0 && step <= s.steps; step++) if (isReselectStep(step, s.reselectEvery)) selections++;
  const k = activeCount(s.frac, numel);
  return Math.min(numel, selections * k) - k;
}

/**
 * A layer's E experts in chunks of at most `chunk`: ceil(E / chunk) chunks as even as possible (the first ones one larger),
 * [e0, e1) each. The scratch holds the first (largest) one.
 */
export function splitExperts(E: number, chunk = E): [number, number][] {
  if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`expert chunk must be a positive integer, got ${chunk}`);
  const n = Math.ceil(E / Math.min(chunk, E));
  const out: [number, number][] = [];
  for (let c = 0, e0 = 0; c < n; c++) {
    const e1 = e0 + Math.floor(E / n) + (c < E % n ? 1 : 0);
    out.push([e0, e1]);
    e0 = e1;
  }
  return out;
}

/** Experts the f32 scratch of a 4-bit run holds (the largest chunk). */
export function scratchExperts(spec: ModelSpec, s: PlanSettings): number {
  const [e0, e1] = splitExperts(spec.moe.numExperts, s.expertChunk)[0]!;
  return e1 - e0;
}

/**
 * 4-bit runs: the largest expert chunk (fewest chunks, i.e. the least re-reading of the 4-bit base) whose plan fits
 * `gpuBytes` and whose gate|up scratch buffer fits `maxBuffer` bytes (the adapter's maxStorageBufferBindingSize /
 * maxBufferSize); 1 when none does (the plan then says it does not fit). All experts when not 4-bit.
 */
export function chooseExpertChunk(spec: ModelSpec, s: PlanSettings, gpuBytes = Infinity, maxBuffer = Infinity): number {
  const E = spec.moe.numExperts;
  if (!s.quantizeExperts) return E;
  const row = 2 * spec.moe.expertIntermediate * spec.hidden * 4; // one expert's gate|up in the scratch
  for (let n = 1; n <= E; n++) {
    const chunk = Math.ceil(E / n);
    if (n > 1 && Math.ceil(E / (n - 1)) === chunk) continue;
    if (chunk * row <= maxBuffer && planMemory(spec, { ...s, expertChunk: chunk }).fits(gpuBytes)) return chunk;
  }
  return 1;
}

/** `s` with the expert chunk chooseExpertChunk picks when it is not set and fewer than all experts are needed; else `s`. */
export function withExpertChunk(spec: ModelSpec, s: PlanSettings, gpuBytes?: number, maxBuffer?: number): PlanSettings {
  if (s.expertChunk !== undefined || !s.quantizeExperts) return s;
  const chunk = chooseExpertChunk(spec, s, gpuBytes, maxBuffer);
  return chunk < spec.moe.numExperts ? { ...s, expertChunk: chunk } : s;
}

/**
 * The settings a run takes on a GPU of `gpuBytes`: withExpertChunk's; when those do not fit and hostExperts is undecided
 * (undefined), the same with the trained layers' 4-bit experts hosted (withExpertChunk's chunk for that), which is then
 * what a refusal reports when neither fits.
 */
export function fitSettings(spec: ModelSpec, s: PlanSettings, gpuBytes?: number, maxBuffer?: number): PlanSettings {
  const a = withExpertChunk(spec, s, gpuBytes, maxBuffer);
  if (gpuBytes === undefined || s.hostExperts !== undefined || !s.quantizeExperts || planMemory(spec, a).fits(gpuBytes)) return a;
  if (!hostedLayers(spec, { ...s, hostExperts: true }).length) return a;
  return withExpertChunk(spec, { ...s, hostExperts: true }, gpuBytes, maxBuffer);
}

/** Bytes createBuffer allocates for `size` bytes. */
export const bufBytes = (size: number): number => Math.max(4, Math.ceil(size / 4) * 4);

/** Roles kept in f32 on the GPU (as loadWeights' F32_ROLES): small vectors and the router (which trains). */
const F32_ROLES = new Set<TensorRole>([
  'input_norm', 'post_attn_norm', 'final_norm', 'attn.q_norm', 'attn.k_norm', 'attn.q_a_norm', 'attn.kv_a_norm',
  'attn.q_bias', 'attn.k_bias', 'attn.v_bias', 'attn.o_bias', 'attn.q_a_bias', 'attn.kv_a_bias',
  'router', 'router.bias_correction', 'shared.expert_gate',
]);

/** GPU bytes of one weight as loadWeights stores it: f32 (4 bytes/elt) or bf16 packed two per u32. */
export function weightBytes(n: number, f32: boolean): number {
  return bufBytes(f32 ? n * 4 : Math.ceil(n / 2) * 4);
}

// ---------------------------------------------------------------------------------------------
// Items, constructor by constructor.

class Items {
  readonly list: PlanItem[] = [];
  /** `n` f32 elements (the constructors' `f(label, n)`). */
  f32(label: string, kind: Kind, n: number, count = 1): void {
    this.bytes(label, kind, n * 4, count);
  }
  bytes(label: string, kind: Kind, size: number, count = 1): void {
    if (count > 0) this.list.push({ label, kind, bytes: bufBytes(size), count });
  }
}

/**
 * loadWeights: globals (without the embedding when `embed` is false: streamed, weights.ts embedStreamed), then per layer its single tensors and the routed experts ([E, IE, H] × gate, up, [E, H, IE] down;
 * 4-bit: one gate|up and one down buffer, codes + (scale, zero) table, as quant/experts-q4.ts lays them out).
 */
function weightItems(it: Items, spec: ModelSpec, trained: Set<number>, layers: number[], q4: PlanSettings['quantizeExperts'], trainShared: boolean, embed = true, hosted: number[] = []): void {
  for (const e of globalTensors(spec)) if (!(e.role === 'lm_head' && spec.tieEmbeddings) && (embed || e.role !== 'embed')) single(it, e);
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const per = E * IE * spec.hidden;
  for (const L of layers) {
    let experts = false;
    const sharedF32 = trainShared && trained.has(L);
    for (const e of layerTensors(spec, L)) {
      if (e.role.startsWith('expert.')) experts = true;
      // trained shared experts load in f32; SharedTraining frees gate and up once copied into its gate_up buffer
      else if (sharedF32 && e.role.startsWith('shared.')) {
        if (e.role !== 'shared.gate' && e.role !== 'shared.up') it.bytes(e.name, 'weights', weightBytes(numel(e.shape), true));
      } else single(it, e);
    }
    if (experts && q4 && hosted.includes(L)) continue; // host memory (planMemory's hostVisible)
    if (experts && q4) {
      const lay = q4ExpertLayouts(spec, q4.groupSize);
      it.bytes(`layer${L}.experts.gate_up.q4`, 'weights', lay.gateUp.bytes);
      it.bytes(`layer${L}.experts.down.q4`, 'weights', lay.down.bytes);
    } else if (experts && trained.has(L)) it.bytes(`layer${L}.experts.down`, 'weights', weightBytes(per, true), 1);
    else if (experts) it.bytes(`layer${L}.experts.gate|up|down`, 'weights', weightBytes(per, false), 3);
  }
}

/** The GPU slots of hosted experts (quant/expert-slots.ts): one per hosted layer, at most two. */
function slotItems(it: Items, spec: ModelSpec, s: PlanSettings): void {
  const n = Math.min(2, hostedLayers(spec, s).length);
  if (!n) return;
  const lay = q4ExpertLayouts(spec, s.quantizeExperts!.groupSize);
  it.bytes('experts.slot.gate_up.q4', 'weights', lay.gateUp.bytes, n);
  it.bytes('experts.slot.down.q4', 'weights', lay.down.bytes, n);
}

/** The trained MoE layers whose 4-bit experts are hosted (hostExperts), ascending. */
export function hostedLayers(spec: ModelSpec, s: PlanSettings): number[] {
  if (!s.hostExperts || !s.quantizeExperts) return [];
  return spec.layers.filter((l) => l.index >= s.trainFrom && l.mlp === 'moe').map((l) => l.index);
}

function single(it: Items, e: TensorEntry): void {
  it.bytes(e.name, 'weights', weightBytes(numel(e.shape), F32_ROLES.has(e.role)));
}

/** LayerActs(spec, T): one layer's forward activations. */
function layerActsItems(it: Items, spec: ModelSpec, T: number, count: number, kind: Kind = 'activations'): void {
  const { hidden: H, numHeads: NH, numKvHeads: NKV } = spec;
  const { numExperts: E, topK: K, expertIntermediate: IE } = spec.moe;
  const att = spec.attention;
  const f = (label: string, n: number) => it.f32(`acts.${label}`, kind, n, count);
  const w = attentionWidths(spec);
  const qkNorm = att.kind === 'mha' && att.qkNorm !== 'none';
  const clip = att.kind === 'mha' && att.clipQkv !== null;
  f('xn', T * H);
  f('rstd1', T);
  f('qRaw', qkNorm ? T * w.q : 1);
  f('kRaw', qkNorm ? T * w.k : 1);
  f('q', T * w.q);
  f('k', T * w.k);
  f('v', T * w.v);
  f('qRstd', qkNorm ? T * NH : 1);
  f('kRstd', qkNorm ? T * NKV : 1);
  if (clip) (f('qClip', T * w.q), f('kClip', T * w.k), f('vClip', T * w.v));
  f('o', T * w.o);
  f('lse', T * NH);
  f('h', T * H);
  f('hn', T * H);
  f('rstd2', T);
  f('routerLogits', T * E);
  f('probs', T * E);
  f('topIdx', T * K);
  f('topW', T * K);
  f('counts', E);
  f('offsets', E + 1);
  f('slot', T * K);
  f('rowPair', T * K);
  f('tiles', moeRouteMaxTiles({ T, K, E, tileM: EXPERT_TILE_M }) * 4);
  f('G', T * K * IE);
  f('U', T * K * IE);
  f('A', T * K * IE);
  f('Y', T * K * H);
  f('mlpOut', T * H);
  if (spec.layers.some((l) => l.mlp === 'dense')) for (const x of ['denseG', 'denseU', 'denseA']) f(x, T * spec.denseIntermediate);
  const m = spec.attention.mla;
  if (att.kind === 'mla' && m) {
    if (m.qLoraRank !== null) (f('mla.qA', T * m.qLoraRank), f('mla.qAn', T * m.qLoraRank), f('mla.qARstd', T));
    f('mla.kvLat', T * m.kvLoraRank);
    f('mla.kvLatN', T * m.kvLoraRank);
    f('mla.kvRstd', T);
    f('mla.kRope', T * m.qkRopeHeadDim);
    f('mla.kvB', T * NH * (m.qkNopeHeadDim + m.vHeadDim));
  }
  const sh = spec.moe.sharedExperts;
  if (sh && spec.layers.some((l) => l.mlp === 'moe')) {
    for (const x of ['shared.g', 'shared.u', 'shared.a']) f(x, T * sh.intermediate);
    if (sh.gated) (f('shared.y', T * H), f('shared.gate', T));
  }
}

/** Forward(spec, {maxTokens: T}) beyond its LayerActs: residual, head, xent work, rope tables. */
function forwardItems(it: Items, spec: ModelSpec, T: number, headRows?: number): void {
  const H = spec.hidden;
  // (its LayerActs: the first trained layer's, see TrainGraph)
  for (const [label, n] of [['resid', T * H], ['finalH', T * H], ['finalRstd', T], ['ids', T], ['targets', T], ['positions', T], ['rowLoss', T], ['rowLse', T]] as const) it.f32(label, 'activations', n);
  // the logits of one token chunk (the head computes each logit once, a chunk of tokens at a time; its dlogits in place)
  it.f32('xent.work', 'workspace', headWorkElements(spec, T, headRows));
  const rot = spec.rope.partialDim ?? spec.headDim;
  it.f32('rope.cos|sin', 'workspace', spec.maxPos * (rot / 2), 2);
}

/** BackwardWork(spec, T). */
function backwardItems(it: Items, spec: ModelSpec, T: number): void {
  const { hidden: H, numHeads: NH } = spec;
  const { numExperts: E, topK: K, expertIntermediate: IE } = spec.moe;
  const R = T * K;
  const f = (label: string, n: number) => it.f32(label, 'workspace', n);
  for (const x of ['dResid', 'dA', 'dHn', 'dTmp']) f(x, T * H);
  f('dTopW', T * K);
  f('dLogits', T * E);
  f('dY', R * H);
  f('dG', R * IE);
  f('dU', R * IE);
  const att = spec.attention;
  const w = attentionWidths(spec);
  const raw = att.kind === 'mha' && (att.qkNorm !== 'none' || att.clipQkv !== null);
  f('dO', T * w.o);
  f('dq', T * w.q);
  f('dk', T * w.k);
  f('dv', T * w.v);
  f('dqRaw', raw ? T * w.q : 1);
  f('dkRaw', raw ? T * w.k : 1);
  if (att.kind === 'mha' && att.clipQkv !== null) f('dvClip', T * w.v);
  f('delta', T * NH);
  if (spec.layers.some((l) => l.mlp === 'dense')) for (const x of ['dDenseG', 'dDenseU', 'dDenseA']) f(x, T * spec.denseIntermediate);
  const m = att.mla;
  if (att.kind === 'mla' && m) {
    if (m.qLoraRank !== null) (f('dMla.qAn', T * m.qLoraRank), f('dMla.qA', T * m.qLoraRank));
    f('dMla.kvLatN', T * m.kvLoraRank);
    f('dMla.kvLat', T * m.kvLoraRank);
    f('dMla.kRope', T * m.qkRopeHeadDim);
    f('dMla.kvB', T * NH * (m.qkNopeHeadDim + m.vHeadDim));
  }
  const sh = spec.moe.sharedExperts;
  if (sh && spec.layers.some((l) => l.mlp === 'moe')) {
    for (const x of ['dShared.g', 'dShared.u', 'dShared.a']) f(x, T * sh.intermediate);
    if (sh.gated) (f('dShared.y', T * H), f('dShared.gate', T));
  }
}

/**
 * Trainer: frozen cache, topk work, flag, the dense-gradient scratch shared by the layers, and per trained MoE layer its
 * expert copies (4-bit: one shared f32 scratch instead, and each selection's overlay), selections, router state.
 */
function trainerItems(it: Items, spec: ModelSpec, s: PlanSettings, moeTrained: number): void {
  const H = spec.hidden;
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const per = E * IE * H;
  // streamed frozen layers: the cache is in host memory (planRam)
  const cached = s.trainFrom > 0 && !s.streamFrozen ? s.frozenCacheN : 0;
  it.bytes('frozen-cache', 'cache', cached * s.seq * H * 4, cached > 0 ? 1 : 0);
  it.f32('topk.work', 'workspace', TOPK_WORKSPACE_WORDS);
  it.f32('finite.flag', 'workspace', 1);
  if (s.perEntryStep) it.f32('adam.bias', 'optimizer', 2 * ((s.steps ?? 180) + 1));
  const n = moeTrained;
  const one = n > 0 ? 1 : 0;
  // fused: the dense gradient and the f32 scratch are made per selection or export (planMemory's transient)
  const held = isFused(s) ? 0 : one;
  for (const w of denseWork(spec, s)) it.f32(w.label, 'workspace', w.n, w.count * held);
  if (s.quantizeExperts) {
    for (const w of scratchWork(spec, s)) it.f32(w.label, 'workspace', w.n, held);
  } else {
    // The Trainer moves gate and up into one [2, E, IE, H] buffer (the loaded f32 gate/up buffers are freed).
    it.f32('L.gate_up', 'weights', 2 * per, n);
    it.f32('L.base.gate_up', 'weights', 2 * per, n);
    it.f32('L.base.down', 'weights', per, n);
  }
  const run = overlayRun(s);
  for (const [sel, numelSel] of [['G', 2 * per], ['D', per]] as const) {
    const k = activeCount(s.frac, numelSel);
    it.f32(`L.${sel}.idx|master`, 'masters', k, 2 * n);
    it.f32(`L.${sel}.m|v`, 'optimizer', k, 2 * n);
    if (s.perEntryStep) it.f32(`L.${sel}.steps`, 'optimizer', k, n);
    it.f32(`L.${sel}.grad`, 'workspace', k, n);
    // (fused: the overlay's indices live on the host, uploaded for a selection or an export: planMemory's transient)
    if (s.quantizeExperts) it.f32(`L.${sel}.overlay.${isFused(s) ? 'val' : 'idx|val'}`, 'masters', overlayCapacity(run, numelSel), (isFused(s) ? 1 : 2) * n);
    if (isFused(s)) {
      // the fused path's sparse table (8 bytes per entry) and Δ of every entry that differs from W0 (train/q4-base.ts), at their most
      const most = k + overlayCapacity(run, numelSel);
      it.f32(`L.${sel}.sparse.table`, 'masters', sparseTableWords((sel === 'G' ? gGeometry : dGeometry)({ E, IE, H }), most), n);
      it.f32(`${sel}.sparse.delta`, 'workspace', Math.max(1, most), one); // shared by the layers
    }
  }
  it.f32('L.dRouter', 'workspace', E * H, n);
  it.f32('L.routerBuf', 'optimizer', E * H, n);
  sharedTrainItems(it, spec, s, moeTrained);
}

/** What sizes the overlay: the run's steps and reselections (default METHOD's 180 steps, every 50). */
const overlayRun = (s: PlanSettings) => ({ frac: s.frac, steps: s.steps ?? 180, reselectEvery: s.reselectEvery ?? 50 });

/** 4-bit runs are fused unless fusedExperts is false. */
export const isFused = (s: PlanSettings): boolean => !!s.quantizeExperts && s.fusedExperts !== false;

/**
 * The dense-gradient scratch of the importance passes (Importance.acquire): the whole [2·per], [per]; or in expert chunks
 * one chunk's gate, up, down and the exact top-k over chunks (train/chunked-topk.ts: running sets, merger).
 */
function denseWork(spec: ModelSpec, s: PlanSettings): { label: string; n: number; count: number }[] {
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const per = E * IE * spec.hidden;
  const chunk = scratchExperts(spec, s);
  if (!s.quantizeExperts || chunk >= E) return [{ label: 'denseG', n: 2 * per, count: 1 }, { label: 'denseD', n: per, count: 1 }];
  const kG = activeCount(s.frac, 2 * per), kD = activeCount(s.frac, per);
  return [
    { label: 'dense.chunk.gate|up|down', n: chunk * IE * spec.hidden, count: 3 },
    { label: 'topk.run.gate|up.val|idx', n: kG, count: 4 },
    { label: 'topk.run.down.val|idx', n: kD, count: 2 },
    { label: 'topk.cand.val|idx', n: 2 * kG, count: 2 },
    { label: 'topk.pick', n: kG, count: 1 },
  ];
}

/** 4-bit runs: the f32 scratch of one (the largest) expert chunk (q4-base.ts expertScratch). */
function scratchWork(spec: ModelSpec, s: PlanSettings): { label: string; n: number }[] {
  const chunk = scratchExperts(spec, s) * spec.moe.expertIntermediate * spec.hidden; // one role of the largest chunk
  return [{ label: 'experts.scratch.gate_up', n: 2 * chunk }, { label: 'experts.scratch.down', n: chunk }];
}

/**
 * One trained MoE layer's buffers of a selection (Trainer.select, one layer at a time), at most: 4-bit (q4-base.ts
 * selectValues), per selection tensor the old indices, the grown entries' indices and values, the new overlay's indices
 * and values, the new masters; f32, the grown entries' indices and values.
 */
function selectWork(spec: ModelSpec, s: PlanSettings): { label: string; n: number; count: number }[] {
  const per = spec.moe.numExperts * spec.moe.expertIntermediate * spec.hidden;
  const run = overlayRun(s);
  return [['G', 2 * per], ['D', per]].flatMap(([sel, n]) => {
    const k = activeCount(s.frac, n as number);
    if (!s.quantizeExperts) return [{ label: `select.${sel}.grown.idx|vals`, n: k, count: 2 }];
    const ov = overlayCapacity(run, n as number);
    return [{ label: `select.${sel}.old.idx|grown.idx|grown.vals|master.new`, n: k, count: 4 }, { label: `select.${sel}.touched.idx|overlay.new`, n: ov, count: 2 }];
  });
}

const workBytes = (w: { n: number; count?: number }[]): number => w.reduce((a, x) => a + bufBytes(x.n * 4) * (x.count ?? 1), 0);

/** SharedTraining: per trained MoE layer, gate|up moved into one buffer, W0 copies, dense gradients, two selections. */
function sharedTrainItems(it: Items, spec: ModelSpec, s: PlanSettings, moeTrained: number): void {
  const sh = spec.moe.sharedExperts;
  const n = s.trainShared && sh ? moeTrained : 0;
  const ps = (sh?.intermediate ?? 0) * spec.hidden; // one shared weight [IS, H]
  it.f32('L.shared.gate_up', 'weights', 2 * ps, n);
  it.f32('L.shared.base.gate_up', 'weights', 2 * ps, n);
  it.f32('L.shared.base.down', 'weights', ps, n);
  it.f32('L.shared.dGate|dUp', 'workspace', ps, 2 * n);
  it.f32('L.shared.dGateUp', 'workspace', 2 * ps, n);
  it.f32('L.shared.dDown', 'workspace', ps, n);
  for (const [sel, numelSel] of [['SG', 2 * ps], ['SD', ps]] as const) {
    const k = activeCount(s.frac, numelSel);
    it.f32(`L.${sel}.idx|master`, 'masters', k, 2 * n);
    it.f32(`L.${sel}.m|v`, 'optimizer', k, 2 * n);
    if (s.perEntryStep) it.f32(`L.${sel}.steps`, 'optimizer', k, n);
    it.f32(`L.${sel}.grad`, 'workspace', k, n);
  }
}

/** Bytes of the shared experts' importance accumulators (Trainer.init: [2·IS·H] + [IS·H] per trained MoE layer). */
function sharedImportanceBytes(spec: ModelSpec, s: PlanSettings, moeTrained: number): number {
  const sh = spec.moe.sharedExperts;
  if (!s.trainShared || !sh) return 0;
  const ps = sh.intermediate * spec.hidden;
  return moeTrained * (bufBytes(2 * ps * 4) + bufBytes(ps * 4));
}

// ---------------------------------------------------------------------------------------------

export function sumByKind(items: PlanItem[]): ByKind {
  const out = Object.fromEntries(KINDS.map((k) => [k, 0])) as ByKind;
  out.total = 0;
  for (const i of items) {
    out[i.kind] += i.bytes * i.count;
    out.total += i.bytes * i.count;
  }
  return out;
}

function checkSettings(spec: ModelSpec, s: PlanSettings): void {
  if (!Number.isInteger(s.trainFrom) || s.trainFrom < 0 || s.trainFrom >= spec.numLayers) throw new RangeError(`train-from ${s.trainFrom} outside 0..${spec.numLayers - 1}`);
  for (const k of ['microbatch', 'seq'] as const) if (!Number.isInteger(s[k]) || s[k] < 1) throw new RangeError(`${k} must be a positive integer, got ${s[k]}`);
  if (!(s.frac > 0 && s.frac <= 1)) throw new RangeError(`frac must be in (0, 1], got ${s.frac}`);
  if (!Number.isInteger(s.frozenCacheN) || s.frozenCacheN < 0) throw new RangeError(`frozen-cache-n must be a non-negative integer, got ${s.frozenCacheN}`);
  if (s.expertChunk !== undefined) {
    if (!Number.isInteger(s.expertChunk) || s.expertChunk < 1) throw new RangeError(`expert-chunk must be a positive integer, got ${s.expertChunk}`);
    if (!s.quantizeExperts && s.expertChunk < spec.moe.numExperts) throw new RangeError('expert-chunk applies to 4-bit experts (--quantize-experts) only');
  }
}

/** Every GPU buffer of a training run; `residentLayers` = the layers whose weights are loaded (default all). */
export function planItems(spec: ModelSpec, s: PlanSettings, residentLayers?: number[]): PlanItem[] {
  checkSettings(spec, s);
  const it = new Items();
  const T = s.microbatch * s.seq;
  const trained = Array.from({ length: spec.numLayers - s.trainFrom }, (_, i) => s.trainFrom + i);
  weightItems(it, spec, new Set(trained), residentLayers ?? spec.layers.map((l) => l.index), s.quantizeExperts, !!s.trainShared, !embedStreamed(spec, s), hostedLayers(spec, s));
  slotItems(it, spec, s);
  forwardItems(it, spec, T, s.headRows);
  layerActsItems(it, spec, T, trained.length);
  it.f32('xIn', 'activations', T * spec.hidden, trained.length);
  backwardItems(it, spec, T);
  trainerItems(it, spec, s, trained.filter((L) => spec.layers[L]!.mlp === 'moe').length);
  return it.list;
}

/** Host bytes: the largest tensor while loading (raw bf16 + its converted copy), or a snapshot of the trained state. */
function planRam(spec: ModelSpec, s: PlanSettings): number {
  const trained = new Set(Array.from({ length: spec.numLayers - s.trainFrom }, (_, i) => s.trainFrom + i));
  let load = 0;
  for (const L of spec.layers.map((l) => l.index)) {
    for (const e of layerTensors(spec, L)) {
      const n = numel(e.shape);
      const f32 = F32_ROLES.has(e.role) || (e.role.startsWith('expert.') && trained.has(L) && !s.quantizeExperts);
      load = Math.max(load, 2 * n + (f32 ? 4 * n : 2 * n));
    }
  }
  for (const e of globalTensors(spec)) load = Math.max(load, 4 * numel(e.shape));
  const per = spec.moe.numExperts * spec.moe.expertIntermediate * spec.hidden;
  const moeTrained = [...trained].filter((L) => spec.layers[L]!.mlp === 'moe').length;
  const k = activeCount(s.frac, 2 * per) + activeCount(s.frac, per);
  const snapshot = moeTrained * (k * 4 * 4 + 2 * spec.moe.numExperts * spec.hidden * 4);
  // streamed frozen layers: every training sample's input of trainFrom, in host memory (FrozenCache 'host')
  const hostCache = s.streamFrozen && s.trainFrom > 0 ? s.frozenCacheN * s.seq * spec.hidden * 4 : 0;
  return Math.max(load, snapshot) + hostCache;
}

/** Host-visible bytes of the hosted layers' 4-bit experts (each buffer as createBuffer rounds it). */
function hostedBytes(spec: ModelSpec, s: PlanSettings): number {
  const n = hostedLayers(spec, s).length;
  if (!n) return 0;
  const lay = q4ExpertLayouts(spec, s.quantizeExperts!.groupSize);
  return n * (bufBytes(lay.gateUp.bytes) + bufBytes(lay.down.bytes));
}

/** The embedding is not resident: frozen layers streamed and untied embeddings (weights.ts embedStreamed). */
function embedStreamed(spec: ModelSpec, s: PlanSettings): boolean {
  return !!s.streamFrozen && s.trainFrom > 0 && !spec.tieEmbeddings;
}

/** GPU bytes of the embedding as loadEmbed uploads it (bf16). */
function embedBytes(spec: ModelSpec): number {
  return weightBytes(numel(globalTensors(spec).find((e) => e.role === 'embed')!.shape), false);
}

/**
 * GPU bytes loadLayer allocates for frozen layer L (its weights; the 4-bit quantizer's staging [2·IE·H] f32); with hosted
 * experts the layer's 4-bit experts go into a slot (frozen-pass.ts), not counted here.
 */
function frozenLayerBytes(spec: ModelSpec, s: PlanSettings, L: number): number {
  const inSlot = hostedLayers(spec, s).length > 0 ? [L] : [];
  const only = (layers: number[]) => {
    const it = new Items();
    weightItems(it, spec, new Set(), layers, s.quantizeExperts, false, true, inSlot);
    return sumByKind(it.list).total;
  };
  const q4Stage = s.quantizeExperts && spec.layers[L]!.mlp === 'moe' ? bufBytes(2 * spec.moe.expertIntermediate * spec.hidden * 4) : 0;
  return only([L]) - only([]) + q4Stage;
}

export function planMemory(spec: ModelSpec, s: PlanSettings): MemoryPlan {
  const streamed = !!s.streamFrozen && s.trainFrom > 0;
  const trainedLayers = spec.layers.map((l) => l.index).filter((L) => L >= s.trainFrom);
  const items = planItems(spec, s, streamed ? trainedLayers : undefined);
  const gpu = sumByKind(items);
  const per = spec.moe.numExperts * spec.moe.expertIntermediate * spec.hidden;
  const moeTrained = spec.layers.filter((l) => l.index >= s.trainFrom && l.mlp === 'moe').length;
  // Importance scores: group layers' worth, or none beyond the dense scratch when layers go one at a time.
  // (dense gradient in expert chunks: one layer at a time, its scores per chunk)
  const chunked = !!s.quantizeExperts && scratchExperts(spec, s) < spec.moe.numExperts;
  const group = chunked ? 1 : Math.min(moeTrained, Math.max(1, s.importanceGroup ?? (s.quantizeExperts ? 1 : moeTrained)));
  const scores = group > 1 ? group * bufBytes(2 * per * 4) + group * bufBytes(per * 4) : 0;
  // fused: the dense gradient (a ranking; not made for the first one's groups of several layers) or the f32 scratch
  // and one layer's overlay indices (train/q4-base.ts release: per layer)
  const run = overlayRun(s);
  const overlayIdx = bufBytes(4 * overlayCapacity(run, 2 * per)) + bufBytes(4 * overlayCapacity(run, per));
  const select = moeTrained > 0 ? workBytes(selectWork(spec, s)) : 0;
  const work = isFused(s) && moeTrained > 0 ? Math.max(workBytes(denseWork(spec, s)), workBytes(scratchWork(spec, s)) + overlayIdx + select) : select;
  const transient = Math.max(scores, work) + sharedImportanceBytes(spec, s, moeTrained);
  // the frozen pass loads a streamed embedding, then one frozen layer at a time
  let staging = embedStreamed(spec, s) ? embedBytes(spec) : 0;
  if (streamed) for (let L = 0; L < s.trainFrom; L++) staging = Math.max(staging, frozenLayerBytes(spec, s, L));
  const peak = gpu.total + Math.max(transient, staging);
  const hostVisible = hostedBytes(spec, s);
  const other = streamed ? null : s.trainFrom > 0 ? planMemory(spec, { ...s, streamFrozen: true }) : null;

  return {
    settings: { ...s },
    gpu,
    transient,
    staging,
    peak,
    hostVisible,
    ram: planRam(spec, s) + hostVisible,
    storage: planStorage(spec),
    streamedFrozen: other ? other.streamedFrozen : { gpu, peak, fits: (b) => peak <= b },
    items,
    fits: (b) => peak <= b,
  };
}

/** The plan as plain JSON (byte counts; `fits` against `gpuBytes`), the largest items first. */
export function planJson(p: MemoryPlan, gpuBytes: number, topItems = 12): Record<string, unknown> {
  const GiB = 2 ** 30;
  const gib = (b: number) => Math.round((b / GiB) * 1000) / 1000;
  return {
    settings: p.settings,
    gpuBytes,
    gpu: p.gpu,
    transient: p.transient,
    staging: p.staging,
    peak: p.peak,
    peakGiB: gib(p.peak),
    hostVisible: p.hostVisible,
    ram: p.ram,
    storage: p.storage,
    fits: p.fits(gpuBytes),
    streamedFrozen: { gpu: p.streamedFrozen.gpu, peak: p.streamedFrozen.peak, peakGiB: gib(p.streamedFrozen.peak), fits: p.streamedFrozen.fits(gpuBytes) },
    largest: [...p.items].sort((a, b) => b.bytes * b.count - a.bytes * a.count).slice(0, topItems).map((i) => ({ ...i, total: i.bytes * i.count })),
  };
}

/** Bytes as GiB (2 decimals), or MiB (1 decimal) below 1 GiB: how refusals and notices name memory. */
export const bytesText = (b: number): string => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);

/** A run whose plan does not fit the GPU; `suggestion` = suggestSettings' proposal (null: none fits). */
export class PlanError extends Error {
  override name = 'PlanError';
  constructor(readonly plan: MemoryPlan, readonly gpuBytes: number, readonly suggestion: PlanSettings | null) {
    const s = plan.settings;
    const what = (x: PlanSettings) => `train-from ${x.trainFrom}, microbatch ${x.microbatch}, seq ${x.seq}, frozen-cache-n ${x.frozenCacheN}${x.quantizeExperts ? `, 4-bit experts (group ${x.quantizeExperts.groupSize}${x.expertChunk ? `, in chunks of ${x.expertChunk}` : ''})` : ''}${x.streamFrozen ? ', frozen layers streamed from storage (--stream-frozen)' : ''}${x.hostExperts && x.quantizeExperts ? ', trained layers\' 4-bit experts in host memory' : ''}`;
    super(
      `this run needs ${bytesText(plan.peak)} of GPU memory (${what(s)}); the GPU has ${bytesText(gpuBytes)}. ` +
        (suggestion ? `Settings that fit: ${what(suggestion)}.` : s.quantizeExperts ? 'No settings of this design fit.' : 'No unquantized settings fit; try --quantize-experts.'),
    );
  }
}

/** Throws a PlanError (with suggestSettings' proposal) unless the run's peak fits gpuBytes; returns the plan. */
export function assertFits(spec: ModelSpec, s: PlanSettings, gpuBytes: number): MemoryPlan {
  const p = planMemory(spec, s);
  if (!p.fits(gpuBytes)) throw new PlanError(p, gpuBytes, suggestSettings(spec, s, gpuBytes));
  return p;
}

/**
 * Settings that fit `gpuBytes`, changing as little as possible, in this order: the asked run with a smaller frozen cache;
 * the asked run with its frozen layers streamed from storage (the same results; their outputs cached in host memory);
 * the most trained layers (smallest trainFrom ≥ the asked one), then the largest microbatch ≤ the asked one, resident
 * with as much of the asked cache as fits, or else streamed. Same seq and frac. null when not even the top layer at
 * microbatch 1 fits.
 */
export function suggestSettings(spec: ModelSpec, s: PlanSettings, gpuBytes: number): PlanSettings | null {
  const resident = (trainFrom: number, microbatch: number): PlanSettings | null => {
    if (s.streamFrozen) return planMemory(spec, { ...s, trainFrom, microbatch }).fits(gpuBytes) ? { ...s, trainFrom, microbatch } : null;
    const p = planMemory(spec, { ...s, trainFrom, microbatch, frozenCacheN: 0 });
    if (!p.fits(gpuBytes)) return null;
    const perSample = bufBytes(s.seq * spec.hidden * 4);
    const frozenCacheN = trainFrom > 0 ? Math.min(s.frozenCacheN, Math.floor((gpuBytes - p.peak) / perSample)) : s.frozenCacheN;
    return { ...s, trainFrom, microbatch, frozenCacheN };
  };
  const streamed = (trainFrom: number, microbatch: number): PlanSettings | null => {
    if (s.streamFrozen || trainFrom === 0) return null;
    const x = { ...s, trainFrom, microbatch, streamFrozen: true };
    return planMemory(spec, x).fits(gpuBytes) ? x : null;
  };
  const asked = resident(s.trainFrom, s.microbatch) ?? streamed(s.trainFrom, s.microbatch);
  if (asked) return asked;
  for (const kind of [resident, streamed]) {
    for (let trainFrom = s.trainFrom; trainFrom < spec.numLayers; trainFrom++) {
      for (let microbatch = s.microbatch; microbatch >= 1; microbatch--) {
        const x = kind(trainFrom, microbatch);
        if (x) return x;
      }
    }
  }
  return null;
}
