// CPU float64 reference of a whole MoE decoder's forward pass (tests only), composed from the per-op oracles in this folder.
// HF semantics of every family: embed → layers (MHA or MLA attention, routed + shared experts or dense MLP) → final norm → logits, loss.
//
// Legend: T tokens (batch*seq), H hidden, NH/NKV heads, D head dim, E experts, K top-k, IE expert width, I dense width, V vocab.
// Weights are given by checkpoint name as plain numbers (bf16 already decoded), linear weights [out, in].

import type { Checkpoint } from '../io/checkpoint.ts';
import { decodeF32 } from '../io/dtype.ts';
import type { ModelSpec, TensorEntry, TensorRole } from '../model/spec.ts';
import { globalTensors, layerTensors } from '../model/tensors.ts';
import { ropeTables } from '../ops/rope.ts';
import { XENT_IGNORE } from '../ops/xent.ts';
import { moeRouteMaxTiles } from '../ops/moe_route.ts';
import { embeddingForward } from './embedding.ts';
import { rmsnormForward } from './rmsnorm.ts';
import { matmulForward } from './matmul.ts';
import { ropeForward } from './rope.ts';
import { attentionForward } from './attention.ts';
import { routerForward, routerLogits } from './router.ts';
import { moeRoute } from './moe_route.ts';
import { expertsForward, type RefSaved } from './experts.ts';
import type { ExpertsDims, ExpertWeights } from '../ops/experts.ts';
import type { RouterDims } from '../ops/router.ts';
import { add, addInPlace, clamp, sigmoidGate, siluMul } from './elementwise.ts';
import { mlaKvForward } from './mla_kv.ts';
import { logitsForward, xentForward } from './xent.ts';

export type RefTensors = Map<string, Float64Array>;

export interface RefForwardOptions {
  /** [T] explicit targets, 0xFFFFFFFF = ignored; default: the next token within each sample (last position ignored). */
  targets?: Uint32Array;
  /** Compute the full logits [T, V] (default true; skip it on big vocabularies: the loss does not need it). */
  logits?: boolean;
}

export interface RefForwardResult {
  /** numLayers + 1 tensors [T, H]: hidden[0] = embedding, hidden[i] = after layer i-1, hidden[numLayers] = after the final norm. */
  hidden: Float64Array[];
  /** numLayers tensors [T, H]: the post-attention-norm input of each layer's MLP / MoE block. */
  mlpInput: Float64Array[];
  /** numLayers entries [T, E] (= mlpInput · router^T); null for dense layers. */
  routerLogits: (Float64Array | null)[];
  /** numLayers entries [T, K] (experts chosen, best first); null for dense layers. */
  topIdx: (Uint32Array | null)[];
  /** Smallest gap between the K-th and (K+1)-th routing score over all tokens and MoE layers (Infinity without any). */
  minTopkGap: number;
  /** [T, H]: the residual stream after the last layer (the final norm's input). */
  residual: Float64Array;
  /** [T, V], or null with opts.logits false. */
  logits: Float64Array | null;
  /** [T] cross-entropy of each row (0 where the target is ignored). */
  rowLoss: Float64Array;
  /** Mean of rowLoss over the non-ignored targets. */
  loss: number;
  /** Number of non-ignored targets. */
  tokens: number;
}

// ---------------------------------------------------------------------------------------------------------------
// weights

/** Every tensor of `spec` read from a checkpoint and decoded to float64 (bf16/f16/f32 → exact). */
export async function refTensorsFromCheckpoint(spec: ModelSpec, ckpt: Checkpoint): Promise<RefTensors> {
  const out: RefTensors = new Map();
  const entries = [...globalTensors(spec)];
  for (let L = 0; L < spec.numLayers; L++) entries.push(...layerTensors(spec, L));
  for (const e of entries) {
    const info = ckpt.tensors.get(e.name);
    if (!info) throw new Error(`checkpoint has no tensor "${e.name}"`);
    out.set(e.name, Float64Array.from(decodeF32(info.dtype, await ckpt.readTensor(e.name))));
  }
  return out;
}

function need(tensors: RefTensors, e: TensorEntry | undefined, what: string): Float64Array {
  if (!e) throw new Error(`refForward: the spec has no ${what}`);
  const t = tensors.get(e.name);
  if (!t) throw new Error(`refForward: no tensor "${e.name}"`);
  const n = e.shape.reduce((a, b) => a * b, 1);
  if (t.length !== n) throw new Error(`refForward: "${e.name}" has ${t.length} elements, expected ${n} [${e.shape}]`);
  return t;
}

interface LayerW {
  get(role: TensorRole): Float64Array;
  opt(role: TensorRole): Float64Array | null;
}

function layerWeights(spec: ModelSpec, L: number, tensors: RefTensors): LayerW {
  const byRole = new Map<TensorRole, TensorEntry>();
  for (const e of layerTensors(spec, L)) if (e.expert === undefined) byRole.set(e.role, e);
  return {
    get: (role) => need(tensors, byRole.get(role), `layer ${L} ${role}`),
    opt: (role) => (byRole.has(role) ? need(tensors, byRole.get(role), role) : null),
  };
}

/** Routed experts of layer L stacked as gate, up [E, IE, H] and down [E, H, IE] (per-expert or fused checkpoints). */
function stackedExperts(spec: ModelSpec, L: number, tensors: RefTensors): { gate: Float64Array; up: Float64Array; down: Float64Array } {
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const per = IE * spec.hidden;
  const gate = new Float64Array(E * per), up = new Float64Array(E * per), down = new Float64Array(E * per);
  for (const e of layerTensors(spec, L)) {
    if (e.role === 'expert.gate') gate.set(need(tensors, e, e.role), e.expert! * per);
    else if (e.role === 'expert.up') up.set(need(tensors, e, e.role), e.expert! * per);
    else if (e.role === 'expert.down') down.set(need(tensors, e, e.role), e.expert! * per);
    else if (e.role === 'expert.down_fused') down.set(need(tensors, e, e.role));
    else if (e.role === 'expert.gate_up_fused') {
      // [E, 2*IE, H]: per expert, the gate rows then the up rows
      const w = need(tensors, e, e.role);
      for (let x = 0; x < E; x++) {
        gate.set(w.subarray(2 * x * per, (2 * x + 1) * per), x * per);
        up.set(w.subarray((2 * x + 1) * per, (2 * x + 2) * per), x * per);
      }
    }
  }
  return { gate, up, down };
}

// ---------------------------------------------------------------------------------------------------------------
// forward

/** Everything the MoE block of layer L computes on its input hn [T, H] (with the router and experts in `tensors`). */
export interface RefMoeBlock {
  out: Float64Array; // [T, H]
  logits: Float64Array; // [T, E]
  probs: Float64Array; // [T, E]
  topIdx: Uint32Array; // [T, K]
  topW: Float64Array; // [T, K]
  route: { offsets: Uint32Array; slot: Uint32Array; rowPair: Uint32Array; tiles: Uint32Array };
  saved: RefSaved;
  experts: ExpertWeights<Float64Array>;
  dims: ExpertsDims;
  routerDims: RouterDims;
}

/** The routed-experts block of MoE layer L on hn [T, H]: router, top-k, experts. */
export function refMoeBlock(s: ModelSpec, L: number, tensors: RefTensors, hn: Float64Array, T: number): RefMoeBlock {
  const { hidden: H } = s;
  const { numExperts: E, topK: K, expertIntermediate: IE } = s.moe;
  const w = layerWeights(s, L, tensors);
  const logits = new Float64Array(T * E), probs = new Float64Array(T * E); // [T, E]
  const topIdx = new Uint32Array(T * K), topW = new Float64Array(T * K); // [T, K]
  routerLogits(logits, hn, w.get('router'), T, H, E);
  const routerDims: RouterDims = {
    T, E, K, scoring: s.moe.scoring, nGroup: s.moe.nGroup, topkGroup: s.moe.topkGroup,
    normTopkProb: s.moe.normTopkProb, routedScalingFactor: s.moe.routedScalingFactor,
  };
  routerForward(topIdx, topW, probs, logits, w.opt('router.bias_correction'), routerDims);
  const counts = new Uint32Array(E), offsets = new Uint32Array(E + 1); // [E], [E+1]
  const slot = new Uint32Array(T * K), rowPair = new Uint32Array(T * K); // [T*K]
  const rd = { T, K, E, tileM: 16 };
  const tiles = new Uint32Array(4 * moeRouteMaxTiles(rd)); // [maxTiles, 4] (unused by the oracle's experts)
  moeRoute(counts, offsets, slot, rowPair, tiles, topIdx, rd);
  const R = T * K;
  const saved = { G: new Float64Array(R * IE), U: new Float64Array(R * IE), A: new Float64Array(R * IE), Y: new Float64Array(R * H) };
  const experts = stackedExperts(s, L, tensors);
  const dims: ExpertsDims = { T, H, E, K, IE, wDtype: 'f32' };
  const route = { offsets, slot, rowPair, tiles };
  const out = new Float64Array(T * H);
  expertsForward(out, saved, hn, experts, topW, route, dims);
  return { out, logits, probs, topIdx, topW, route, saved, experts, dims, routerDims };
}

/** targets[t] = ids[t+1] within each sample; the last position of each sample is ignored. */
export function refNextTokenTargets(ids: ArrayLike<number>, batch: number, seq: number): Uint32Array {
  const tg = new Uint32Array(batch * seq).fill(XENT_IGNORE);
  for (let b = 0; b < batch; b++) for (let i = 0; i + 1 < seq; i++) tg[b * seq + i] = ids[b * seq + i + 1]!;
  return tg;
}

/** Smallest probs[K-1] - probs[K] (sorted descending) over the rows of probs [T, E]. */
function topkGap(probs: Float64Array, T: number, E: number, K: number): number {
  if (K >= E) return Infinity;
  let gap = Infinity;
  for (let t = 0; t < T; t++) {
    const row = Array.from(probs.subarray(t * E, (t + 1) * E)).sort((a, b) => b - a);
    gap = Math.min(gap, row[K - 1]! - row[K]!);
  }
  return gap;
}

type Lin = (y: Float64Array, x: Float64Array, w: Float64Array, b: Float64Array | null, N: number, Kin: number, accumulate?: boolean) => void;

interface AttnContext {
  s: ModelSpec;
  T: number;
  batch: number;
  seq: number;
  positions: Uint32Array; // [T]
  cos: Float64Array;
  sin: Float64Array;
  rotDim: number;
  lin: Lin;
}

/** Multi-head attention of layer L: o [T, NH, D] from xn [T, H] (q/k norm, OLMoE's clip_qkv, RoPE, causal GQA). */
function refMha(c: AttnContext, L: number, w: LayerW, xn: Float64Array): Float64Array {
  const { s, T, lin } = c;
  const att = s.attention;
  const { hidden: H, numHeads: NH, numKvHeads: NKV, headDim: D, rmsEps: eps } = s;
  const f64 = (n: number) => new Float64Array(n);
  const q = f64(T * NH * D), k = f64(T * NKV * D), v = f64(T * NKV * D); // [T, NH, D], [T, NKV, D] x2
  const qRaw = f64(T * NH * D), kRaw = f64(T * NKV * D); // before q/k norm and rope
  lin(qRaw, xn, w.get('attn.q'), w.opt('attn.q_bias'), NH * D, H);
  lin(kRaw, xn, w.get('attn.k'), w.opt('attn.k_bias'), NKV * D, H);
  lin(v, xn, w.get('attn.v'), w.opt('attn.v_bias'), NKV * D, H);
  if (att.qkNorm === 'per_head') {
    rmsnormForward(q, f64(T * NH), qRaw, w.get('attn.q_norm'), T * NH, D, eps);
    rmsnormForward(k, f64(T * NKV), kRaw, w.get('attn.k_norm'), T * NKV, D, eps);
  } else if (att.qkNorm === 'full') {
    rmsnormForward(q, f64(T), qRaw, w.get('attn.q_norm'), T, NH * D, eps);
    rmsnormForward(k, f64(T), kRaw, w.get('attn.k_norm'), T, NKV * D, eps);
  } else {
    q.set(qRaw);
    k.set(kRaw);
  }
  if (att.clipQkv !== null) for (const t of [q, k, v]) clamp(t, t, -att.clipQkv, att.clipQkv, t.length);
  const rd = { tokens: T, headDim: D, rotDim: c.rotDim, interleave: s.rope.interleave };
  ropeForward(q, c.positions, c.cos, c.sin, { ...rd, nHeads: NH });
  ropeForward(k, c.positions, c.cos, c.sin, { ...rd, nHeads: NKV });
  const o = f64(T * NH * D);
  attentionForward(o, f64(T * NH), q, k, v, { batch: c.batch, seq: c.seq, nHeads: NH, nKvHeads: NKV, dQK: D, dV: D, scale: att.softmaxScale, window: s.layers[L]!.slidingWindow });
  return o;
}

/**
 * Multi-head latent attention of layer L (DeepSeek-V3): o [T, NH, DV] from xn [T, H]. q = q_b(norm(q_a(x))) (or q_proj);
 * kv_a(x) = [latent | rope key]; k = [kv_b(norm(latent)) nope part | the shared roped key], v = kv_b's value part.
 */
function refMla(c: AttnContext, L: number, w: LayerW, xn: Float64Array): Float64Array {
  const { s, T, lin } = c;
  const m = s.attention.mla!;
  const { hidden: H, numHeads: NH, rmsEps: eps } = s;
  const { qkNopeHeadDim: DN, qkRopeHeadDim: DR, vHeadDim: DV, kvLoraRank: KR, qLoraRank: QR } = m;
  const D = DN + DR;
  const f64 = (n: number) => new Float64Array(n);
  const q = f64(T * NH * D); // [T, NH, D]
  if (QR === null) lin(q, xn, w.get('attn.q'), w.opt('attn.q_bias'), NH * D, H);
  else {
    const qA = f64(T * QR), qAn = f64(T * QR); // [T, QR]
    lin(qA, xn, w.get('attn.q_a'), w.opt('attn.q_a_bias'), QR, H);
    rmsnormForward(qAn, f64(T), qA, w.get('attn.q_a_norm'), T, QR, eps);
    lin(q, qAn, w.get('attn.q_b'), null, NH * D, QR);
  }
  const kvA = f64(T * (KR + DR)); // [T, KR + DR]
  lin(kvA, xn, w.get('attn.kv_a'), w.opt('attn.kv_a_bias'), KR + DR, H);
  const lat = f64(T * KR), kRope = f64(T * DR); // [T, KR], [T, DR]
  for (let t = 0; t < T; t++) {
    lat.set(kvA.subarray(t * (KR + DR), t * (KR + DR) + KR), t * KR);
    kRope.set(kvA.subarray(t * (KR + DR) + KR, (t + 1) * (KR + DR)), t * DR);
  }
  const latN = f64(T * KR), kvB = f64(T * NH * (DN + DV)); // [T, KR], [T, NH, DN + DV]
  rmsnormForward(latN, f64(T), lat, w.get('attn.kv_a_norm'), T, KR, eps);
  lin(kvB, latN, w.get('attn.kv_b'), null, NH * (DN + DV), KR);
  const il = s.rope.interleave;
  ropeForward(q, c.positions, c.cos, c.sin, { tokens: T, nHeads: NH, headDim: D, rotStart: DN, rotDim: c.rotDim, interleave: il });
  ropeForward(kRope, c.positions, c.cos, c.sin, { tokens: T, nHeads: 1, headDim: DR, rotDim: c.rotDim, interleave: il });
  const k = f64(T * NH * D), v = f64(T * NH * DV); // [T, NH, D], [T, NH, DV]
  mlaKvForward(k, v, kvB, kRope, { T, NH, DN, DR, DV });
  const o = f64(T * NH * DV);
  attentionForward(o, f64(T * NH), q, k, v, { batch: c.batch, seq: c.seq, nHeads: NH, nKvHeads: NH, dQK: D, dV: DV, scale: s.attention.softmaxScale, window: s.layers[L]!.slidingWindow });
  return o;
}

/** The shared experts of a MoE layer on hn [T, H]: down(silu(gate(hn)) · up(hn)), times sigmoid(shared_expert_gate · hn) when gated. */
function refShared(s: ModelSpec, w: LayerW, hn: Float64Array, T: number, lin: Lin): Float64Array {
  const sh = s.moe.sharedExperts!;
  const H = s.hidden, IS = sh.intermediate;
  const g = new Float64Array(T * IS), u = new Float64Array(T * IS), a = new Float64Array(T * IS); // [T, IS]
  lin(g, hn, w.get('shared.gate'), null, IS, H);
  lin(u, hn, w.get('shared.up'), null, IS, H);
  siluMul(a, g, u, T * IS);
  const y = new Float64Array(T * H); // [T, H]
  lin(y, a, w.get('shared.down'), null, H, IS);
  if (!sh.gated) return y;
  const gate = new Float64Array(T); // [T]
  lin(gate, hn, w.get('shared.expert_gate'), null, 1, H);
  const out = new Float64Array(T * H);
  sigmoidGate(out, gate, y, T, H);
  return out;
}

/** Forward of batch × seq tokens ids [T]; see RefForwardResult. */
export function refForward(spec: ModelSpec, tensors: RefTensors, ids: ArrayLike<number>, batch: number, seq: number, opts: RefForwardOptions = {}): RefForwardResult {
  const s = spec;
  const att = s.attention;
  const T = batch * seq;
  if (ids.length !== T) throw new Error(`refForward: ${ids.length} ids for batch ${batch} × seq ${seq}`);
  const { hidden: H, headDim: D, vocab: V, rmsEps: eps } = s;
  const { numExperts: E, topK: K, expertIntermediate: IE } = s.moe;
  const I = s.denseIntermediate;
  const f64 = (n: number) => new Float64Array(n);
  const lin = (y: Float64Array, x: Float64Array, w: Float64Array, b: Float64Array | null, N: number, Kin: number, accumulate = false) =>
    matmulForward(y, x, w, b, { M: T, N, K: Kin, wDtype: 'f32', accumulate });

  const globals = new Map(globalTensors(s).map((e) => [e.role, e]));
  const embed = need(tensors, globals.get('embed'), 'embedding'); // [V, H]
  const finalNorm = need(tensors, globals.get('final_norm'), 'final norm'); // [H]
  const lmHead = s.tieEmbeddings ? embed : need(tensors, globals.get('lm_head'), 'lm_head'); // [V, H]

  const rotDim = s.rope.partialDim ?? D;
  const rope = ropeTables(s.rope.theta, rotDim, Math.max(s.maxPos, seq), s.rope.scaling);
  const positions = Uint32Array.from({ length: T }, (_, t) => t % seq); // [T]

  const x = f64(T * H); // [T, H] residual stream
  embeddingForward(x, ids, embed, { tokens: T, hidden: H, vocab: V, tableDtype: 'f32' });
  const res: RefForwardResult = {
    hidden: [x.slice()], mlpInput: [], routerLogits: [], topIdx: [], minTopkGap: Infinity,
    logits: null, rowLoss: f64(T), loss: NaN, tokens: 0, residual: x,
  };

  const xn = f64(T * H), rstd = f64(T); // [T, H], [T]
  const h = f64(T * H); // [T, H] residual after attention
  const ctx: AttnContext = { s, T, batch, seq, positions, cos: rope.cos, sin: rope.sin, rotDim, lin };

  for (let L = 0; L < s.numLayers; L++) {
    const w = layerWeights(s, L, tensors);
    // attention
    rmsnormForward(xn, rstd, x, w.get('input_norm'), T, H, eps);
    const o = att.kind === 'mla' ? refMla(ctx, L, w, xn) : refMha(ctx, L, w, xn); // [T, NH, DV]
    h.set(x);
    lin(h, o, w.get('attn.o'), w.opt('attn.o_bias'), H, o.length / T, true);

    // MLP input
    const hn = f64(T * H); // [T, H]
    rmsnormForward(hn, rstd, h, w.get('post_attn_norm'), T, H, eps);
    res.mlpInput.push(hn);

    const mlpOut = f64(T * H); // [T, H]
    if (s.layers[L]!.mlp === 'dense') {
      const g = f64(T * I), u = f64(T * I), a = f64(T * I); // [T, I]
      lin(g, hn, w.get('dense.gate'), null, I, H);
      lin(u, hn, w.get('dense.up'), null, I, H);
      siluMul(a, g, u, T * I);
      lin(mlpOut, a, w.get('dense.down'), null, H, I);
      res.routerLogits.push(null);
      res.topIdx.push(null);
    } else {
      const b = refMoeBlock(s, L, tensors, hn, T);
      mlpOut.set(b.out);
      if (s.moe.sharedExperts) addInPlace(mlpOut, refShared(s, w, hn, T, lin), T * H);
      if (s.moe.scoring === 'softmax' && s.moe.nGroup === 1 && !s.moe.hasCorrectionBias) res.minTopkGap = Math.min(res.minTopkGap, topkGap(b.probs, T, E, K));
      res.routerLogits.push(b.logits);
      res.topIdx.push(b.topIdx);
    }
    add(x, h, mlpOut, T * H);
    if (L < s.numLayers - 1) res.hidden.push(x.slice());
  }

  // final norm, logits, loss
  const final = f64(T * H); // [T, H]
  rmsnormForward(final, rstd, x, finalNorm, T, H, eps);
  res.hidden.push(final);
  const ld = { T, H, V, wDtype: 'f32' as const };
  if (opts.logits ?? true) {
    res.logits = f64(T * V);
    logitsForward(res.logits, final, lmHead, ld);
  }
  const targets = opts.targets ?? refNextTokenTargets(ids, batch, seq);
  if (targets.length !== T) throw new Error(`refForward: ${targets.length} targets for ${T} tokens`);
  xentForward(res.rowLoss, f64(T), final, lmHead, targets, ld);
  let sum = 0;
  for (let t = 0; t < T; t++) if (targets[t] !== XENT_IGNORE) (sum += res.rowLoss[t]!), res.tokens++;
  res.loss = sum / Math.max(1, res.tokens);
  return res;
}
