// The frozen cache: the hidden state entering layer TRAIN_FROM for each training sample, computed once (embedding and
// frozen layers run forward only) and copied back in when the sample comes again. Up to `capacity` samples, on the GPU
// ('gpu'), or in host memory ('host': with streamed frozen layers, where every sample is cached by the layer-major pass
// and a big dataset would not fit on the GPU; a step uploads its microbatch's rows, seq·H·4 bytes a sample).

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, writeBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';

export type CachePlace = 'gpu' | 'host';

/** A window's hidden state [seq, H] between layers. */
export interface WindowStore {
  /** Window `w` into row block `i` of `dst` (recorded in enc, or queued before it). */
  load(enc: Encoder, w: number, dst: GPUBuffer, i: number): void;
  /** Row block `i` of `src` as window `w`'s (recorded in enc; `flush` completes it after the submit). */
  save(enc: Encoder, w: number, src: GPUBuffer, i: number): void;
  flush?(): Promise<void>;
}

/** Host-side f32 store of `count` windows of seq × H (NaN until written). */
export class HostStore implements WindowStore {
  readonly data: Float32Array[];
  private pending: { w: number; src: GPUBuffer; i: number }[] = [];
  constructor(private readonly gpu: GpuContext, count: number, readonly seq: number, readonly hidden: number) {
    this.data = Array.from({ length: count }, () => new Float32Array(seq * hidden).fill(NaN));
  }
  load(_enc: Encoder, w: number, dst: GPUBuffer, i: number): void {
    writeBuffer(this.gpu, dst, i * this.data[w]!.byteLength, this.data[w]!);
  }
  save(_enc: Encoder, w: number, src: GPUBuffer, i: number): void {
    this.pending.push({ w, src, i });
  }
  /** Reads back what save recorded: one readback per source buffer, over the row blocks saved from it. */
  async flush(): Promise<void> {
    const n = this.seq * this.hidden;
    for (const src of new Set(this.pending.map((p) => p.src))) {
      const mine = this.pending.filter((p) => p.src === src);
      const lo = Math.min(...mine.map((p) => p.i));
      const hi = Math.max(...mine.map((p) => p.i));
      const rows = await readF32(this.gpu, src, lo * n * 4, (hi - lo + 1) * n); // byte offset
      for (const p of mine) this.data[p.w]!.set(rows.subarray((p.i - lo) * n, (p.i - lo + 1) * n));
    }
    this.pending = [];
  }
}

export class FrozenCache {
  readonly buf: GPUBuffer | null; // 'gpu': [capacity, seq, H]
  private readonly host: HostStore | null; // 'host': one window per slot
  private slots = new Map<number, number>(); // sample -> slot
  hits = 0;
  misses = 0;

  constructor(
    gpu: GpuContext,
    readonly capacity: number,
    readonly seq: number,
    readonly hidden: number,
    readonly id: string,
    readonly place: CachePlace = 'gpu',
  ) {
    this.buf = capacity > 0 && place === 'gpu' ? createBuffer(gpu, { label: 'frozen-cache', size: capacity * seq * hidden * 4, kind: 'cache' }) : null;
    this.host = capacity > 0 && place === 'host' ? new HostStore(gpu, capacity, seq, hidden) : null;
  }

  /** Bytes of host memory the cache holds (its 'host' slots). */
  get hostBytes(): number {
    return this.host ? this.host.data.length * this.bytesPerSample : 0;
  }

  /** Slot `slot` into row block `i` of dst: a copy recorded in enc ('gpu'), or an upload queued before enc's submit ('host'). */
  private copyOut(enc: Encoder, slot: number, dst: GPUBuffer, i: number): void {
    if (this.host) this.host.load(enc, slot, dst, i);
    else enc.copy(this.buf!, slot * this.bytesPerSample, dst, i * this.bytesPerSample, this.bytesPerSample);
  }

  /** Row block `i` of src into slot `slot`: recorded in enc ('gpu'), or read back by flush() after enc's submit ('host'). */
  private copyIn(enc: Encoder, src: GPUBuffer, i: number, slot: number): void {
    if (this.host) this.host.save(enc, slot, src, i);
    else enc.copy(src, i * this.bytesPerSample, this.buf!, slot * this.bytesPerSample, this.bytesPerSample);
  }

  /** 'host': completes the copies put/store recorded, once their encoder is submitted. Nothing to do on the GPU. */
  async flush(): Promise<void> {
    await this.host?.flush();
  }

  get bytesPerSample(): number {
    return this.seq * this.hidden * 4;
  }

  has(sample: number): boolean {
    return this.slots.has(sample);
  }

  /** Copy the cached input of `sample` into `dst` at row block `i` of the microbatch. */
  load(enc: Encoder, sample: number, dst: GPUBuffer, i: number): void {
    this.copyOut(enc, this.slots.get(sample)!, dst, i);
    this.hits++;
  }

  /** Write row block `i` of `src` as `sample`'s input (the layer-major pass: not a miss); it must have or get a slot. */
  put(enc: Encoder, sample: number, src: GPUBuffer, i: number): void {
    let slot = this.slots.get(sample);
    if (slot === undefined) {
      if (this.slots.size >= this.capacity) throw new Error(`frozen cache full (${this.capacity} samples)`);
      slot = this.slots.size;
      this.slots.set(sample, slot);
    }
    this.copyIn(enc, src, i, slot);
  }

  /** Copy `sample`'s stored row block into `dst` at row block `i` without counting a hit (the layer-major pass). */
  get(enc: Encoder, sample: number, dst: GPUBuffer, i: number): void {
    const slot = this.slots.get(sample);
    if (slot === undefined) throw new Error(`sample ${sample} is not in the frozen cache`);
    this.copyOut(enc, slot, dst, i);
  }

  /**
   * Store row block `i` of `src` as `sample`'s input, if there is room ('gpu'; a 'host' cache is filled only by the
   * layer-major pass, which caches every sample, so a step never misses).
   */
  store(enc: Encoder, sample: number, src: GPUBuffer, i: number): void {
    this.misses++;
    if (this.place === 'host' || this.slots.has(sample) || this.slots.size >= this.capacity) return;
    const slot = this.slots.size;
    this.slots.set(sample, slot);
    this.copyIn(enc, src, i, slot);
  }
}
