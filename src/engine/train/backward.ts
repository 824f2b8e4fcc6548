// Backward pass of the trained top layers (llm.c style: each block's backward beside the forward it inverts; MLA in
// mla-attention.ts, shared experts in shared-expert.ts). Activation gradients assign (=) except dResid, the residual
// stream's gradient, which each block adds into (+=); parameter gradients accumulate (+=) over the microbatches of a step.
//
// Legend: T tokens, H hidden, NH/NKV heads, D head dim, DV value width, E experts, K top-k, IE expert width, R = T*K rows.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import { linearBackBias, linearBackInput, linearBackWeight, type GpuTensor, type LayerWeights } from './weights.ts';
import { attentionWidths, expertDims, mhaDims, type Forward, type LayerActs } from './forward.ts';
import { MlaWork, mlaBackward } from './mla-attention.ts';
import { SharedWork, sharedBackward, sharedExpertTensors } from './shared-expert.ts';
import { rmsnormBackward } from '../ops/rmsnorm.ts';
import { ropeBackward } from '../ops/rope.ts';
import { attentionBackward } from '../ops/attention.ts';
import { routerBackward, routerLogitsBackward } from '../ops/router.ts';
import { expertsBackward, expertsBackwardAct, expertsBackwardCombine, expertsBackwardInput, expertsBackwardWeights, expertsCombine } from '../ops/experts.ts';
import { sparseGradDown, sparseGradGateUp } from '../ops/sparse_grad.ts';
import { addInPlace, clampBackward, siluMulBackward } from '../ops/elementwise.ts';
import type { XentGrad } from '../ops/xent.ts';

/** Where a trained layer's expert-weight gradients go this pass. */
export type ExpertGradMode =
  | { kind: 'sparse'; idxG: GPUBuffer; nG: number; gradG: GPUBuffer; idxD: GPUBuffer; nD: number; gradD: GPUBuffer }
  | { kind: 'dense'; dGate: GPUBuffer | GPUBufferBinding; dUp: GPUBuffer | GPUBufferBinding; dDown: GPUBuffer | GPUBufferBinding; accumulate: boolean | 'abs' }
  | { kind: 'none' }
  /** No weight gradient, but the per-row gradients dY, dG, dU left in the workspace (a caller consumes them). */
  | { kind: 'rows' };

/**
 * Dense gradients (+=) of non-routed weights by checkpoint name -> f32 buffer of the weight's shape: every frozen weight for
 * parity --all-grads, or weights trained densely such as DeepSeek's shared experts (`shared.*` roles).
 */
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
  readonly dO: GPUBuffer; // [T, NH*D]  (MLA: [T, NH*DV])
  readonly dq: GPUBuffer; // [T, NH*D]
  readonly dk: GPUBuffer; // [T, NKV*D]  (MLA: [T, NH*D])
  readonly dv: GPUBuffer; // [T, NKV*D]  (MLA: [T, NH*DV])
  readonly dqRaw: GPUBuffer; // [T, NH*D]   (MHA with q/k norm or clip_qkv; else 1 element)
  readonly dkRaw: GPUBuffer; // [T, NKV*D]
  readonly dvClip: GPUBuffer | null; // [T, NKV*D]  (clip_qkv only)
  readonly delta: GPUBuffer; // [T, NH]
  readonly dDense: [GPUBuffer, GPUBuffer, GPUBuffer] | null; // dG, dU, dA of dense MLP layers [T, I]
  readonly mla: MlaWork | null;
  readonly shared: SharedWork | null;

  constructor(gpu: GpuContext, spec: ModelSpec, T: number) {
    const { hidden: H, numHeads: NH } = spec;
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
    const att = spec.attention;
    const w = attentionWidths(spec);
    const raw = att.kind === 'mha' && (att.qkNorm !== 'none' || att.clipQkv !== null);
    this.dO = f('dO', T * w.o);
    this.dq = f('dq', T * w.q);
    this.dk = f('dk', T * w.k);
    this.dv = f('dv', T * w.v);
    this.dqRaw = f('dqRaw', raw ? T * w.q : 1);
    this.dkRaw = f('dkRaw', raw ? T * w.k : 1);
    this.dvClip = att.kind === 'mha' && att.clipQkv !== null ? f('dvClip', T * w.v) : null;
    this.delta = f('delta', T * NH);
    const I = spec.denseIntermediate;
    this.dDense = spec.layers.some((l) => l.mlp === 'dense') ? [f('dDenseG', T * I), f('dDenseU', T * I), f('dDenseA', T * I)] : null;
    this.mla = att.kind === 'mla' ? new MlaWork(gpu, spec, T) : null;
    this.shared = spec.moe.sharedExperts && spec.layers.some((l) => l.mlp === 'moe') ? new SharedWork(gpu, spec, T) : null;
  }
}

const linBackInput = (enc: Encoder, dx: GPUBuffer, dy: GPUBuffer, w: GpuTensor, M: number, accumulate: boolean): void =>
  linearBackInput(enc, dx, dy, w, M, accumulate);

const linBackWeight = (enc: Encoder, grads: FrozenGrads | null, name: string, dy: GPUBuffer, x: GPUBuffer, w: GpuTensor, M: number): void =>
  linearBackWeight(enc, grads?.get(name), dy, x, w, M);

/**
 * Per trained layer `layers[i]` (ascending), whether its backward must produce dL/d(its input) (layerBackward's
 * `inputGrad`): a layer below it receives gradients (router, experts, or a weight named in `frozen`), `frozen` names one
 * of its own weights that only the full backward reaches, or, for every layer, `bottom` (the caller reads the lowest's).
 */
export function inputGradsNeeded(spec: ModelSpec, layers: number[], dRouters: (GPUBuffer | null)[], modes: ExpertGradMode[], frozen: FrozenGrads | null, bottom: boolean): boolean[] {
  const named = (L: number, shared: boolean) => spec.layers[L]!.tensors.some((e) => e.role.startsWith('shared.') === shared && frozen?.has(e.name));
  let below = bottom;
  return layers.map((L, i) => {
    const need = below || named(L, false);
    below ||= (spec.layers[L]!.mlp === 'moe' && (!!dRouters[i] || modes[i]!.kind !== 'none')) || named(L, false) || named(L, true);
    return need;
  });
}

/** The head's gradient of finalH [T, H] for headBackward: Forward.head writes it into wk.dTmp. `scale` = 1/valid tokens. */
export const headGrad = (wk: BackwardWork, scale: number): XentGrad => ({ dh: wk.dTmp, scale });

/** Backward of the head: dResid (=) from the head's gradient (wk.dTmp, see headGrad) through the final norm. */
export function headBackward(enc: Encoder, f: Forward, wk: BackwardWork, T: number, frozen: FrozenGrads | null): void {
  const s = f.spec;
  rmsnormBackward(enc, wk.dResid, frozen?.get('model.norm.weight') ?? null, wk.dTmp, f.resid, f.w.finalNorm.buf, f.finalRstd, T, s.hidden);
}

/**
 * Backward of one decoder layer. On entry wk.dResid = dL/d(layer output); on exit dL/d(layer input) `xIn`.
 * Router weight gradient += into dRouter (when given); expert gradients per `mode`.
 * `inputGrad` false (nothing below needs dL/d(layer input), e.g. the lowest trained layer): only the router, routed- and
 * shared-expert weight gradients are computed, exactly as with true; the attention block's backward and every input
 * gradient are skipped and wk.dResid is left stale. `frozen` may then name no other weight of this layer.
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
  inputGrad = true,
): void {
  const s = f.spec;
  const lw: LayerWeights = f.w.layers[L]!;
  const t = lw.t;
  const T = batch * seq;
  const H = s.hidden;
  const names = new Map(s.layers[L]!.tensors.map((e) => [e.role, e.name]));
  const name = (role: keyof LayerWeights['t']) => names.get(role)!;

  if (!inputGrad) {
    const other = s.layers[L]!.tensors.find((e) => !e.role.startsWith('shared.') && frozen?.has(e.name));
    if (other) throw new Error(`layer ${L} backward without its input gradient cannot give ${other.name} its gradient`);
    if (s.layers[L]!.mlp !== 'moe') return;
    if (dRouter || mode.kind !== 'none') moeBackward(enc, f, lw, a, wk, T, dRouter, mode, false);
    if (a.shared && sharedExpertTensors(s, L).some((e) => frozen?.has(e.name))) sharedBackward(enc, s, L, lw, a.shared, wk.shared!, null, wk.dResid, a.hn, T, frozen);
    return;
  }

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
    if (a.shared) sharedBackward(enc, s, L, lw, a.shared, wk.shared!, wk.dHn, wk.dResid, a.hn, T, frozen);
  }
  rmsnormBackward(enc, wk.dA, frozen?.get(name('post_attn_norm')) ?? null, wk.dHn, a.h, t.post_attn_norm!.buf, a.rstd2, T, H);
  addInPlace(enc, wk.dA, wk.dResid, T * H);

  // ---- attention block: h = x + o_proj(attention(rmsnorm(x))).  wk.dHn = d(input-norm output).
  linBackInput(enc, wk.dO, wk.dA, t['attn.o']!, T, false);
  linBackWeight(enc, frozen, name('attn.o'), wk.dA, a.o, t['attn.o']!, T);
  if (t['attn.o_bias']) linearBackBias(enc, frozen?.get(name('attn.o_bias')), wk.dA, t['attn.o']!, T);
  if (s.attention.kind === 'mla') mlaBackward(enc, f, L, a, wk, batch, seq, frozen, f.tiles(seq));
  else mhaBackward(enc, f, L, a, wk, batch, seq, frozen);
  // dResid (input side) = dA + input-norm backward of dHn.
  rmsnormBackward(enc, wk.dResid, frozen?.get(name('input_norm')) ?? null, wk.dHn, xIn, t.input_norm!.buf, a.rstd1, T, H);
  addInPlace(enc, wk.dResid, wk.dA, T * H);
}

/** Backward of Forward.mha from wk.dO: wk.dHn (=) = d(input-norm output); q/k/v (norm, bias) grads into `frozen`. */
function mhaBackward(enc: Encoder, f: Forward, L: number, a: LayerActs, wk: BackwardWork, batch: number, seq: number, frozen: FrozenGrads | null): void {
  const s = f.spec;
  const t = f.w.layers[L]!.t;
  const T = batch * seq;
  const { numHeads: NH, numKvHeads: NKV, headDim: D } = s;
  const att = s.attention;
  const names = new Map(s.layers[L]!.tensors.map((e) => [e.role, e.name]));
  const g = (role: keyof LayerWeights['t']) => frozen?.get(names.get(role) ?? '');
  attentionBackward(enc, wk.dq, wk.dk, wk.dv, wk.delta, wk.dO, a.q, a.k, a.v, a.o, a.lse, mhaDims(s, L, batch, seq), f.tiles(seq), f.xentWork); // dv partials (GQA) in the head's work, free after the head
  const rope = { tokens: T, headDim: D, rotDim: f.rotDim, interleave: s.rope.interleave };
  ropeBackward(enc, wk.dq, f.positions, f.cos, f.sin, { ...rope, nHeads: NH });
  ropeBackward(enc, wk.dk, f.positions, f.cos, f.sin, { ...rope, nHeads: NKV });
  // Walk q and k back through [clamp] and [norm], ping-ponging between d* and d*Raw; dq / dk end at the projection outputs.
  let dq = wk.dq, dk = wk.dk, dv = wk.dv;
  const other = (b: GPUBuffer, x: GPUBuffer, y: GPUBuffer) => (b === x ? y : x);
  if (att.clipQkv !== null) {
    const c = att.clipQkv;
    clampBackward(enc, wk.dqRaw, dq, a.qClip!, -c, c, T * NH * D);
    clampBackward(enc, wk.dkRaw, dk, a.kClip!, -c, c, T * NKV * D);
    clampBackward(enc, wk.dvClip!, dv, a.vClip!, -c, c, T * NKV * D);
    [dq, dk, dv] = [wk.dqRaw, wk.dkRaw, wk.dvClip!];
  }
  if (att.qkNorm !== 'none') {
    const [rq, dimQ, rk, dimK] = att.qkNorm === 'per_head' ? [T * NH, D, T * NKV, D] : [T, NH * D, T, NKV * D];
    const dq2 = other(dq, wk.dq, wk.dqRaw), dk2 = other(dk, wk.dk, wk.dkRaw);
    rmsnormBackward(enc, dq2, g('attn.q_norm') ?? null, dq, a.qRaw, t['attn.q_norm']!.buf, a.qRstd, rq, dimQ);
    rmsnormBackward(enc, dk2, g('attn.k_norm') ?? null, dk, a.kRaw, t['attn.k_norm']!.buf, a.kRstd, rk, dimK);
    [dq, dk] = [dq2, dk2];
  }
  linBackInput(enc, wk.dHn, dq, t['attn.q']!, T, false);
  linBackInput(enc, wk.dHn, dk, t['attn.k']!, T, true);
  linBackInput(enc, wk.dHn, dv, t['attn.v']!, T, true);
  linearBackWeight(enc, g('attn.q'), dq, a.xn, t['attn.q']!, T);
  linearBackWeight(enc, g('attn.k'), dk, a.xn, t['attn.k']!, T);
  linearBackWeight(enc, g('attn.v'), dv, a.xn, t['attn.v']!, T);
  if (t['attn.q_bias']) linearBackBias(enc, g('attn.q_bias'), dq, t['attn.q']!, T);
  if (t['attn.k_bias']) linearBackBias(enc, g('attn.k_bias'), dk, t['attn.k']!, T);
  if (t['attn.v_bias']) linearBackBias(enc, g('attn.v_bias'), dv, t['attn.v']!, T);
}

/**
 * Router + experts backward: wk.dHn (=) from wk.dResid (the MLP output's gradient). `inputGrad` false: no wk.dHn, only
 * what the router's and experts' weight gradients need (dTopW, dLogits; dY, dG, dU unless mode is 'none').
 */
function moeBackward(enc: Encoder, f: Forward, lw: LayerWeights, a: LayerActs, wk: BackwardWork, T: number, dRouter: GPUBuffer | null, mode: ExpertGradMode, inputGrad = true): void {
  const s = f.spec;
  const m = s.moe;
  const ex = lw.experts!;
  const d = expertDims(s, T, ex.gate.dtype, ex);
  const w = { gate: ex.gate.buf, up: ex.up.buf, down: ex.down.buf };
  const route = { offsets: a.offsets, slot: a.slot, rowPair: a.rowPair, tiles: a.tiles };
  const g = { dY: wk.dY, dG: wk.dG, dU: wk.dU, dXr: a.Y }; // dXr over the saved Y: read (dTopW) before it is written
  const ch = lw.expertChunks;
  const act = inputGrad || mode.kind !== 'none';
  if (!ch && inputGrad) expertsBackward(enc, wk.dHn, wk.dTopW, g, wk.dResid, w, a.topW, a, route, d);
  else if (!ch) {
    expertsBackwardCombine(enc, wk.dTopW, g.dY, wk.dResid, a.Y, a.topW, route, d);
    if (act) expertsBackwardAct(enc, g.dG, g.dU, g.dY, w, a.G, a.U, route, d);
  } else if (ch.fused) {
    // 4-bit W0 + the trained entries' Δ in the GEMMs (see Forward.moe)
    const fz = ch.fused(enc, false);
    const dq = expertDims(s, T, 'q4', fz.w);
    const wq = { gate: fz.w.gate.buf, up: fz.w.up.buf, down: fz.w.down.buf };
    expertsBackwardCombine(enc, wk.dTopW, g.dY, wk.dResid, a.Y, a.topW, route, dq);
    if (act) {
      expertsBackwardAct(enc, g.dG, g.dU, g.dY, wq, a.G, a.U, route, dq, fz.D);
    }
    if (inputGrad) {
      expertsBackwardInput(enc, g.dXr, g.dG, g.dU, wq, route, dq, fz.G);
      expertsCombine(enc, wk.dHn, g.dXr, route.slot, null, T, s.hidden, m.topK);
    }
  } else {
    // one chunk of experts at a time (see Forward.moe); the combines read no weights
    expertsBackwardCombine(enc, wk.dTopW, g.dY, wk.dResid, a.Y, a.topW, route, d);
    if (act) {
      ch.ranges.forEach((experts, c) => {
        ch.load(enc, c);
        expertsBackwardAct(enc, g.dG, g.dU, g.dY, w, a.G, a.U, route, { ...d, experts });
        if (inputGrad) expertsBackwardInput(enc, g.dXr, g.dG, g.dU, w, route, { ...d, experts });
      });
    }
    if (inputGrad) expertsCombine(enc, wk.dHn, g.dXr, route.slot, null, T, s.hidden, m.topK);
  }
  if (inputGrad || dRouter) {
    routerBackward(enc, wk.dLogits, wk.dTopW, a.topIdx, a.probs, {
      T, E: m.numExperts, K: m.topK, scoring: m.scoring, nGroup: m.nGroup, topkGroup: m.topkGroup, normTopkProb: m.normTopkProb, routedScalingFactor: m.routedScalingFactor,
    });
    routerLogitsBackward(enc, dRouter, inputGrad ? wk.dHn : null, wk.dLogits, a.hn, lw.t.router!.buf, T, s.hidden, m.numExperts, true);
  }
  const sd = { T, H: s.hidden, E: m.numExperts, K: m.topK, IE: m.expertIntermediate };
  if (mode.kind === 'sparse') {
    sparseGradGateUp(enc, mode.gradG, mode.idxG, wk.dG, wk.dU, a.hn, route, mode.nG, sd, true);
    sparseGradDown(enc, mode.gradD, mode.idxD, wk.dY, a.A, route, mode.nD, sd, true);
  } else if (mode.kind === 'dense') {
    expertsBackwardWeights(enc, { gate: mode.dGate, up: mode.dUp, down: mode.dDown }, a.hn, a, g, route, d, mode.accumulate);
  }
}
