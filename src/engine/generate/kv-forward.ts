// The decoder forward (train/forward.ts, unchanged) run over a KV cache: each layer's keys and values of the new tokens
// are appended to the cache at their positions, and attention runs over every cached position (ops/attention_decode.ts).
// Prefill and decode are the same step: T new tokens at positions pos0..pos0+T-1 of one sequence.
//
// Legend: P cached positions (maxPositions), T new tokens, H hidden, V vocab. Cache widths per token: attentionWidths'
// k and v (MHA: NKV*D, NKV*D; MLA: the per-head keys [nope | rope] and values NH*D, NH*DV, as HF's DeepSeek-V3 caches them).

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, writeBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { AttentionDims, AttentionTiles } from '../ops/attention.ts';
import { decodeAttention } from '../ops/attention_decode.ts';
import { rmsnormForward } from '../ops/rmsnorm.ts';
import { attentionWidths, Forward, type LayerActs } from '../train/forward.ts';
import { linear, type ModelWeights } from '../train/weights.ts';

export class KvForward extends Forward {
  readonly kCache: GPUBuffer[]; // per layer [P, kw]
  readonly vCache: GPUBuffer[]; // per layer [P, vw]
  readonly lastH: GPUBuffer; // [H]  the last new token's residual (its final norm goes to finalH row 0)
  readonly lastRstd: GPUBuffer; // [1]
  readonly logitsBuf: GPUBuffer; // [V]
  /** Position of the first token of the step being recorded. */
  private pos0 = 0;

  /** `chunk`: most tokens per step (prefill runs in steps of at most this many); `positions`: cache length P. */
  constructor(gpu: GpuContext, spec: ModelSpec, w: ModelWeights, readonly cacheLength: number, chunk: number) {
    super(gpu, spec, w, { maxTokens: chunk });
    const { k, v } = attentionWidths(spec);
    const f = (label: string, n: number, kind = 'activations') => createBuffer(gpu, { label, size: n * 4, kind });
    this.kCache = spec.layers.map((_, L) => f(`kv.k${L}`, cacheLength * k, 'kv-cache'));
    this.vCache = spec.layers.map((_, L) => f(`kv.v${L}`, cacheLength * v, 'kv-cache'));
    this.lastH = f('kv.lastH', spec.hidden);
    this.lastRstd = f('kv.lastRstd', 1);
    this.logitsBuf = f('kv.logits', spec.vocab);
  }

  /** Appends the step's k, v to layer L's cache and attends the step's queries over positions 0..pos0+T-1. */
  override attend(enc: Encoder, L: number, a: LayerActs, d: AttentionDims, _tiles?: AttentionTiles): void {
    const T = d.batch * d.seq;
    const { k, v } = attentionWidths(this.spec);
    enc.copy(a.k, 0, this.kCache[L]!, this.pos0 * k * 4, T * k * 4);
    enc.copy(a.v, 0, this.vCache[L]!, this.pos0 * v * 4, T * v * 4);
    decodeAttention(enc, a.o, a.q, this.kCache[L]!, this.vCache[L]!, {
      tokens: T, pos0: this.pos0, nHeads: d.nHeads, nKvHeads: d.nKvHeads, dQK: d.dQK, dV: d.dV, scale: d.scale, window: d.window,
    });
  }

  /**
   * Runs `ids` (T <= chunk tokens) at positions pos0..pos0+T-1 through every layer into the cache; returns the logits [V]
   * of the last token, or with `all` the logits [T, V] of every token (tests on small vocabularies).
   */
  async step(ids: ArrayLike<number>, pos0: number, all = false): Promise<Float32Array> {
    const T = ids.length;
    const s = this.spec;
    if (T < 1 || T > this.opts.maxTokens) throw new Error(`step of ${T} tokens: 1..${this.opts.maxTokens} allowed`);
    if (pos0 + T > this.cacheLength) throw new Error(`positions ${pos0}..${pos0 + T - 1} exceed the cache's ${this.cacheLength}`);
    this.pos0 = pos0;
    writeBuffer(this.gpu, this.ids, 0, Uint32Array.from(ids));
    writeBuffer(this.gpu, this.positions, 0, Uint32Array.from({ length: T }, (_, i) => pos0 + i));
    const enc = new Encoder(this.gpu, 'generate');
    this.embed(enc, T);
    for (let L = 0; L < s.numLayers; L++) this.layer(enc, L, this.resid, this.acts, 1, T);
    if (all) {
      rmsnormForward(enc, this.finalH, this.finalRstd, this.resid, this.w.finalNorm.buf, T, s.hidden, s.rmsEps);
      enc.submit();
      return this.logits(T);
    }
    enc.copy(this.resid, (T - 1) * s.hidden * 4, this.lastH, 0, s.hidden * 4);
    rmsnormForward(enc, this.finalH, this.lastRstd, this.lastH, this.w.finalNorm.buf, 1, s.hidden, s.rmsEps);
    linear(enc, this.logitsBuf, this.finalH, this.w.lmHead, undefined, 1);
    enc.submit();
    return readF32(this.gpu, this.logitsBuf, 0, s.vocab);
  }

  /** Frees the cache and every buffer of the forward (activations, rope tables); the weights stay. */
  destroy(): void {
    const isBuf = (x: unknown): x is GPUBuffer => typeof x === 'object' && x !== null && 'mapAsync' in x && 'destroy' in x;
    const own = (o: object | null): GPUBuffer[] => (o ? Object.values(o).filter(isBuf) : []);
    const a = this.acts;
    for (const b of [...this.kCache, ...this.vCache, ...own(this), ...own(a), ...own(a.mla), ...own(a.shared)]) b.destroy();
  }
}
