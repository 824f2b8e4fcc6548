// Causal grouped-query attention launchers (flash style, f32). Same signature as ref/attention.ts: outputs, inputs, dims.
// Forward saves lse [T, NH] for the backward; backward = delta preamble, then dk/dv per (key block, query head) (with GQA:
// per-head partials, then their sum over each kv head's query heads), then dq per (query block, head).

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import fwdSrc from '../../../shaders/attention.wgsl?raw';
import deltaSrc from '../../../shaders/attention_backward_delta.wgsl?raw';
import dqSrc from '../../../shaders/attention_backward_dq.wgsl?raw';
import dkdvSrc from '../../../shaders/attention_backward_dkdv.wgsl?raw';
import dkdvSumSrc from '../../../shaders/attention_backward_dkdv_sum.wgsl?raw';
import { flatGrid } from './elementwise.ts';

/**
 * Layout: T = batch * seq token rows, sample-major. q [T, nHeads, dQK], k [T, nKvHeads, dQK], v [T, nKvHeads, dV],
 * o [T, nHeads, dV]. Head h reads kv head floor(h / (nHeads / nKvHeads)). Key j is visible to query i of the same
 * sample iff j <= i and (window === null or i - j < window).
 */
export interface AttentionDims {
  batch: number;
  seq: number;
  nHeads: number;
  nKvHeads: number;
  dQK: number;
  dV: number;
  /** Multiplier of q.k before the softmax (usually dQK^-0.5). */
  scale: number;
  /** Sliding window (keys i-window < j <= i), or null for plain causal. */
  window: number | null;
}

/** Threads per workgroup (tx along keys / head dims, ty along queries). Score blocks are 4*ty queries x 4*tx keys. */
export interface AttentionTiles {
  tx: number;
  ty: number;
}

/** 64 queries x 64 keys per block, 256 threads: sized for seq 512, D 128 (about 30 KiB of workgroup memory). */
export const ATTENTION_TILES: AttentionTiles = { tx: 16, ty: 16 };

const R = 4, DC = 16, KC = 8, MAXC = 16;

export function attentionParams(d: AttentionDims): ArrayBuffer {
  const b = new ArrayBuffer(32);
  const u = new Uint32Array(b);
  u.set([d.batch, d.seq, d.nHeads, d.nKvHeads]);
  new Float32Array(b)[4] = d.scale;
  u[5] = d.window ?? 0;
  return b;
}

/** Query-key pairs one head of one sample scores: causal, within the window. */
export function attentionPairs(d: AttentionDims): number {
  const w = d.window ?? d.seq;
  // sum over i < seq of min(i + 1, w)
  const full = Math.min(w, d.seq);
  return (full * (full + 1)) / 2 + (d.seq - full) * w;
}

/** Bytes of q, k, v (f32) and of o or dO. */
function qkvoBytes(d: AttentionDims): { q: number; kv: number; o: number } {
  const T = d.batch * d.seq;
  return { q: 4 * T * d.nHeads * d.dQK, kv: 4 * T * d.nKvHeads * (d.dQK + d.dV), o: 4 * T * d.nHeads * d.dV };
}

function check(enc: Encoder, d: AttentionDims, t: AttentionTiles): Record<string, number> {
  const bad = (m: string) => new Error(`attention: ${m}`);
  if (d.nHeads % d.nKvHeads) throw bad(`nHeads ${d.nHeads} is not a multiple of nKvHeads ${d.nKvHeads}`);
  if (d.window !== null && !(d.window >= 1)) throw bad(`window must be >= 1 or null, got ${d.window}`);
  if (Math.max(d.dQK, d.dV) > MAXC * t.tx) throw bad(`head dims ${d.dQK}/${d.dV} exceed ${MAXC} x tile tx ${t.tx}`);
  const lim = enc.gpu.info;
  if (t.tx * t.ty > lim.maxComputeInvocationsPerWorkgroup) throw bad(`tile ${t.tx}x${t.ty} exceeds ${lim.maxComputeInvocationsPerWorkgroup} invocations`);
  const [bq, bk] = [R * t.ty, R * t.tx];
  const shared = 4 * (DC * (bq + bk) + Math.max(bq, bk) * (Math.max(bq, bk) + 1) + Math.max(KC * Math.max(d.dQK, d.dV) + 3 * bq, 0));
  if (shared > lim.maxComputeWorkgroupStorageSize) throw bad(`tiles need ~${shared} B of workgroup memory, this GPU allows ${lim.maxComputeWorkgroupStorageSize}: use smaller tiles`);
  if (d.batch > 65535 || Math.ceil(d.seq / Math.min(bq, bk)) > 65535 || d.nHeads > 65535) throw bad('too many workgroups');
  return { TX: t.tx, TY: t.ty, DQK: d.dQK, DV: d.dV };
}

/** o [T, NH, dV], lse [T, NH] <- q [T, NH, dQK], k [T, NKV, dQK], v [T, NKV, dV] */
export function attentionForward(
  enc: Encoder,
  o: GPUBuffer,
  lse: GPUBuffer,
  q: GPUBuffer,
  k: GPUBuffer,
  v: GPUBuffer,
  d: AttentionDims,
  tiles: AttentionTiles = ATTENTION_TILES,
): void {
  const constants = check(enc, d, tiles);
  const kf = kernel(enc.gpu, { name: 'attention.forward', code: fwdSrc, entryPoint: 'forward', constants });
  // S = q k^T and o = P v over the visible pairs; q, k, v read once, o and lse written
  const pairs = d.batch * d.nHeads * attentionPairs(d), b = qkvoBytes(d);
  const cost = { flops: 2 * pairs * (d.dQK + d.dV), bytes: b.q + b.kv + b.o + 4 * d.batch * d.seq * d.nHeads };
  kf.dispatch(enc, [q, k, v, o, lse], [Math.ceil(d.seq / (R * tiles.ty)), d.nHeads, d.batch], attentionParams(d), cost);
}

/**
 * f32 elements of the scratch attentionBackward needs for the per-query-head dv partials [T, NH, dV] when NH > NKV (GQA;
 * the dk partials use dq's buffer, written last), else 0.
 */
export function attentionBackwardScratch(d: Pick<AttentionDims, 'batch' | 'seq' | 'nHeads' | 'nKvHeads' | 'dV'>): number {
  return d.nHeads > d.nKvHeads ? d.batch * d.seq * d.nHeads * d.dV : 0;
}

/**
 * dq [T, NH, dQK], dk [T, NKV, dQK], dv [T, NKV, dV] (all assigned; dk/dv summed over the query heads of each kv head)
 * and the workspace delta [T, NH] (= rowsum(dO * o)) <- dO [T, NH, dV] and the forward's q, k, v, o, lse.
 * `dvPart`: attentionBackwardScratch(d) f32 elements (GQA only).
 */
export function attentionBackward(
  enc: Encoder,
  dq: GPUBuffer,
  dk: GPUBuffer,
  dv: GPUBuffer,
  delta: GPUBuffer,
  dO: GPUBuffer,
  q: GPUBuffer,
  k: GPUBuffer,
  v: GPUBuffer,
  o: GPUBuffer,
  lse: GPUBuffer,
  d: AttentionDims,
  tiles: AttentionTiles = ATTENTION_TILES,
  dvPart: GPUBuffer | null = null,
): void {
  const constants = check(enc, d, tiles);
  const scratch = attentionBackwardScratch(d);
  if (scratch > 0 && !(dvPart && dvPart.size >= 4 * scratch)) {
    throw new Error(`attention: backward with ${d.nHeads} query heads over ${d.nKvHeads} kv heads needs a dv-partials scratch of ${4 * scratch} bytes, got ${dvPart ? dvPart.size : 'none'}`);
  }
  const params = attentionParams(d);
  const T = d.batch * d.seq;
  const rows = T * d.nHeads;
  const pairs = d.batch * d.nHeads * attentionPairs(d), b = qkvoBytes(d);
  const read = b.q + b.kv + b.o + 8 * rows; // q, k, v, dO, lse, delta
  const kd = kernel(enc.gpu, { name: 'attention.backward_delta', code: deltaSrc, entryPoint: 'backward_delta', constants: { WG: 64, DV: d.dV } });
  kd.dispatch(enc, [dO, o, delta], [Math.ceil(rows / 64)], params, { flops: 2 * rows * d.dV, bytes: 2 * b.o + 4 * rows });
  // per query head: recomputed S (dQK), dv += P^T dO (dV), dP = dO v^T (dV), dk += dS^T q (dQK)
  const kkv = kernel(enc.gpu, { name: 'attention.backward_dkdv', code: dkdvSrc, entryPoint: 'backward_dkdv', constants });
  const parts = 4 * rows * (d.dQK + d.dV);
  const [pk, pv] = scratch > 0 ? [dq, dvPart!] : [dk, dv];
  kkv.dispatch(enc, [q, k, v, dO, lse, delta, pk, pv], [Math.ceil(d.seq / (R * tiles.ty)), d.nHeads, d.batch], params, { flops: 4 * pairs * (d.dQK + d.dV), bytes: read + parts });
  if (scratch > 0) {
    const ks = kernel(enc.gpu, { name: 'attention.backward_dkdv_sum', code: dkdvSumSrc, entryPoint: 'backward_dkdv_sum', constants: { WG: 256, DQK: d.dQK, DV: d.dV } });
    const n = T * d.nKvHeads * (d.dQK + d.dV);
    ks.dispatch(enc, [pk, pv, dk, dv], flatGrid(Math.ceil(n / 256)), params, { flops: rows * (d.dQK + d.dV), bytes: parts + b.kv });
  }
  const kq = kernel(enc.gpu, { name: 'attention.backward_dq', code: dqSrc, entryPoint: 'backward_dq', constants });
  // recomputed S (dQK), dP = dO v^T (dV), dq = dS k (dQK)
  kq.dispatch(enc, [q, k, v, dO, lse, delta, dq], [Math.ceil(d.seq / (R * tiles.ty)), d.nHeads, d.batch], params, { flops: 2 * pairs * (2 * d.dQK + d.dV), bytes: read + b.q });
}
