// GPU time of a span of submitted work from timestamp queries (the 'timestamp-query' feature), read without a queue
// drain: the two timestamps are resolved and copied into a buffer the caller reads back with its other results.
// Without the feature, the span's time is the wall time between two submissions (performance.now on the host).

import type { GpuContext } from './device.ts';
import { Encoder, onSection } from './encoder.ts';
import { readBuffer } from './buffers.ts';
import { Usage } from './usage.ts';

/** Bytes a span's timestamps take in the caller's readback buffer: begin and end, u64 nanoseconds each. */
export const SPAN_BYTES = 16;

export class GpuSpan {
  private readonly set: GPUQuerySet;
  private readonly resolved: GPUBuffer;

  private constructor(gpu: GpuContext) {
    this.set = gpu.device.createQuerySet({ label: 'timing.span', type: 'timestamp', count: 2 });
    this.resolved = gpu.device.createBuffer({ label: 'timing.resolved', size: 256, usage: Usage.QUERY_RESOLVE | Usage.COPY_SRC });
  }

  /** A span timer, or null when the adapter has no timestamp queries. */
  static create(gpu: GpuContext): GpuSpan | null {
    return gpu.hasTimestamps ? new GpuSpan(gpu) : null;
  }

  /** Marks the span's start where the GPU reaches this point of `enc`. */
  begin(enc: Encoder): void {
    enc.writeTimestamp(this.set, 0);
  }

  /** Marks the span's end and copies both timestamps into dst [SPAN_BYTES] at `offset` (a multiple of 8). */
  end(enc: Encoder, dst: GPUBuffer, offset: number): void {
    enc.writeTimestamp(this.set, 1);
    enc.resolveQuery(this.set, 0, 2, this.resolved, 0);
    enc.copy(this.resolved, 0, dst, offset, SPAN_BYTES);
  }

  destroy(): void {
    this.set.destroy();
    this.resolved.destroy();
  }
}

/** Seconds between the two timestamps read back from a span's SPAN_BYTES; null when they make no span (end <= begin). */
export function spanSeconds(bytes: ArrayBuffer, offset: number): number | null {
  const [b, e] = new BigUint64Array(bytes, offset, 2);
  return e! > b! ? Number(e! - b!) / 1e9 : null;
}

/**
 * GPU time per phase (the Encoder's `section`) from a timestamp at every encoder start and section change: a phase's
 * time runs from its mark to the next mark, so idle gaps between submits count toward the phase before them (the
 * bench keeps the queue full by pipelining steps). Profiling only: `read` waits for the queue.
 */
export class PhaseClock {
  private readonly set: GPUQuerySet;
  private readonly resolved: GPUBuffer;
  private readonly names: string[] = [];

  private constructor(private readonly gpu: GpuContext, private readonly capacity: number) {
    this.set = gpu.device.createQuerySet({ label: 'timing.phases', type: 'timestamp', count: capacity });
    this.resolved = gpu.device.createBuffer({ label: 'timing.phases.resolved', size: capacity * 8, usage: Usage.QUERY_RESOLVE | Usage.COPY_SRC });
  }

  /** Starts marking every encoder of this device (null without timestamp queries). Marks past `capacity` are dropped. */
  static start(gpu: GpuContext, capacity = 1024): PhaseClock | null {
    if (!gpu.hasTimestamps) return null;
    const c = new PhaseClock(gpu, capacity);
    onSection(gpu.device, (enc, name) => c.mark(enc, name));
    return c;
  }

  private mark(enc: Encoder, name: string): void {
    if (this.names.length >= this.capacity - 1) return; // one left for the end mark
    enc.writeTimestamp(this.set, this.names.length);
    this.names.push(name);
  }

  /** Stops marking; milliseconds per phase name over everything marked, and the marks' first-to-last span. */
  async stop(): Promise<{ phases: Record<string, number>; total: number }> {
    onSection(this.gpu.device, null);
    const enc = new Encoder(this.gpu, 'timing.end');
    const n = this.names.length;
    enc.writeTimestamp(this.set, n);
    enc.resolveQuery(this.set, 0, n + 1, this.resolved, 0);
    enc.submit();
    const t = new BigUint64Array(await readBuffer(this.gpu, this.resolved, 0, (n + 1) * 8));
    const phases: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const ms = t[i + 1]! > t[i]! ? Number(t[i + 1]! - t[i]!) / 1e6 : 0;
      phases[this.names[i]!] = (phases[this.names[i]!] ?? 0) + ms;
    }
    this.set.destroy();
    this.resolved.destroy();
    return { phases, total: n ? Number(t[n]! - t[0]!) / 1e6 : 0 };
  }
}
