// Multi-head latent attention (DeepSeek-V3), forward and backward side by side: q from q_a → q_a_layernorm → q_b (or q_proj),
// kv_a → [latent → kv_a_layernorm → kv_b → per-head nope keys + values | one shared rope key]; RoPE on the rope parts only.
//
// Legend: T tokens, H hidden, NH heads, QR q_lora_rank, KR kv_lora_rank, DN/DR nope/rope key widths, D = DN + DR, DV value width.
// Layout: q and k [T, NH, D] with each head [nope | rope]; RoPE output of interleaved pairs comes out as halves in both, so
// q·k is unchanged. o [T, NH, DV].

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec, MlaSpec, TensorRole } from '../model/spec.ts';
import type { Forward, LayerActs } from './forward.ts';
import type { BackwardWork, FrozenGrads } from './backward.ts';
import { linear, linearBackBias, linearBackInput, linearBackWeight, type LayerWeights, type Rows } from './weights.ts';
import { rmsnormBackward, rmsnormForward } from '../ops/rmsnorm.ts';
import { ropeBackward, ropeForward, type RopeDims } from '../ops/rope.ts';
import { attentionBackward, type AttentionDims, type AttentionTiles } from '../ops/attention.ts';
import { mlaKvBackward, mlaKvForward, type MlaKvDims } from '../ops/mla_kv.ts';

/** MLA activations beyond LayerActs' q [T, NH, D], k [T, NH, D], v [T, NH, DV], o [T, NH, DV], lse [T, NH]. */
export class MlaActs {
  readonly qA: GPUBuffer | null; // [T, QR]  q_a_proj output (null: plain q_proj)
  readonly qAn: GPUBuffer | null; // [T, QR]  after q_a_layernorm
  readonly qARstd: GPUBuffer | null; // [T]
  readonly kvLat: GPUBuffer; // [T, KR]  kv_a_proj rows 0..KR (the latent)
  readonly kvLatN: GPUBuffer; // [T, KR]  after kv_a_layernorm
  readonly kvRstd: GPUBuffer; // [T]
  readonly kRope: GPUBuffer; // [T, DR]  kv_a_proj rows KR..KR+DR, roped in place
  readonly kvB: GPUBuffer; // [T, NH, DN+DV]  kv_b_proj output

  constructor(gpu: GpuContext, spec: ModelSpec, T: number, kind = 'activations') {
    const m = spec.attention.mla!;
    const f = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind });
    const QR = m.qLoraRank;
    this.qA = QR === null ? null : f('mla.qA', T * QR);
    this.qAn = QR === null ? null : f('mla.qAn', T * QR);
    this.qARstd = QR === null ? null : f('mla.qARstd', T);
    this.kvLat = f('mla.kvLat', T * m.kvLoraRank);
    this.kvLatN = f('mla.kvLatN', T * m.kvLoraRank);
    this.kvRstd = f('mla.kvRstd', T);
    this.kRope = f('mla.kRope', T * m.qkRopeHeadDim);
    this.kvB = f('mla.kvB', T * spec.numHeads * (m.qkNopeHeadDim + m.vHeadDim));
  }
}

/** MLA backward workspace beyond BackwardWork's dO, dq, dk, dv, delta. */
export class MlaWork {
  readonly dQAn: GPUBuffer | null; // [T, QR]
  readonly dQA: GPUBuffer | null; // [T, QR]
  readonly dKvLatN: GPUBuffer; // [T, KR]
  readonly dKvLat: GPUBuffer; // [T, KR]
  readonly dKRope: GPUBuffer; // [T, DR]
  readonly dKvB: GPUBuffer; // [T, NH, DN+DV]

  constructor(gpu: GpuContext, spec: ModelSpec, T: number) {
    const m = spec.attention.mla!;
    const f = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind: 'workspace' });
    const QR = m.qLoraRank;
    this.dQAn = QR === null ? null : f('dMla.qAn', T * QR);
    this.dQA = QR === null ? null : f('dMla.qA', T * QR);
    this.dKvLatN = f('dMla.kvLatN', T * m.kvLoraRank);
    this.dKvLat = f('dMla.kvLat', T * m.kvLoraRank);
    this.dKRope = f('dMla.kRope', T * m.qkRopeHeadDim);
    this.dKvB = f('dMla.kvB', T * spec.numHeads * (m.qkNopeHeadDim + m.vHeadDim));
  }
}

/** Widths of the buffers MLA needs from LayerActs / BackwardWork: q and k [T, NH*D], v and o [T, NH*DV]. */
export function mlaWidths(spec: ModelSpec): { q: number; k: number; v: number } {
  const m = spec.attention.mla!;
  return { q: spec.numHeads * (m.qkNopeHeadDim + m.qkRopeHeadDim), k: spec.numHeads * (m.qkNopeHeadDim + m.qkRopeHeadDim), v: spec.numHeads * m.vHeadDim };
}

function dims(spec: ModelSpec, f: Forward, T: number): { m: MlaSpec; D: number; ropeQ: RopeDims; ropeK: RopeDims; kv: MlaKvDims } {
  const m = spec.attention.mla!;
  const NH = spec.numHeads;
  const D = m.qkNopeHeadDim + m.qkRopeHeadDim;
  const ropeQ: RopeDims = { tokens: T, nHeads: NH, headDim: D, rotStart: m.qkNopeHeadDim, rotDim: f.rotDim, interleave: spec.rope.interleave };
  const ropeK: RopeDims = { tokens: T, nHeads: 1, headDim: m.qkRopeHeadDim, rotDim: f.rotDim, interleave: spec.rope.interleave };
  const kv: MlaKvDims = { T, NH, DN: m.qkNopeHeadDim, DR: m.qkRopeHeadDim, DV: m.vHeadDim };
  return { m, D, ropeQ, ropeK, kv };
}

function attnDims(spec: ModelSpec, L: number, batch: number, seq: number): AttentionDims {
  const m = spec.attention.mla!;
  const NH = spec.numHeads;
  return {
    batch, seq, nHeads: NH, nKvHeads: NH, dQK: m.qkNopeHeadDim + m.qkRopeHeadDim, dV: m.vHeadDim,
    scale: spec.attention.softmaxScale, window: spec.layers[L]!.slidingWindow,
  };
}

/** a.o [T, NH, DV], a.lse [T, NH] from a.xn [T, H] (the input-norm output); saves q, k, v and ma's buffers. */
export function mlaForward(enc: Encoder, f: Forward, L: number, a: LayerActs, batch: number, seq: number, tiles?: AttentionTiles): void {
  const s = f.spec;
  const t = f.w.layers[L]!.t;
  const ma = a.mla!;
  const T = batch * seq;
  const { m, ropeQ, ropeK, kv } = dims(s, f, T);
  const KR = m.kvLoraRank;
  if (m.qLoraRank === null) {
    linear(enc, a.q, a.xn, t['attn.q']!, t['attn.q_bias'], T);
  } else {
    linear(enc, ma.qA!, a.xn, t['attn.q_a']!, t['attn.q_a_bias'], T);
    rmsnormForward(enc, ma.qAn!, ma.qARstd!, ma.qA!, t['attn.q_a_norm']!.buf, T, m.qLoraRank, s.rmsEps);
    linear(enc, a.q, ma.qAn!, t['attn.q_b']!, undefined, T);
  }
  // kv_a_proj [KR + DR, H] as two GEMMs over its row ranges, so the latent and the rope key land in their own buffers.
  const lat: Rows = [0, KR];
  const rope: Rows = [KR, m.qkRopeHeadDim];
  linear(enc, ma.kvLat, a.xn, t['attn.kv_a']!, t['attn.kv_a_bias'], T, false, lat);
  linear(enc, ma.kRope, a.xn, t['attn.kv_a']!, t['attn.kv_a_bias'], T, false, rope);
  rmsnormForward(enc, ma.kvLatN, ma.kvRstd, ma.kvLat, t['attn.kv_a_norm']!.buf, T, KR, s.rmsEps);
  linear(enc, ma.kvB, ma.kvLatN, t['attn.kv_b']!, undefined, T);
  ropeForward(enc, a.q, f.positions, f.cos, f.sin, ropeQ);
  ropeForward(enc, ma.kRope, f.positions, f.cos, f.sin, ropeK);
  mlaKvForward(enc, a.k, a.v, ma.kvB, ma.kRope, kv);
  f.attend(enc, L, a, attnDims(s, L, batch, seq), tiles);
}

/**
 * Backward from wk.dO [T, NH, DV] (the attention output's gradient): wk.dHn [T, H] (=) = d(input-norm output).
 * Frozen-weight grads += by checkpoint name where `frozen` holds them.
 */
export function mlaBackward(enc: Encoder, f: Forward, L: number, a: LayerActs, wk: BackwardWork, batch: number, seq: number, frozen: FrozenGrads | null, tiles?: AttentionTiles): void {
  const s = f.spec;
  const t = f.w.layers[L]!.t;
  const ma = a.mla!;
  const mw = wk.mla!;
  const T = batch * seq;
  const { m, ropeQ, ropeK, kv } = dims(s, f, T);
  const KR = m.kvLoraRank;
  const names = new Map(s.layers[L]!.tensors.map((e) => [e.role, e.name]));
  const g = (role: TensorRole) => frozen?.get(names.get(role) ?? '');

  attentionBackward(enc, wk.dq, wk.dk, wk.dv, wk.delta, wk.dO, a.q, a.k, a.v, a.o, a.lse, attnDims(s, L, batch, seq), tiles);
  ropeBackward(enc, wk.dq, f.positions, f.cos, f.sin, ropeQ);
  mlaKvBackward(enc, mw.dKvB, mw.dKRope, wk.dk, wk.dv, kv);
  ropeBackward(enc, mw.dKRope, f.positions, f.cos, f.sin, ropeK);

  // keys and values: kv_b, kv_a_layernorm, kv_a (both row ranges)
  const kvA = t['attn.kv_a']!;
  const lat: Rows = [0, KR];
  const rope: Rows = [KR, m.qkRopeHeadDim];
  linearBackInput(enc, mw.dKvLatN, mw.dKvB, t['attn.kv_b']!, T, false);
  linearBackWeight(enc, g('attn.kv_b'), mw.dKvB, ma.kvLatN, t['attn.kv_b']!, T);
  rmsnormBackward(enc, mw.dKvLat, g('attn.kv_a_norm') ?? null, mw.dKvLatN, ma.kvLat, t['attn.kv_a_norm']!.buf, ma.kvRstd, T, KR);
  linearBackInput(enc, wk.dHn, mw.dKvLat, kvA, T, false, lat);
  linearBackInput(enc, wk.dHn, mw.dKRope, kvA, T, true, rope);
  linearBackWeight(enc, g('attn.kv_a'), mw.dKvLat, a.xn, kvA, T, lat);
  linearBackWeight(enc, g('attn.kv_a'), mw.dKRope, a.xn, kvA, T, rope);
  linearBackBias(enc, g('attn.kv_a_bias'), mw.dKvLat, kvA, T, lat);
  linearBackBias(enc, g('attn.kv_a_bias'), mw.dKRope, kvA, T, rope);

  // queries
  if (m.qLoraRank === null) {
    linearBackInput(enc, wk.dHn, wk.dq, t['attn.q']!, T, true);
    linearBackWeight(enc, g('attn.q'), wk.dq, a.xn, t['attn.q']!, T);
    linearBackBias(enc, g('attn.q_bias'), wk.dq, t['attn.q']!, T);
  } else {
    linearBackInput(enc, mw.dQAn!, wk.dq, t['attn.q_b']!, T, false);
    linearBackWeight(enc, g('attn.q_b'), wk.dq, ma.qAn!, t['attn.q_b']!, T);
    rmsnormBackward(enc, mw.dQA!, g('attn.q_a_norm') ?? null, mw.dQAn!, ma.qA!, t['attn.q_a_norm']!.buf, ma.qARstd!, T, m.qLoraRank);
    linearBackInput(enc, wk.dHn, mw.dQA!, t['attn.q_a']!, T, true);
    linearBackWeight(enc, g('attn.q_a'), mw.dQA!, a.xn, t['attn.q_a']!, T);
    linearBackBias(enc, g('attn.q_a_bias'), mw.dQA!, t['attn.q_a']!, T);
  }
}
