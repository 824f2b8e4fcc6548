// CPU float64 oracle of the training method (tests only), written from docs/method.md and the per-op oracles here:
// importance → active sets, then per step: reselection when due (grown entries back to W0, Adam state cleared), forward,
// backward, SparseAdam on the active expert entries, router SGD with momentum; warm-up + cosine learning rate.
// Scope: one trained layer, the last (TRAIN_FROM = numLayers - 1, an MoE layer), so the backward needs no attention.
//
// Legend: T tokens, H hidden, E experts, IE expert width. G = [gate | up] of all experts ([2, E, IE, H]), D = down
// ([E, H, IE]): the two selection tensors, as flat index spaces.

import type { ModelSpec } from '../model/spec.ts';
import { globalTensors, layerTensors } from '../model/tensors.ts';
import { refForward, refMoeBlock, type RefTensors } from './model.ts';
import { rmsnormBackward, rmsnormForward } from './rmsnorm.ts';
import { xentBackward, xentForward } from './xent.ts';
import { expertsBackward, expertsBackwardWeights } from './experts.ts';
import { routerBackward, routerLogitsBackward } from './router.ts';
import { topkSelect } from './topk.ts';
import { routerSgd, sparseAdam } from './adam.ts';

export interface RefTrainSettings {
  frac: number;
  steps: number;
  lrPeak: number;
  wd: number;
  reselectEvery: number;
}

/** One microbatch: ids and targets [batch * seq] (targets XENT_IGNORE where none). */
export interface RefBatch { ids: Uint32Array; targets: Uint32Array; batch: number; seq: number }

/** An active set with its compact optimizer state: idx [k] ascending, master, m, v [k]. */
export interface RefSelection { idx: Uint32Array; master: Float64Array; m: Float64Array; v: Float64Array }

/** lr(s) of docs/method.md: linear warm-up over max(1, floor(5 % of STEPS)), then cosine from LR_PEAK to LR_PEAK / 10. */
export function refLearningRate(s: number, steps: number, peak: number): number {
  const warm = Math.max(1, Math.floor(steps * 0.05));
  if (s <= warm) return (peak * s) / warm;
  const min = peak / 10;
  return min + (peak - min) * 0.5 * (1 + Math.cos((Math.PI * (s - warm)) / Math.max(1, steps - warm)));
}

export class RefTrainer {
  readonly L: number;
  /** Current weights of the trained layer (views: the per-expert tensors of `tensors` point into them). */
  readonly G: Float64Array;
  readonly D: Float64Array;
  readonly G0: Float64Array;
  readonly D0: Float64Array;
  readonly router: Float64Array; // [E, H], the tensor in `tensors`
  readonly routerBuf: Float64Array; // [E, H] momentum
  readonly kG: number;
  readonly kD: number;
  selG: RefSelection | null = null;
  selD: RefSelection | null = null;
  routerHasBuf = false;
  t = 0;
  step = 0;
  turnovers: number[] = [];

  constructor(readonly spec: ModelSpec, readonly tensors: RefTensors, readonly s: RefTrainSettings) {
    this.L = spec.numLayers - 1;
    if (spec.layers[this.L]!.mlp !== 'moe') throw new Error('RefTrainer: the last layer has no routed experts');
    const { numExperts: E, expertIntermediate: IE } = spec.moe;
    const per = IE * spec.hidden;
    this.G = new Float64Array(2 * E * per);
    this.D = new Float64Array(E * per);
    for (const e of layerTensors(spec, this.L)) {
      const at = e.role === 'expert.gate' ? [this.G, e.expert! * per] as const
        : e.role === 'expert.up' ? [this.G, (E + e.expert!) * per] as const
        : e.role === 'expert.down' ? [this.D, e.expert! * per] as const : null;
      if (e.role.endsWith('_fused')) throw new Error('RefTrainer: per-expert checkpoints only');
      if (!at) continue;
      at[0].set(tensors.get(e.name)!, at[1]);
      tensors.set(e.name, at[0].subarray(at[1], at[1] + per));
    }
    this.G0 = this.G.slice();
    this.D0 = this.D.slice();
    const r = layerTensors(spec, this.L).find((e) => e.role === 'router')!;
    this.router = tensors.get(r.name)!;
    this.routerBuf = new Float64Array(this.router.length);
    this.kG = Math.max(1, Math.floor(s.frac * this.G.length));
    this.kD = Math.max(1, Math.floor(s.frac * this.D.length));
  }

  /** Loss and the dense gradients of G, D and the router at the current weights on one microbatch. */
  grads(b: RefBatch): { loss: number; dG: Float64Array; dD: Float64Array; dRouter: Float64Array } {
    const spec = this.spec, L = this.L, T = b.batch * b.seq, H = spec.hidden, V = spec.vocab;
    const fwd = refForward(spec, this.tensors, b.ids, b.batch, b.seq, { targets: b.targets, logits: false });
    const globals = new Map(globalTensors(spec).map((e) => [e.role, e.name]));
    const norm = this.tensors.get(globals.get('final_norm')!)!;
    const head = this.tensors.get(globals.get(spec.tieEmbeddings ? 'embed' : 'lm_head')!)!;
    // loss = mean over the counted targets: d/d(final hidden), back through the final norm to the residual
    const final = new Float64Array(T * H), rstd = new Float64Array(T), lse = new Float64Array(T);
    rmsnormForward(final, rstd, fwd.residual, norm, T, H, spec.rmsEps);
    xentForward(new Float64Array(T), lse, final, head, b.targets, { T, H, V, wDtype: 'f32' });
    const dFinal = new Float64Array(T * H), dRes = new Float64Array(T * H);
    xentBackward(dFinal, final, head, b.targets, lse, { T, H, V, wDtype: 'f32', scale: 1 / fwd.tokens, accumulate: false });
    rmsnormBackward(dRes, null, dFinal, fwd.residual, norm, rstd, T, H);
    // the last layer's MoE output adds to the residual: its gradient is dRes
    const m = refMoeBlock(spec, L, this.tensors, fwd.mlpInput[L]!, T);
    const { K, IE, E } = m.dims;
    const R = T * K;
    const g = { dY: new Float64Array(R * H), dG: new Float64Array(R * IE), dU: new Float64Array(R * IE), dXr: new Float64Array(R * H) };
    const dTopW = new Float64Array(T * K);
    expertsBackward(new Float64Array(T * H), dTopW, g, dRes, m.experts, m.topW, m.saved, m.route, m.dims);
    const per = E * IE * H;
    const dG = new Float64Array(2 * per), dD = new Float64Array(per);
    expertsBackwardWeights({ gate: dG.subarray(0, per), up: dG.subarray(per), down: dD }, fwd.mlpInput[L]!, m.saved, g, m.route, m.dims);
    const dLogits = new Float64Array(T * E), dRouter = new Float64Array(E * H);
    routerBackward(dLogits, dTopW, m.topIdx, m.probs, m.routerDims);
    routerLogitsBackward(dRouter, null, dLogits, fwd.mlpInput[L]!, this.router, T, H, E);
    return { loss: fwd.loss, dG, dD, dRouter };
  }

  /** First active sets: top-k of Σ|grad| over the importance microbatches at W0; masters from W0, Adam state zero. */
  init(batches: RefBatch[]): void {
    const impG = new Float64Array(this.G.length), impD = new Float64Array(this.D.length);
    for (const b of batches) {
      const gr = this.grads(b);
      for (let i = 0; i < impG.length; i++) impG[i]! += Math.abs(gr.dG[i]!);
      for (let i = 0; i < impD.length; i++) impD[i]! += Math.abs(gr.dD[i]!);
    }
    this.select(impG, impD, false);
  }

  /** New active sets = top-k of |score|; grown entries back to W0 (when resetGrown); masters from W; m = v = 0, t = 0. */
  private select(scoreG: Float64Array, scoreD: Float64Array, resetGrown: boolean): void {
    const pick = (w: Float64Array, w0: Float64Array, score: Float64Array, k: number, old: RefSelection | null): RefSelection => {
      const idx = new Uint32Array(k);
      topkSelect(idx, score, score.length, k);
      const was = new Set(old?.idx ?? []);
      let grown = 0;
      for (const i of idx) if (!was.has(i)) (grown++, resetGrown && (w[i] = w0[i]!));
      if (old) this.turnovers.push(grown / k);
      return { idx, master: Float64Array.from(idx, (i) => w[i]!), m: new Float64Array(k), v: new Float64Array(k) };
    };
    this.selG = pick(this.G, this.G0, scoreG, this.kG, this.selG);
    this.selD = pick(this.D, this.D0, scoreD, this.kD, this.selD);
    this.t = 0;
  }

  /** One step s (1-based) on microbatch b: reselection when due (scored on b), update; returns the step's loss. */
  trainStep(b: RefBatch): number {
    const s = ++this.step;
    if (this.s.reselectEvery > 0 && s > 1 && s % this.s.reselectEvery === 0) {
      const gr = this.grads(b);
      this.select(gr.dG, gr.dD, true);
    }
    const gr = this.grads(b);
    const lr = refLearningRate(s, this.s.steps, this.s.lrPeak);
    if (![gr.loss, ...gr.dG, ...gr.dD, ...gr.dRouter].every(Number.isFinite)) return gr.loss; // a skipped step
    this.t++;
    for (const [sel, w, grad] of [[this.selG!, this.G, gr.dG], [this.selD!, this.D, gr.dD]] as const) {
      const k = sel.idx.length;
      sparseAdam(sel.master, sel.m, sel.v, Float64Array.from(sel.idx, (i) => grad[i]!), null, k, { lr, t: this.t, weightDecay: this.s.wd });
      sel.idx.forEach((i, j) => (w[i] = sel.master[j]!));
    }
    routerSgd(this.router, this.routerBuf, gr.dRouter, null, this.router.length, { lr, weightDecay: this.s.wd, hasBuf: this.routerHasBuf });
    this.routerHasBuf = true;
    return gr.loss;
  }
}

