// The frozen cache: the hidden state entering layer TRAIN_FROM for each training sample, computed once (embedding and
// frozen layers run forward only) and copied back in when the sample comes again. Up to `capacity` samples, on the GPU.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';

export class FrozenCache {
  readonly buf: GPUBuffer | null; // [capacity, seq, H]
  private slots = new Map<number, number>(); // sample -> slot
  hits = 0;
  misses = 0;

  constructor(gpu: GpuContext, readonly capacity: number, readonly seq: number, readonly hidden: number, readonly id: string) {
    this.buf = capacity > 0 ? createBuffer(gpu, { label: 'frozen-cache', size: capacity * seq * hidden * 4, kind: 'cache' }) : null;
  }

  get bytesPerSample(): number {
    return this.seq * this.hidden * 4;
  }

  has(sample: number): boolean {
    return this.slots.has(sample);
  }

  /** Copy the cached input of `sample` into `dst` at row block `i` of the microbatch. */
  load(enc: Encoder, sample: number, dst: GPUBuffer, i: number): void {
    const slot = this.slots.get(sample)!;
    enc.copy(this.buf!, slot * this.bytesPerSample, dst, i * this.bytesPerSample, this.bytesPerSample);
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
    enc.copy(src, i * this.bytesPerSample, this.buf!, slot * this.bytesPerSample, this.bytesPerSample);
  }

  /** Copy `sample`'s stored row block into `dst` at row block `i` without counting a hit (the layer-major pass). */
  get(enc: Encoder, sample: number, dst: GPUBuffer, i: number): void {
    const slot = this.slots.get(sample);
    if (slot === undefined) throw new Error(`sample ${sample} is not in the frozen cache`);
    enc.copy(this.buf!, slot * this.bytesPerSample, dst, i * this.bytesPerSample, this.bytesPerSample);
  }

  /** Store row block `i` of `src` as `sample`'s input, if there is room. */
  store(enc: Encoder, sample: number, src: GPUBuffer, i: number): void {
    this.misses++;
    if (this.slots.has(sample) || this.slots.size >= this.capacity) return;
    const slot = this.slots.size;
    this.slots.set(sample, slot);
    enc.copy(src, i * this.bytesPerSample, this.buf!, slot * this.bytesPerSample, this.bytesPerSample);
  }
}
