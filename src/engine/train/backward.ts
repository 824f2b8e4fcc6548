// Backward pass of the trained top layers (llm.c style: each block's backward beside the forward it inverts).
// Activation gradients assign (=) except dResid, the residual stream's gradient, which each block adds into (+=);
// parameter gradients accumulate (+=) over the microbatches of a step.
//
// Legend: T tokens, H hidden, NH/NKV heads, D head dim, E experts, K top-k, IE expert width, R = T*K expert rows.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { GpuTensor, LayerWeights } from './weights.ts';
import { expertDims, type Forward, type LayerActs } from './forward.ts';
import { rmsnormBackward } from '../ops/rmsnorm.ts';
import { matmulBackwardInput, matmulBackwardWeight, matmulBackwardBias } from '../ops/matmul.ts';
import { ropeBackward } from '../ops/rope.ts';
import { attentionBackward } from '../ops/attention.ts';
import { routerBackward, routerLogitsBackward } from '../ops/router.ts';
import { expertsBackward, expertsBackwardWeights } from '../ops/experts.ts';
import { sparseGradDown, sparseGradGateUp } from '../ops/sparse_grad.ts';
import { xentBackward } from '../ops/xent.ts';
import { addInPlace, siluMulBackward } from '../ops/elementwise.ts';

/** Where a trained layer's expert-weight gradients go this pass. */
export type ExpertGradMode =
  | { kind: 'sparse'; idxG: GPUBuffer; nG: number; gradG: GPUBuffer; idxD: GPUBuffer; nD: number; gradD: GPUBuffer }
  | { kind: 'dense'; dGate: GPUBuffer | GPUBufferBinding; dUp: GPUBuffer | GPUBufferBinding; dDown: GPUBuffer | GPUBufferBinding; accumulate: boolean }
  | { kind: 'none' };

/** Gradients of frozen weights (parity --all-grads only): role -> f32 buffer of the weight's shape. */
export type FrozenGrads = Map<string, GPUBuffer>;

/** Shared backward workspace for T ≤ maxTokens tokens. */
export class BackwardWork {
  readonly dResid: GPUBuffer; // [T, H]  gradient of the residual stream
  readonly dA: GPUBuffer; // [T, H]   (dh: grad at the post-attention residual)
  readonly dHn: GPUBuffer; // [T, H]   grad at the MLP input
  readonly dTmp: GPUBuffer; // [T, H]
  readonly dTopW: GPUBuffer; // [T, K]
  readonly dLogits: GPUBuffer; // [T, E]
  readonly dY: GPUBuffer; // [R, H]
  readonly dG: GPUBuffer; // [R, IE]
  readonly dU: GPUBuffer; // [R, IE]
  readonly dXr: GPUBuffer; // [R, H]
  readonly dO: GPUBuffer; // [T, NH*D]
  readonly dq: GPUBuffer; // [T, NH*D]
  readonly dk: GPUBuffer; // [T, NKV*D]
  readonly dv: GPUBuffer; // [T, NKV*D]
  readonly dqRaw: GPUBuffer; // [T, NH*D]
  readonly dkRaw: GPUBuffer; // [T, NKV*D]
  readonly delta: GPUBuffer; // [T, NH]
  readonly dDense: [GPUBuffer, GPUBuffer, GPUBuffer] | null; // dG, dU, dA of dense MLP layers [T, I]

  constructor(gpu: GpuContext, spec: ModelSpec, T: number) {
    const { hidden: H, numHeads: NH, numKvHeads: NKV, headDim: D } = spec;
    const { numExperts: E, topK: K, expertIntermediate: IE } = spec.moe;
    const R = T * K;
    const f = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind: 'workspace' });
    this.dResid = f('dResid', T * H);
    this.dA = f('dA', T * H);
    this.dHn = f('dHn', T * H);
    this.dTmp = f('dTmp', T * H);
    this.dTopW = f('dTopW', T * K);
    this.dLogits = f('dLogits', T * E);
    this.dY = f('dY', R * H);
    this.dG = f('dG', R * IE);
    this.dU = f('dU', R * IE);
    this.dXr = f('dXr', R * H);
    this.dO = f('dO', T * NH * D);
    this.dq = f('dq', T * NH * D);
    this.dk = f('dk', T * NKV * D);
    this.dv = f('dv', T * NKV * D);
    this.dqRaw = f('dqRaw', T * NH * D);
    this.dkRaw = f('dkRaw', T * NKV * D);
    this.delta = f('delta', T * NH);
    const I = spec.denseIntermediate;
    this.dDense = spec.layers.some((l) => l.mlp === 'dense') ? [f('dDenseG', T * I), f('dDenseU', T * I), f('dDenseA', T * I)] : null;
  }
}

function linBackInput(enc: Encoder, dx: GPUBuffer, dy: GPUBuffer, w: GpuTensor, M: number, accumulate: boolean): void {
  const [N, K] = w.shape as [number, number];
  matmulBackwardInput(enc, dx, dy, w.buf, { M, N, K, wDtype: w.dtype, wOffset: w.offset, accumulate });
}

function linBackWeight(enc: Encoder, grads: FrozenGrads | null, name: string, dy: GPUBuffer, x: GPUBuffer, w: GpuTensor, M: number): void {
  const dw = grads?.get(name);
  if (!dw) return;
  const [N, K] = w.shape as [number, number];
  matmulBackwardWeight(enc, dw, dy, x, { M, N, K });
}

/** Backward of the head: dResid (=) from the chunked cross-entropy through the final norm. `scale` = 1/valid tokens. */
export function headBackward(enc: Encoder, f: Forward, wk: BackwardWork, T: number, scale: number, frozen: FrozenGrads | null): void {
  const s = f.spec;
  xentBackward(enc, wk.dTmp, f.finalH, f.w.lmHead.buf, f.targets, f.rowLse, { ...f.xentDims(T), scale }, f.xentWork);
  rmsnormBackward(enc, wk.dResid, frozen?.get('model.norm.weight') ?? null, wk.dTmp, f.resid, f.w.finalNorm.buf, f.finalRstd, T, s.hidden);
}

/**
 * Backward of one decoder layer. On entry wk.dResid = dL/d(layer output); on exit dL/d(layer input) `xIn`.
 * Router weight gradient += into dRouter (when given); expert gradients per `mode`.
 */
export function layerBackward(
  enc: Encoder,
  f: Forward,
  L: number,
  xIn: GPUBuffer,
  a: LayerActs,
  wk: BackwardWork,
  batch: number,
  seq: number,
  dRouter: GPUBuffer | null,
  mode: ExpertGradMode,
  frozen: FrozenGrads | null = null,
): void {
  const s = f.spec;
  const lw: LayerWeights = f.w.layers[L]!;
  const t = lw.t;
  const T = batch * seq;
  const { hidden: H, numHeads: NH, numKvHeads: NKV, headDim: D } = s;
  const p = `model.layers.${L}.`;
  const name = (role: keyof LayerWeights['t']) => s.layers[L]!.tensors.find((e) => e.role === role)!.name;

  // ---- MLP block: out = h + mlp(rmsnorm(h)).  dHn = d mlp input; dA = dh = dResid + norm backward.
  if (s.layers[L]!.mlp === 'dense') {
    const [dDG, dDU, dDA] = wk.dDense!;
    const I = s.denseIntermediate;
    linBackInput(enc, dDA, wk.dResid, t['dense.down']!, T, false);
    linBackWeight(enc, frozen, name('dense.down'), wk.dResid, a.denseA!, t['dense.down']!, T);
    siluMulBackward(enc, dDG, dDU, dDA, a.denseG!, a.denseU!, T * I);
    linBackInput(enc, wk.dHn, dDG, t['dense.gate']!, T, false);
    linBackInput(enc, wk.dHn, dDU, t['dense.up']!, T, true);
    linBackWeight(enc, frozen, name('dense.gate'), dDG, a.hn, t['dense.gate']!, T);
    linBackWeight(enc, frozen, name('dense.up'), dDU, a.hn, t['dense.up']!, T);
  } else {
    moeBackward(enc, f, lw, a, wk, T, dRouter, mode);
  }
  rmsnormBackward(enc, wk.dA, frozen?.get(name('post_attn_norm')) ?? null, wk.dHn, a.h, t.post_attn_norm!.buf, a.rstd2, T, H);
  addInPlace(enc, wk.dA, wk.dResid, T * H);

  // ---- attention block: h = x + o_proj(attn(rope(norm(q)), rope(norm(k)), v)), q/k/v from rmsnorm(x).
  const att = s.attention;
  if (att.kind !== 'mha') throw new Error(`${s.arch}: backward of ${att.kind} attention is not implemented yet`);
  if (att.clipQkv !== null) throw new Error(`${s.arch}: backward through clip_qkv is not implemented yet`);
  linBackInput(enc, wk.dO, wk.dA, t['attn.o']!, T, false);
  linBackWeight(enc, frozen, name('attn.o'), wk.dA, a.o, t['attn.o']!, T);
  if (frozen?.has(p + 'self_attn.o_proj.bias')) matmulBackwardBias(enc, frozen.get(p + 'self_attn.o_proj.bias')!, wk.dA, { M: T, N: H, K: NH * D });
  attentionBackward(enc, wk.dq, wk.dk, wk.dv, wk.delta, wk.dO, a.q, a.k, a.v, a.o, a.lse, {
    batch, seq, nHeads: NH, nKvHeads: NKV, dQK: D, dV: D, scale: att.softmaxScale, window: s.layers[L]!.slidingWindow,
  });
  const rope = { tokens: T, headDim: D, rotDim: f.rotDim, interleave: s.rope.interleave };
  ropeBackward(enc, wk.dq, f.positions, f.cos, f.sin, { ...rope, nHeads: NH });
  ropeBackward(enc, wk.dk, f.positions, f.cos, f.sin, { ...rope, nHeads: NKV });
  let dq = wk.dq;
  let dk = wk.dk;
  if (att.qkNorm !== 'none') {
    const [rq, dq_, rk, dk_] = att.qkNorm === 'per_head' ? [T * NH, D, T * NKV, D] : [T, NH * D, T, NKV * D];
    rmsnormBackward(enc, wk.dqRaw, frozen?.get(name('attn.q_norm')) ?? null, wk.dq, a.qRaw, t['attn.q_norm']!.buf, a.qRstd, rq, dq_);
    rmsnormBackward(enc, wk.dkRaw, frozen?.get(name('attn.k_norm')) ?? null, wk.dk, a.kRaw, t['attn.k_norm']!.buf, a.kRstd, rk, dk_);
    dq = wk.dqRaw;
    dk = wk.dkRaw;
  }
  linBackInput(enc, wk.dHn, dq, t['attn.q']!, T, false);
  linBackInput(enc, wk.dHn, dk, t['attn.k']!, T, true);
  linBackInput(enc, wk.dHn, wk.dv, t['attn.v']!, T, true);
  linBackWeight(enc, frozen, name('attn.q'), dq, a.xn, t['attn.q']!, T);
  linBackWeight(enc, frozen, name('attn.k'), dk, a.xn, t['attn.k']!, T);
  linBackWeight(enc, frozen, name('attn.v'), wk.dv, a.xn, t['attn.v']!, T);
  for (const [role, g] of [['attn.q_bias', dq], ['attn.k_bias', dk], ['attn.v_bias', wk.dv]] as const) {
    const w = t[role];
    const db = w ? frozen?.get(name(role)) : undefined;
    if (w && db) matmulBackwardBias(enc, db, g, { M: T, N: w.shape[0]!, K: 1 });
  }
  // dResid (input side) = dA + input-norm backward of dHn.
  rmsnormBackward(enc, wk.dResid, frozen?.get(name('input_norm')) ?? null, wk.dHn, xIn, t.input_norm!.buf, a.rstd1, T, H);
  addInPlace(enc, wk.dResid, wk.dA, T * H);
}

/** Router + experts backward: wk.dHn (=) from wk.dResid (the MLP output's gradient). */
function moeBackward(enc: Encoder, f: Forward, lw: LayerWeights, a: LayerActs, wk: BackwardWork, T: number, dRouter: GPUBuffer | null, mode: ExpertGradMode): void {
  const s = f.spec;
  const m = s.moe;
  const ex = lw.experts!;
  const d = expertDims(s, T, ex.gate.dtype, ex);
  const w = { gate: ex.gate.buf, up: ex.up.buf, down: ex.down.buf };
  const route = { offsets: a.offsets, slot: a.slot, rowPair: a.rowPair, tiles: a.tiles };
  const g = { dY: wk.dY, dG: wk.dG, dU: wk.dU, dXr: wk.dXr };
  expertsBackward(enc, wk.dHn, wk.dTopW, g, wk.dResid, w, a.topW, a, route, d);
  routerBackward(enc, wk.dLogits, wk.dTopW, a.topIdx, a.probs, {
    T, E: m.numExperts, K: m.topK, scoring: m.scoring, nGroup: m.nGroup, topkGroup: m.topkGroup, normTopkProb: m.normTopkProb, routedScalingFactor: m.routedScalingFactor,
  });
  routerLogitsBackward(enc, dRouter, wk.dHn, wk.dLogits, a.hn, lw.t.router!.buf, T, s.hidden, m.numExperts, true);
  const sd = { T, H: s.hidden, E: m.numExperts, K: m.topK, IE: m.expertIntermediate };
  if (mode.kind === 'sparse') {
    sparseGradGateUp(enc, mode.gradG, mode.idxG, wk.dG, wk.dU, a.hn, route, mode.nG, sd, true);
    sparseGradDown(enc, mode.gradD, mode.idxD, wk.dY, a.A, route, mode.nD, sd, true);
  } else if (mode.kind === 'dense') {
    expertsBackwardWeights(enc, { gate: mode.dGate, up: mode.dUp, down: mode.dDown }, a.hn, a, g, route, d, mode.accumulate);
  }
}
