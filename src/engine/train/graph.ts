// One training pass over a microbatch: frozen layers forward only (or their output from the frozen cache), trained
// layers forward saving activations, head loss, then backward through the trained layers. Allocated once.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32 } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import { Forward, LayerActs, nextTokenTargets, IGNORE } from './forward.ts';
import { BackwardWork, headBackward, headGrad, inputGradsNeeded, layerBackward, type ExpertGradMode, type FrozenGrads } from './backward.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { ModelWeights } from './weights.ts';
import type { FrozenCache } from './frozen-cache.ts';

export interface PassResult {
  /** Mean loss over the valid targets. */
  loss: number;
  tokens: number;
}

export class TrainGraph {
  readonly fwd: Forward;
  readonly acts: LayerActs[] = []; // per trained layer
  readonly xIn: GPUBuffer[] = []; // per trained layer: its input [T, H]
  readonly work: BackwardWork;
  readonly trained: number[];

  constructor(readonly gpu: GpuContext, readonly spec: ModelSpec, weights: ModelWeights, readonly trainFrom: number, readonly maxTokens: number, headRows?: number) {
    if (trainFrom < 0 || trainFrom >= spec.numLayers) throw new Error(`train-from ${trainFrom} outside 0..${spec.numLayers - 1}`);
    this.trained = Array.from({ length: spec.numLayers - trainFrom }, (_, i) => trainFrom + i);
    for (const L of this.trained) {
      this.acts.push(new LayerActs(gpu, spec, maxTokens));
      this.xIn.push(createBuffer(gpu, { label: `xIn${L}`, size: maxTokens * spec.hidden * 4, kind: 'activations' }));
    }
    // frozen layers' forward and evaluation reuse the first trained layer's activations (free at those times)
    this.fwd = new Forward(gpu, spec, weights, { maxTokens, acts: this.acts[0], ...(headRows !== undefined ? { headRows } : {}) });
    this.work = new BackwardWork(gpu, spec, maxTokens);
  }

  /** Embedding + frozen layers: leaves the input of layer trainFrom in fwd.resid. */
  frozenForward(enc: Encoder, batch: number, seq: number): void {
    this.fwd.embed(enc, batch * seq);
    for (let L = 0; L < this.trainFrom; L++) {
      if (this.fwd.w.layers[L]!.streamed) throw new Error(`layer ${L} is streamed (not on the GPU): the layer-major frozen pass must cache every sample first`);
      this.fwd.layer(enc, L, this.fwd.resid, this.fwd.acts, batch, seq);
    }
  }

  /**
   * Forward + backward of one microbatch. `frozenInput` (the cached input of layer trainFrom, [T, H]) skips the
   * frozen layers. Router grads += into dRouters[i] (per trained layer), expert grads per modes[i].
   */
  async pass(
    ids: Uint32Array,
    batch: number,
    seq: number,
    o: {
      targets?: Uint32Array;
      /** The frozen cache and the sample index of each of the batch rows: cached inputs skip the frozen layers. */
      cache?: { cache: FrozenCache; samples: number[] };
      dRouters: (GPUBuffer | null)[];
      modes: ExpertGradMode[];
      frozenGrads?: FrozenGrads;
      /** Leave dL/d(input of the lowest trained layer) in work.dResid (else the backward stops where no gradient needs it). */
      inputGrad?: boolean;
      /** Multiplies the gradient of the mean loss (1/ACCUM when microbatches are averaged). */
      gradScale?: number;
      /** When given, the pass syncs between phases and adds their wall time (ms) here (profiling only). */
      phases?: Record<string, number>;
      /** Recorded right after each trained layer's backward (e.g. consuming a dense gradient scratch shared by layers). */
      afterBackward?: (enc: Encoder, L: number) => void;
      /** Given: the loss rows [T] are handed to it (recorded at the end of the pass) instead of read back; loss is NaN. */
      lossRows?: (enc: Encoder, rows: GPUBuffer) => void;
    },
  ): Promise<PassResult> {
    const f = this.fwd;
    const T = batch * seq;
    const H = this.spec.hidden;
    const targets = o.targets ?? nextTokenTargets(ids, batch, seq);
    let valid = 0;
    for (const t of targets) if (t !== IGNORE) valid++;
    f.setBatch(ids, batch, seq, targets);
    let enc = new Encoder(this.gpu, 'train-pass');
    const ph = o.phases;
    let tPhase = performance.now();
    const phase = async (name: string) => {
      if (!ph) return;
      enc.submit();
      await this.gpu.device.queue.onSubmittedWorkDone();
      const now = performance.now();
      ph[name] = (ph[name] ?? 0) + now - tPhase;
      tPhase = now;
      enc = new Encoder(this.gpu, 'train-pass');
    };
    const c = o.cache;
    enc.section = 'frozen_forward'; // the cost model's phases (gpu/cost.ts)
    if (c && this.trainFrom > 0 && c.samples.every((x) => c.cache.has(x))) c.samples.forEach((x, i) => c.cache.load(enc, x, f.resid, i));
    else {
      this.frozenForward(enc, batch, seq);
      if (c && this.trainFrom > 0) c.samples.forEach((x, i) => c.cache.store(enc, x, f.resid, i));
    }
    await phase('frozen_forward');
    enc.section = 'forward';
    this.trained.forEach((L, i) => {
      enc.copy(f.resid, 0, this.xIn[i]!, 0, T * H * 4);
      f.layer(enc, L, f.resid, this.acts[i]!, batch, seq);
    });
    enc.section = 'head';
    f.head(enc, T, headGrad(this.work, (o.gradScale ?? 1) / Math.max(1, valid))); // loss rows and d finalH, logits once
    await phase('trained_forward');
    enc.section = 'head_backward';
    headBackward(enc, f, this.work, T, o.frozenGrads ?? null);
    enc.section = 'backward';
    const need = inputGradsNeeded(this.spec, this.trained, this.trained.map((_, i) => o.dRouters[i] ?? null), o.modes, o.frozenGrads ?? null, o.inputGrad ?? false);
    for (let i = this.trained.length - 1; i >= 0; i--) {
      layerBackward(enc, f, this.trained[i]!, this.xIn[i]!, this.acts[i]!, this.work, batch, seq, o.dRouters[i] ?? null, o.modes[i]!, o.frozenGrads ?? null, need[i]);
      o.afterBackward?.(enc, this.trained[i]!);
    }
    await phase('backward');
    o.lossRows?.(enc, f.rowLoss);
    enc.submit();
    if (o.lossRows) return { loss: NaN, tokens: valid };
    const rows = await readF32(this.gpu, f.rowLoss, 0, T);
    let sum = 0;
    for (let t = 0; t < T; t++) if (targets[t] !== IGNORE) sum += rows[t]!;
    return { loss: sum / Math.max(1, valid), tokens: valid };
  }
}
