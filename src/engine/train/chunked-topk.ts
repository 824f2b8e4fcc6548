// Exact top-k of |x| over a tensor that exists one part at a time (a trained layer's dense gradient, chunk of experts by
// chunk): each part's own top-k is merged into a running set of the best k so far. Equals topkSelect over the whole tensor.
//
// Why it is exact, ties included: topkSelect orders entries by |x| descending, then index ascending (ties at the
// threshold go to the lowest indices). An entry of the global top-k is in its part's top-k (fewer than k entries of
// the part come before it). Parts are offered in ascending index order and every candidate list is kept in ascending
// index order (running set first, then the new part), so positions in the candidate list order ties as indices do, and
// the top-k of the candidates by position is the top-k of the whole by index.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';
import { topkGather, topkSelect } from '../ops/topk.ts';

/** The best `k` entries offered so far: values (f32 bits) and global indices, ascending by index; `have` of them valid. */
export class RunningTopk {
  readonly val: GPUBuffer; // [k]
  readonly idx: GPUBuffer; // [k] u32
  have = 0;
  constructor(gpu: GpuContext, readonly k: number, label: string) {
    this.val = createBuffer(gpu, { label: `${label}.val`, size: k * 4, kind: 'workspace' });
    this.idx = createBuffer(gpu, { label: `${label}.idx`, size: k * 4, kind: 'workspace' });
  }
}

/** The merge work shared by running sets of k ≤ kMax: candidates [2·kMax] (values, indices) and picks [kMax]. */
export class TopkMerger {
  readonly candVal: GPUBuffer;
  readonly candIdx: GPUBuffer;
  readonly pick: GPUBuffer;
  constructor(gpu: GpuContext, readonly kMax: number, readonly work: GPUBuffer) {
    const f = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind: 'workspace' });
    this.candVal = f('topk.cand.val', 2 * kMax);
    this.candIdx = f('topk.cand.idx', 2 * kMax);
    this.pick = f('topk.pick', kMax);
  }

  /** Offers part x[0..n) whose element i has global index base + i; parts must come in ascending index order. */
  offer(enc: Encoder, r: RunningTopk, x: GPUBuffer, n: number, base: number): void {
    const m = Math.min(r.k, n);
    if (m === 0) return;
    topkSelect(enc, this.pick, x, this.work, n, m);
    this.runningFirst(enc, r);
    topkGather(enc, this.candVal, this.candIdx, x, this.pick, null, m, r.have, base);
    this.settle(enc, r, r.have + m);
  }

  /** a := best k of a ∪ b; every index of b must be above every index of a. */
  append(enc: Encoder, a: RunningTopk, b: RunningTopk): void {
    if (!b.have) return;
    this.runningFirst(enc, a);
    enc.copy(b.val, 0, this.candVal, a.have * 4, b.have * 4);
    enc.copy(b.idx, 0, this.candIdx, a.have * 4, b.have * 4);
    this.settle(enc, a, a.have + b.have);
  }

  /** dest[0..k) = the k indices, ascending (as topkSelect writes them). */
  finish(enc: Encoder, dest: GPUBuffer, r: RunningTopk): void {
    if (r.have !== r.k) throw new Error(`chunked top-k: ${r.have} entries offered, k is ${r.k}`);
    enc.copy(r.idx, 0, dest, 0, r.k * 4);
    r.have = 0;
  }

  private runningFirst(enc: Encoder, r: RunningTopk): void {
    if (r.k > this.kMax) throw new Error(`chunked top-k: k ${r.k} above the merger's ${this.kMax}`);
    if (!r.have) return;
    enc.copy(r.val, 0, this.candVal, 0, r.have * 4);
    enc.copy(r.idx, 0, this.candIdx, 0, r.have * 4);
  }

  /** r := the best min(k, total) of the candidates [0, total). */
  private settle(enc: Encoder, r: RunningTopk, total: number): void {
    if (total <= r.k) {
      enc.copy(this.candVal, 0, r.val, 0, total * 4);
      enc.copy(this.candIdx, 0, r.idx, 0, total * 4);
    } else {
      topkSelect(enc, this.pick, this.candVal, this.work, total, r.k);
      topkGather(enc, r.val, r.idx, this.candVal, this.pick, this.candIdx, r.k, 0);
    }
    r.have = Math.min(r.k, total);
  }
}
