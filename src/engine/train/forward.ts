// Forward pass of a whole MoE decoder on the GPU (Qwen3-MoE, Mixtral, OLMoE, Qwen2-MoE, DeepSeek-V3): embedding, layers
// (MHA or MLA attention, dense / routed + shared experts), final norm, chunked lm_head + cross-entropy. Activations are
// allocated once for maxTokens and reused layer to layer.
//
// Legend: T tokens (batch*seq), H hidden, NH/NKV heads, D head dim (MLA: DN + DR), DV value width (MLA; else D),
// E experts, K top-k, V vocab. MLA's own buffers live in mla-attention.ts, the shared experts' in shared-expert.ts.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, writeBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import { linear, type ModelWeights, type LayerWeights, type GpuTensor, type ExpertWeights } from './weights.ts';
import { rmsnormForward } from '../ops/rmsnorm.ts';
import { ropeForward, ropeTables } from '../ops/rope.ts';
import { ATTENTION_TILES, attentionBackwardScratch, attentionForward, type AttentionDims, type AttentionTiles } from '../ops/attention.ts';
import { routerForward, routerLogits } from '../ops/router.ts';
import { moeRoute } from '../ops/moe_route.ts';
import { EXPERT_TILE_M, expertsCombine, expertsDown, expertsForward, expertsGateUp, maxTilesOf, type ExpertsDims } from '../ops/experts.ts';
import { embeddingForward } from '../ops/embedding.ts';
import { xentHead, xentTokenChunk, xentWorkElements, XENT_IGNORE, type XentDims, type XentGrad } from '../ops/xent.ts';
import { addInPlace, clamp, siluMul } from '../ops/elementwise.ts';
import { MlaActs, mlaForward, mlaWidths } from './mla-attention.ts';
import { SharedActs, sharedForward } from './shared-expert.ts';


export type Capture = (name: string, data: Float32Array) => void;

export interface ForwardOptions {
  maxTokens: number;
  /** Attention kernel tiles for every sequence length (default: Forward.tiles' choice by length). */
  attentionTiles?: AttentionTiles;
  /**
   * Activations of forward-only layers to reuse instead of allocating (TrainGraph: its first trained layer's, free
   * whenever frozen layers, evaluation or the layer-major pass run: before that layer's forward or outside a pass).
   */
  acts?: LayerActs;
  /** The LM head's most token rows of logits at once (xentTokenChunk; default xentDefaultRows; plan/head.ts picks one). */
  headRows?: number;
}

/** Widths per token of the attention buffers: q/k [NH*D | NKV*D], v and o [NKV*DV | NH*DV]. */
export function attentionWidths(spec: ModelSpec): { q: number; k: number; v: number; o: number } {
  if (spec.attention.kind === 'mla') {
    const w = mlaWidths(spec);
    return { ...w, o: w.v };
  }
  const { numHeads: NH, numKvHeads: NKV, headDim: D } = spec;
  return { q: NH * D, k: NKV * D, v: NKV * D, o: NH * D };
}

/** Buffers for one layer's forward at T ≤ maxTokens tokens. */
export class LayerActs {
  readonly xn: GPUBuffer; // [T, H]   input-norm output
  readonly rstd1: GPUBuffer; // [T]
  readonly qRaw: GPUBuffer; // [T, NH*D]  q_proj output before the q/k norm (MHA with qkNorm; else 1 element)
  readonly kRaw: GPUBuffer; // [T, NKV*D]
  readonly q: GPUBuffer; // [T, NH*D]  normed (+ clipped) + roped
  readonly k: GPUBuffer; // [T, NKV*D]  (MLA: [T, NH*D])
  readonly v: GPUBuffer; // [T, NKV*D]  (MLA: [T, NH*DV])
  readonly qRstd: GPUBuffer; // [T*NH] per_head, [T] full
  readonly kRstd: GPUBuffer; // [T*NKV] per_head, [T] full
  /** OLMoE clip_qkv: q, k (after their norms) and v before the clamp; null without clipping. */
  readonly qClip: GPUBuffer | null; // [T, NH*D]
  readonly kClip: GPUBuffer | null; // [T, NKV*D]
  readonly vClip: GPUBuffer | null; // [T, NKV*D]
  readonly o: GPUBuffer; // [T, NH*D]  (MLA: [T, NH*DV])
  readonly lse: GPUBuffer; // [T, NH]
  readonly h: GPUBuffer; // [T, H]  residual after attention
  readonly hn: GPUBuffer; // [T, H]  post-attention norm (MLP input)
  readonly rstd2: GPUBuffer; // [T]
  readonly logits: GPUBuffer; // [T, E]
  readonly probs: GPUBuffer; // [T, E]
  readonly topIdx: GPUBuffer; // [T, K] u32
  readonly topW: GPUBuffer; // [T, K]
  readonly counts: GPUBuffer; // [E]
  readonly offsets: GPUBuffer; // [E+1]
  readonly slot: GPUBuffer; // [T*K]
  readonly rowPair: GPUBuffer; // [T*K]
  readonly tiles: GPUBuffer; // [maxTiles, 4]
  readonly G: GPUBuffer; // [T*K, IE]
  readonly U: GPUBuffer;
  readonly A: GPUBuffer;
  readonly Y: GPUBuffer; // [T*K, H]
  readonly mlpOut: GPUBuffer; // [T, H]
  readonly denseG: GPUBuffer | null; // [T, I]
  readonly denseU: GPUBuffer | null;
  readonly denseA: GPUBuffer | null;
  /** MLA's latent path (DeepSeek-V3); null for MHA. */
  readonly mla: MlaActs | null;
  /** Shared experts (DeepSeek-V3, Qwen2-MoE); null when the model has none. */
  readonly shared: SharedActs | null;

  constructor(gpu: GpuContext, spec: ModelSpec, T: number, kind = 'activations') {
    const { hidden: H, numHeads: NH, numKvHeads: NKV } = spec;
    const { numExperts: E, topK: K, expertIntermediate: IE } = spec.moe;
    const att = spec.attention;
    const f = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind });
    const w = attentionWidths(spec);
    const qkNorm = att.kind === 'mha' && att.qkNorm !== 'none';
    const clip = att.kind === 'mha' && att.clipQkv !== null;
    this.xn = f('xn', T * H);
    this.rstd1 = f('rstd1', T);
    this.qRaw = f('qRaw', qkNorm ? T * w.q : 1);
    this.kRaw = f('kRaw', qkNorm ? T * w.k : 1);
    this.q = f('q', T * w.q);
    this.k = f('k', T * w.k);
    this.v = f('v', T * w.v);
    this.qRstd = f('qRstd', qkNorm ? T * NH : 1);
    this.kRstd = f('kRstd', qkNorm ? T * NKV : 1);
    this.qClip = clip ? f('qClip', T * w.q) : null;
    this.kClip = clip ? f('kClip', T * w.k) : null;
    this.vClip = clip ? f('vClip', T * w.v) : null;
    this.o = f('o', T * w.o);
    this.lse = f('lse', T * NH);
    this.h = f('h', T * H);
    this.hn = f('hn', T * H);
    this.rstd2 = f('rstd2', T);
    this.logits = f('routerLogits', T * E);
    this.probs = f('probs', T * E);
    this.topIdx = f('topIdx', T * K);
    this.topW = f('topW', T * K);
    this.counts = f('counts', E);
    this.offsets = f('offsets', E + 1);
    this.slot = f('slot', T * K);
    this.rowPair = f('rowPair', T * K);
    this.tiles = f('tiles', maxTilesOf(expertDims(spec, T, 'bf16')) * 4);
    this.G = f('G', T * K * IE);
    this.U = f('U', T * K * IE);
    this.A = f('A', T * K * IE);
    this.Y = f('Y', T * K * H);
    this.mlpOut = f('mlpOut', T * H);
    const hasDense = spec.layers.some((l) => l.mlp === 'dense');
    const I = spec.denseIntermediate;
    this.denseG = hasDense ? f('denseG', T * I) : null;
    this.denseU = hasDense ? f('denseU', T * I) : null;
    this.denseA = hasDense ? f('denseA', T * I) : null;
    this.mla = att.kind === 'mla' ? new MlaActs(gpu, spec, T, kind) : null;
    this.shared = spec.moe.sharedExperts && spec.layers.some((l) => l.mlp === 'moe') ? new SharedActs(gpu, spec, T, kind) : null;
  }
}

/**
 * Expert GEMM dims; with `ex`, its dtype and the element offsets of gate/up/down (gate and up may share a buffer), and for
 * 4-bit experts the group size and (scale, zero) table words.
 */
export function expertDims(spec: ModelSpec, T: number, wDtype: ExpertsDims['wDtype'], ex?: ExpertWeights): ExpertsDims {
  const d: ExpertsDims = { T, H: spec.hidden, E: spec.moe.numExperts, K: spec.moe.topK, IE: spec.moe.expertIntermediate, wDtype };
  if (ex) Object.assign(d, { wDtype: ex.gate.dtype, gateOffset: ex.gate.offset, upOffset: ex.up.offset, downOffset: ex.down.offset });
  if (ex?.gate.q4) Object.assign(d, { groupSize: ex.gate.q4.G, gateSz: ex.gate.q4.sz, upSz: ex.up.q4!.sz, downSz: ex.down.q4!.sz });
  return d;
}

const lin = (enc: Encoder, y: GPUBuffer, x: GPUBuffer, w: GpuTensor, bias: GpuTensor | undefined, M: number, accumulate = false): void =>
  linear(enc, y, x, w, bias, M, accumulate);

/**
 * f32 elements of Forward.xentWork: one token chunk of logits (the head), reused by the attention backward (after the
 * head) for its GQA dv partials (attentionBackwardScratch; MLA has one kv head per query head).
 */
export function headWorkElements(spec: ModelSpec, T: number, headRows?: number): number {
  const part = spec.attention.kind === 'mha' ? attentionBackwardScratch({ batch: 1, seq: T, nHeads: spec.numHeads, nKvHeads: spec.numKvHeads, dV: spec.headDim }) : 0;
  return Math.max(xentWorkElements(T, spec.vocab, headRows), part);
}

export class Forward {
  readonly acts: LayerActs;
  readonly resid: GPUBuffer; // [T, H] residual stream
  readonly finalH: GPUBuffer; // [T, H] after the final norm
  readonly finalRstd: GPUBuffer; // [T]
  readonly ids: GPUBuffer; // [T] u32
  readonly targets: GPUBuffer; // [T] u32 (0xffffffff = ignored)
  readonly positions: GPUBuffer; // [T] u32
  readonly rowLoss: GPUBuffer; // [T]
  readonly rowLse: GPUBuffer; // [T]
  readonly cos: GPUBuffer; // [maxPos, rot/2]
  readonly sin: GPUBuffer;
  readonly rotDim: number;
  readonly xentWork: GPUBuffer; // the logits of one token chunk [TC, V] (xentWorkElements); the backward's dv partials

  constructor(readonly gpu: GpuContext, readonly spec: ModelSpec, readonly w: ModelWeights, readonly opts: ForwardOptions) {
    const T = opts.maxTokens;
    const H = spec.hidden;
    const f = (label: string, n: number, kind = 'activations') => createBuffer(gpu, { label, size: n * 4, kind });
    this.acts = opts.acts ?? new LayerActs(gpu, spec, T);
    this.resid = f('resid', T * H);
    this.finalH = f('finalH', T * H);
    this.finalRstd = f('finalRstd', T);
    this.ids = f('ids', T);
    this.targets = f('targets', T);
    this.positions = f('positions', T);
    this.rowLoss = f('rowLoss', T);
    this.rowLse = f('rowLse', T);
    this.xentWork = f('xent.work', headWorkElements(spec, T, opts.headRows), 'workspace');
    this.rotDim = spec.rope.partialDim ?? spec.headDim;
    const tables = ropeTables(spec.rope.theta, this.rotDim, spec.maxPos, spec.rope.scaling);
    this.cos = f('rope.cos', tables.cos.length, 'workspace');
    this.sin = f('rope.sin', tables.sin.length, 'workspace');
    writeBuffer(gpu, this.cos, 0, Float32Array.from(tables.cos));
    writeBuffer(gpu, this.sin, 0, Float32Array.from(tables.sin));
  }

  /** Writes ids, next-token targets (last position of each sample ignored) and positions for batch × seq tokens. */
  setBatch(ids: Uint32Array, batch: number, seq: number, targets?: Uint32Array): void {
    const T = batch * seq;
    if (T > this.opts.maxTokens) throw new Error(`batch of ${T} tokens exceeds the ${this.opts.maxTokens} allocated`);
    if (seq > this.spec.maxPos) throw new Error(`sequence ${seq} exceeds the model's ${this.spec.maxPos} positions`);
    const tg = targets ?? nextTokenTargets(ids, batch, seq);
    const pos = new Uint32Array(T);
    for (let t = 0; t < T; t++) pos[t] = t % seq;
    writeBuffer(this.gpu, this.ids, 0, ids);
    writeBuffer(this.gpu, this.targets, 0, tg);
    writeBuffer(this.gpu, this.positions, 0, pos);
  }

  /** Embedding into the residual stream. */
  embed(enc: Encoder, T: number): void {
    const s = this.spec;
    if (!this.w.embed) throw new Error('the embedding is streamed (not on the GPU): only the layer-major frozen pass, which loads it, embeds tokens');
    // the table's rows: the vocabulary, or the rows a streamed frozen pass loaded (frozen-pass.ts, ids remapped)
    embeddingForward(enc, this.resid, this.ids, this.w.embed.buf, { tokens: T, hidden: s.hidden, vocab: this.w.embed.shape[0]!, tableDtype: this.w.embed.dtype });
  }

  /** One decoder layer on the residual stream `x` [T, H] (in place), saving into `a`. */
  layer(enc: Encoder, L: number, x: GPUBuffer, a: LayerActs, batch: number, seq: number): void {
    const s = this.spec;
    const lw: LayerWeights = this.w.layers[L]!;
    const t = lw.t;
    const T = batch * seq;
    const H = s.hidden;

    // ---- attention block: h = x + o_proj(attention(rmsnorm(x)))
    rmsnormForward(enc, a.xn, a.rstd1, x, t.input_norm!.buf, T, H, s.rmsEps);
    if (s.attention.kind === 'mla') mlaForward(enc, this, L, a, batch, seq, this.tiles(seq));
    else this.mha(enc, L, a, batch, seq);
    enc.copy(x, 0, a.h, 0, T * H * 4);
    lin(enc, a.h, a.o, t['attn.o']!, t['attn.o_bias'], T, true);

    // ---- MLP block: out = h + mlp(rmsnorm(h)), written over x
    rmsnormForward(enc, a.hn, a.rstd2, a.h, t.post_attn_norm!.buf, T, H, s.rmsEps);
    if (s.layers[L]!.mlp === 'dense') {
      const I = s.denseIntermediate;
      lin(enc, a.denseG!, a.hn, t['dense.gate']!, undefined, T);
      lin(enc, a.denseU!, a.hn, t['dense.up']!, undefined, T);
      siluMul(enc, a.denseA!, a.denseG!, a.denseU!, T * I);
      enc.copy(a.h, 0, x, 0, T * H * 4);
      lin(enc, x, a.denseA!, t['dense.down']!, undefined, T, true);
      return;
    }
    this.moe(enc, lw, a, T);
    if (a.shared) {
      sharedForward(enc, s, lw, a.shared, x, a.h, a.mlpOut, a.hn, T);
      return;
    }
    enc.copy(a.h, 0, x, 0, T * H * 4);
    addInPlace(enc, x, a.mlpOut, T * H);
  }

  /**
   * Multi-head attention: a.o [T, NH, D], a.lse from a.xn. q/k/v projections (+ biases), the q/k RMSNorm (Qwen3 per head,
   * OLMoE over the whole projection), OLMoE's clip_qkv clamp of the normed q, k and of v, RoPE, causal GQA attention.
   */
  mha(enc: Encoder, L: number, a: LayerActs, batch: number, seq: number): void {
    const s = this.spec;
    const t = this.w.layers[L]!.t;
    const T = batch * seq;
    const { numHeads: NH, numKvHeads: NKV, headDim: D } = s;
    const att = s.attention;
    const clip = att.clipQkv;
    // Each of q, k, v: projection -> [norm] -> [clamp] -> a.q / a.k / a.v; the stage outputs are what backward reads.
    const qIn = clip !== null ? a.qClip! : a.q;
    const kIn = clip !== null ? a.kClip! : a.k;
    lin(enc, att.qkNorm !== 'none' ? a.qRaw : qIn, a.xn, t['attn.q']!, t['attn.q_bias'], T);
    lin(enc, att.qkNorm !== 'none' ? a.kRaw : kIn, a.xn, t['attn.k']!, t['attn.k_bias'], T);
    lin(enc, clip !== null ? a.vClip! : a.v, a.xn, t['attn.v']!, t['attn.v_bias'], T);
    if (att.qkNorm === 'per_head') {
      rmsnormForward(enc, qIn, a.qRstd, a.qRaw, t['attn.q_norm']!.buf, T * NH, D, s.rmsEps);
      rmsnormForward(enc, kIn, a.kRstd, a.kRaw, t['attn.k_norm']!.buf, T * NKV, D, s.rmsEps);
    } else if (att.qkNorm === 'full') {
      rmsnormForward(enc, qIn, a.qRstd, a.qRaw, t['attn.q_norm']!.buf, T, NH * D, s.rmsEps);
      rmsnormForward(enc, kIn, a.kRstd, a.kRaw, t['attn.k_norm']!.buf, T, NKV * D, s.rmsEps);
    }
    if (clip !== null) {
      clamp(enc, a.q, a.qClip!, -clip, clip, T * NH * D);
      clamp(enc, a.k, a.kClip!, -clip, clip, T * NKV * D);
      clamp(enc, a.v, a.vClip!, -clip, clip, T * NKV * D);
    }
    const rope = { tokens: T, headDim: D, rotDim: this.rotDim, interleave: s.rope.interleave };
    ropeForward(enc, a.q, this.positions, this.cos, this.sin, { ...rope, nHeads: NH });
    ropeForward(enc, a.k, this.positions, this.cos, this.sin, { ...rope, nHeads: NKV });
    this.attend(enc, L, a, mhaDims(s, L, batch, seq), this.tiles(seq));
  }

  /** Attention of layer L: a.o, a.lse from a.q, a.k, a.v (generate/ attends over its KV cache instead). */
  attend(enc: Encoder, L: number, a: LayerActs, d: AttentionDims, tiles?: AttentionTiles): void {
    attentionForward(enc, a.o, a.lse, a.q, a.k, a.v, d, tiles);
  }

  /**
   * Attention tiles for sequences of `seq` tokens: opts.attentionTiles if set; else ATTENTION_TILES (64-query blocks), or
   * 32-query blocks (8 × 8 threads, wider along keys for heads over 128) up to 32 tokens, where 64-query blocks sit idle.
   */
  tiles(seq: number): AttentionTiles {
    if (this.opts.attentionTiles) return this.opts.attentionTiles;
    if (seq > 32) return ATTENTION_TILES;
    const w = attentionWidths(this.spec);
    const maxD = Math.max(w.q / this.spec.numHeads, w.o / this.spec.numHeads);
    return { tx: Math.max(8, Math.ceil(maxD / 16)), ty: 8 };
  }

  /** Router + routed experts: a.mlpOut [T, H] from a.hn. */
  moe(enc: Encoder, lw: LayerWeights, a: LayerActs, T: number): void {
    const s = this.spec;
    const m = s.moe;
    const ex = lw.experts!;
    routerLogits(enc, a.logits, a.hn, lw.t.router!.buf, T, s.hidden, m.numExperts);
    routerForward(enc, a.topIdx, a.topW, a.probs, a.logits, lw.t['router.bias_correction']?.buf ?? null, {
      T, E: m.numExperts, K: m.topK, scoring: m.scoring, nGroup: m.nGroup, topkGroup: m.topkGroup, normTopkProb: m.normTopkProb, routedScalingFactor: m.routedScalingFactor,
    });
    moeRoute(enc, a.counts, a.offsets, a.slot, a.rowPair, a.tiles, a.topIdx, { T, K: m.topK, E: m.numExperts, tileM: EXPERT_TILE_M });
    const w = { gate: ex.gate.buf, up: ex.up.buf, down: ex.down.buf };
    const route = { offsets: a.offsets, slot: a.slot, rowPair: a.rowPair, tiles: a.tiles };
    const d = expertDims(s, T, ex.gate.dtype, ex);
    const ch = lw.expertChunks;
    if (!ch) return expertsForward(enc, a.mlpOut, a, a.hn, w, a.topW, route, d);
    if (ch.fused) {
      // 4-bit W0 in the GEMMs, the trained entries' Δ added to each staged weight slice: no f32 expert weights
      const fz = ch.fused(enc, true);
      const dq = expertDims(s, T, 'q4', fz.w);
      const wq = { gate: fz.w.gate.buf, up: fz.w.up.buf, down: fz.w.down.buf };
      expertsGateUp(enc, a, a.hn, wq, route, dq, fz.G);
      expertsDown(enc, a.Y, a.A, wq, route, dq, fz.D);
      return expertsCombine(enc, a.mlpOut, a.Y, a.slot, a.topW, T, s.hidden, m.topK);
    }
    // one chunk of experts at a time: each GEMM writes only its chunk's rows, so the rows end as in one pass
    ch.ranges.forEach((experts, c) => {
      ch.load(enc, c);
      expertsGateUp(enc, a, a.hn, w, route, { ...d, experts });
      expertsDown(enc, a.Y, a.A, w, route, { ...d, experts });
    });
    expertsCombine(enc, a.mlpOut, a.Y, a.slot, a.topW, T, s.hidden, m.topK);
  }

  /**
   * Final norm + lm_head cross-entropy in token chunks: per-row loss and lse; with `grad` (training) also d finalH from the
   * same logits (each computed once), which headBackward takes through the final norm.
   */
  head(enc: Encoder, T: number, grad: XentGrad | null = null): void {
    const s = this.spec;
    rmsnormForward(enc, this.finalH, this.finalRstd, this.resid, this.w.finalNorm.buf, T, s.hidden, s.rmsEps);
    xentHead(enc, this.rowLoss, this.rowLse, this.finalH, this.w.lmHead.buf, this.targets, this.xentDims(T), this.xentWork, grad);
  }

  /**
   * Full forward of batch × seq tokens; returns the mean next-token loss over the non-ignored targets.
   * With `capture`, reads back hidden.i, mlp_input.i, router_logits.i and logits (small models only).
   */
  async run(ids: Uint32Array, batch: number, seq: number, o: { targets?: Uint32Array; capture?: Capture } = {}): Promise<{ loss: number; tokens: number; sumLoss: number }> {
    const T = batch * seq;
    const s = this.spec;
    this.setBatch(ids, batch, seq, o.targets);
    const cap = o.capture;
    let enc = new Encoder(this.gpu, 'forward');
    this.embed(enc, T);
    const flush = async (name: string, buf: GPUBuffer, n: number) => {
      enc.submit();
      cap!(name, await readF32(this.gpu, buf, 0, n));
      enc = new Encoder(this.gpu, 'forward');
    };
    if (cap) await flush('hidden.0', this.resid, T * s.hidden);
    for (let L = 0; L < s.numLayers; L++) {
      this.layer(enc, L, this.resid, this.acts, batch, seq);
      if (cap) {
        await flush(`mlp_input.${L}`, this.acts.hn, T * s.hidden);
        if (s.layers[L]!.mlp === 'moe') await flush(`router_logits.${L}`, this.acts.logits, T * s.moe.numExperts);
        if (L < s.numLayers - 1) await flush(`hidden.${L + 1}`, this.resid, T * s.hidden);
      }
    }
    this.head(enc, T);
    enc.submit();
    if (cap) {
      cap(`hidden.${s.numLayers}`, await readF32(this.gpu, this.finalH, 0, T * s.hidden));
      cap('logits', await this.logits(T));
    }
    const rows = await readF32(this.gpu, this.rowLoss, 0, T);
    const tg = o.targets ?? nextTokenTargets(ids, batch, seq);
    let sum = 0;
    let n = 0;
    for (let t = 0; t < T; t++) if (tg[t] !== IGNORE) (sum += rows[t]!), n++;
    return { loss: sum / Math.max(1, n), tokens: n, sumLoss: sum };
  }

  xentDims(T: number): XentDims {
    return { T, H: this.spec.hidden, V: this.spec.vocab, wDtype: this.w.lmHead.dtype, wOffset: this.w.lmHead.offset, TC: xentTokenChunk(T, this.spec.vocab, this.opts.headRows) };
  }

  /** Full logits [T, V] (for parity on small vocabularies). */
  async logits(T: number): Promise<Float32Array> {
    const s = this.spec;
    const out = createBuffer(this.gpu, { label: 'logits', size: T * s.vocab * 4 });
    const enc = new Encoder(this.gpu, 'logits');
    lin(enc, out, this.finalH, this.w.lmHead, undefined, T);
    enc.submit();
    const r = await readF32(this.gpu, out, 0, T * s.vocab);
    out.destroy();
    return r;
  }
}

/** Attention dims of an MHA layer. */
export function mhaDims(s: ModelSpec, L: number, batch: number, seq: number): AttentionDims {
  const { numHeads: NH, numKvHeads: NKV, headDim: D } = s;
  return { batch, seq, nHeads: NH, nKvHeads: NKV, dQK: D, dV: D, scale: s.attention.softmaxScale, window: s.layers[L]!.slidingWindow };
}

/** Target value the loss ignores (the xent kernel's). */
export const IGNORE = XENT_IGNORE;

/** targets[t] = ids[t+1] within each sample; the last position of each sample is ignored. */
export function nextTokenTargets(ids: Uint32Array, batch: number, seq: number): Uint32Array {
  const tg = new Uint32Array(batch * seq).fill(IGNORE);
  for (let b = 0; b < batch; b++) for (let i = 0; i + 1 < seq; i++) tg[b * seq + i] = ids[b * seq + i + 1]!;
  return tg;
}
