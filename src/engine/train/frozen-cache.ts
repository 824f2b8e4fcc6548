// The frozen cache: the hidden state entering layer TRAIN_FROM for each training sample, computed once (embedding and
// frozen layers run forward only) and copied back in when the sample comes again. Up to `capacity` samples, on the GPU
// ('gpu'), or in host memory ('host': with streamed frozen layers, where every sample is cached by the layer-major pass
// and a big dataset would not fit on the GPU; a step uploads its microbatch's rows, seq·H·4 bytes a sample).

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, writeBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';

export type CachePlace = 'gpu' | 'host';

export class FrozenCache {
  readonly buf: GPUBuffer | null; // 'gpu': [capacity, seq, H]
  private readonly host: Float32Array[] = []; // 'host': one [seq, H] per slot
  private pending: { slot: number; src: GPUBuffer; i: number }[] = [];
  private slots = new Map<number, number>(); // sample -> slot
  hits = 0;
  misses = 0;

  constructor(
    private readonly gpu: GpuContext,
    readonly capacity: number,
    readonly seq: number,
    readonly hidden: number,
    readonly id: string,
    readonly place: CachePlace = 'gpu',
  ) {
    this.buf = capacity > 0 && place === 'gpu' ? createBuffer(gpu, { label: 'frozen-cache', size: capacity * seq * hidden * 4, kind: 'cache' }) : null;
  }

  /** Bytes of host memory the cache holds (its 'host' slots). */
  get hostBytes(): number {
    return this.host.length * this.bytesPerSample;
  }

  /** Slot `slot` into row block `i` of dst: a copy recorded in enc ('gpu'), or an upload queued before enc's submit ('host'). */
  private copyOut(enc: Encoder, slot: number, dst: GPUBuffer, i: number): void {
    if (this.place === 'host') writeBuffer(this.gpu, dst, i * this.bytesPerSample, this.host[slot]!);
    else enc.copy(this.buf!, slot * this.bytesPerSample, dst, i * this.bytesPerSample, this.bytesPerSample);
  }

  /** Row block `i` of src into slot `slot`: recorded in enc ('gpu'), or read back by flush() after enc's submit ('host'). */
  private copyIn(enc: Encoder, src: GPUBuffer, i: number, slot: number): void {
    if (this.place === 'host') {
      while (this.host.length <= slot) this.host.push(new Float32Array(this.seq * this.hidden).fill(NaN)); // NaN until flushed
      this.pending.push({ slot, src, i });
    } else enc.copy(src, i * this.bytesPerSample, this.buf!, slot * this.bytesPerSample, this.bytesPerSample);
  }

  /** 'host': completes the copies put/store recorded, once their encoder is submitted. Nothing to do on the GPU. */
  async flush(): Promise<void> {
    const n = this.seq * this.hidden;
    for (const p of this.pending) this.host[p.slot]!.set(await readF32(this.gpu, p.src, p.i * n * 4, n));
    this.pending = [];
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
