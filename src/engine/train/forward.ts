// Forward pass of a whole MoE decoder on the GPU (all families' MHA path; MLA comes with E): embedding, layers,
// final norm, chunked lm_head + cross-entropy. Activations are allocated once for maxTokens and reused layer to layer.
//
// Legend: T tokens (batch*seq), H hidden, NH/NKV heads, D head dim, E experts, K top-k, V vocab.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, writeBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { ModelWeights, LayerWeights, GpuTensor, ExpertWeights } from './weights.ts';
import { rmsnormForward } from '../ops/rmsnorm.ts';
import { matmulForward } from '../ops/matmul.ts';
import { ropeForward, ropeTables } from '../ops/rope.ts';
import { attentionForward } from '../ops/attention.ts';
import { routerForward, routerLogits } from '../ops/router.ts';
import { moeRoute } from '../ops/moe_route.ts';
import { EXPERT_TILE_M, expertsForward, maxTilesOf, type ExpertsDims } from '../ops/experts.ts';
import { embeddingForward } from '../ops/embedding.ts';
import { xentForward, xentWorkElements, type XentDims } from '../ops/xent.ts';

/** Vocabulary columns of logits held at once: T × 8192 f32 (32 MiB at 1024 tokens), never T × V. */
export const XENT_CHUNK = 8192;
import { addInPlace, clamp, siluMul } from '../ops/elementwise.ts';

export type Capture = (name: string, data: Float32Array) => void;

export interface ForwardOptions {
  maxTokens: number;
}

/** Buffers for one layer's forward at T ≤ maxTokens tokens. */
export class LayerActs {
  readonly xn: GPUBuffer; // [T, H]   input-norm output
  readonly rstd1: GPUBuffer; // [T]
  readonly qRaw: GPUBuffer; // [T, NH*D]
  readonly kRaw: GPUBuffer; // [T, NKV*D]
  readonly q: GPUBuffer; // [T, NH*D]  normed + roped
  readonly k: GPUBuffer; // [T, NKV*D]
  readonly v: GPUBuffer; // [T, NKV*D]
  readonly qRstd: GPUBuffer; // [T*NH]
  readonly kRstd: GPUBuffer; // [T*NKV]
  readonly o: GPUBuffer; // [T, NH*D]
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

  constructor(gpu: GpuContext, spec: ModelSpec, T: number, kind = 'activations') {
    const { hidden: H, numHeads: NH, numKvHeads: NKV, headDim: D } = spec;
    const { numExperts: E, topK: K, expertIntermediate: IE } = spec.moe;
    const f = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind });
    this.xn = f('xn', T * H);
    this.rstd1 = f('rstd1', T);
    this.qRaw = f('qRaw', T * NH * D);
    this.kRaw = f('kRaw', T * NKV * D);
    this.q = f('q', T * NH * D);
    this.k = f('k', T * NKV * D);
    this.v = f('v', T * NKV * D);
    this.qRstd = f('qRstd', T * NH);
    this.kRstd = f('kRstd', T * NKV);
    this.o = f('o', T * NH * D);
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
  }
}

/** Expert GEMM dims; with `ex`, its dtype and the element offsets of gate/up/down (gate and up may share a buffer). */
export function expertDims(spec: ModelSpec, T: number, wDtype: 'f32' | 'bf16', ex?: ExpertWeights): ExpertsDims {
  const d: ExpertsDims = { T, H: spec.hidden, E: spec.moe.numExperts, K: spec.moe.topK, IE: spec.moe.expertIntermediate, wDtype };
  if (ex) Object.assign(d, { wDtype: ex.gate.dtype, gateOffset: ex.gate.offset, upOffset: ex.up.offset, downOffset: ex.down.offset });
  return d;
}

function lin(enc: Encoder, y: GPUBuffer, x: GPUBuffer, w: GpuTensor, bias: GpuTensor | undefined, M: number, accumulate = false): void {
  const [N, K] = w.shape as [number, number];
  matmulForward(enc, y, x, w.buf, bias?.buf ?? null, { M, N, K, wDtype: w.dtype, wOffset: w.offset, accumulate });
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
  readonly xentWork: GPUBuffer; // logits chunk [T, VC] + running stats [T, 2]

  constructor(readonly gpu: GpuContext, readonly spec: ModelSpec, readonly w: ModelWeights, readonly opts: ForwardOptions) {
    const T = opts.maxTokens;
    const H = spec.hidden;
    const f = (label: string, n: number, kind = 'activations') => createBuffer(gpu, { label, size: n * 4, kind });
    this.acts = new LayerActs(gpu, spec, T);
    this.resid = f('resid', T * H);
    this.finalH = f('finalH', T * H);
    this.finalRstd = f('finalRstd', T);
    this.ids = f('ids', T);
    this.targets = f('targets', T);
    this.positions = f('positions', T);
    this.rowLoss = f('rowLoss', T);
    this.rowLse = f('rowLse', T);
    this.xentWork = f('xent.work', xentWorkElements(this.xentDims(T)), 'workspace');
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
    embeddingForward(enc, this.resid, this.ids, this.w.embed.buf, { tokens: T, hidden: s.hidden, vocab: s.vocab, tableDtype: this.w.embed.dtype });
  }

  /** One decoder layer on the residual stream `x` [T, H] (in place), saving into `a`. */
  layer(enc: Encoder, L: number, x: GPUBuffer, a: LayerActs, batch: number, seq: number): void {
    const s = this.spec;
    const lw: LayerWeights = this.w.layers[L]!;
    const t = lw.t;
    const T = batch * seq;
    const { hidden: H, numHeads: NH, numKvHeads: NKV, headDim: D } = s;
    const att = s.attention;
    if (att.kind !== 'mha') throw new Error(`${s.arch}: ${att.kind} attention is not implemented yet`);

    rmsnormForward(enc, a.xn, a.rstd1, x, t.input_norm!.buf, T, H, s.rmsEps);
    lin(enc, a.qRaw, a.xn, t['attn.q']!, t['attn.q_bias'], T);
    lin(enc, a.kRaw, a.xn, t['attn.k']!, t['attn.k_bias'], T);
    lin(enc, a.v, a.xn, t['attn.v']!, t['attn.v_bias'], T);
    if (att.clipQkv !== null) {
      const c = att.clipQkv;
      clamp(enc, a.q, a.qRaw, -c, c, T * NH * D);
      clamp(enc, a.k, a.kRaw, -c, c, T * NKV * D);
      enc.copy(a.q, 0, a.qRaw, 0, T * NH * D * 4);
      enc.copy(a.k, 0, a.kRaw, 0, T * NKV * D * 4);
      clamp(enc, a.q, a.v, -c, c, T * NKV * D);
      enc.copy(a.q, 0, a.v, 0, T * NKV * D * 4);
    }
    if (att.qkNorm === 'per_head') {
      rmsnormForward(enc, a.q, a.qRstd, a.qRaw, t['attn.q_norm']!.buf, T * NH, D, s.rmsEps);
      rmsnormForward(enc, a.k, a.kRstd, a.kRaw, t['attn.k_norm']!.buf, T * NKV, D, s.rmsEps);
    } else if (att.qkNorm === 'full') {
      rmsnormForward(enc, a.q, a.qRstd, a.qRaw, t['attn.q_norm']!.buf, T, NH * D, s.rmsEps);
      rmsnormForward(enc, a.k, a.kRstd, a.kRaw, t['attn.k_norm']!.buf, T, NKV * D, s.rmsEps);
    } else {
      enc.copy(a.qRaw, 0, a.q, 0, T * NH * D * 4);
      enc.copy(a.kRaw, 0, a.k, 0, T * NKV * D * 4);
    }
    const rope = { tokens: T, headDim: D, rotDim: this.rotDim, interleave: s.rope.interleave };
    ropeForward(enc, a.q, this.positions, this.cos, this.sin, { ...rope, nHeads: NH });
    ropeForward(enc, a.k, this.positions, this.cos, this.sin, { ...rope, nHeads: NKV });
    attentionForward(enc, a.o, a.lse, a.q, a.k, a.v, { batch, seq, nHeads: NH, nKvHeads: NKV, dQK: D, dV: D, scale: att.softmaxScale, window: s.layers[L]!.slidingWindow });
    // h = x + o·Wo^T
    enc.copy(x, 0, a.h, 0, T * H * 4);
    lin(enc, a.h, a.o, t['attn.o']!, t['attn.o_bias'], T, true);

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
    enc.copy(a.h, 0, x, 0, T * H * 4);
    addInPlace(enc, x, a.mlpOut, T * H);
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
    expertsForward(enc, a.mlpOut, a, a.hn, { gate: ex.gate.buf, up: ex.up.buf, down: ex.down.buf }, a.topW,
      { offsets: a.offsets, slot: a.slot, rowPair: a.rowPair, tiles: a.tiles }, expertDims(s, T, ex.gate.dtype, ex));
  }

  /** Final norm + chunked lm_head cross-entropy: per-row loss and lse. */
  head(enc: Encoder, T: number): void {
    const s = this.spec;
    rmsnormForward(enc, this.finalH, this.finalRstd, this.resid, this.w.finalNorm.buf, T, s.hidden, s.rmsEps);
    xentForward(enc, this.rowLoss, this.rowLse, this.finalH, this.w.lmHead.buf, this.targets, this.xentDims(T), this.xentWork);
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
    return { T, H: this.spec.hidden, V: this.spec.vocab, wDtype: this.w.lmHead.dtype, wOffset: this.w.lmHead.offset, VC: XENT_CHUNK };
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

export const IGNORE = 0xffffffff;

/** targets[t] = ids[t+1] within each sample; the last position of each sample is ignored. */
export function nextTokenTargets(ids: Uint32Array, batch: number, seq: number): Uint32Array {
  const tg = new Uint32Array(batch * seq).fill(IGNORE);
  for (let b = 0; b < batch; b++) for (let i = 0; i + 1 < seq; i++) tg[b * seq + i] = ids[b * seq + i + 1]!;
  return tg;
}
