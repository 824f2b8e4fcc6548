// Readbacks that do not stall the queue: a result is copied into one of a few mappable buffers by the work that makes
// it, mapping starts right after that submit, and the caller reads it when it next needs it (e.g. a step later), by
// which time the GPU is usually done with it. One mapAsync per result, no queue drain.

import { DeviceLostError, type GpuContext } from './device.ts';
import { throwPendingErrors } from './errors.ts';
import { MAP_READ_MODE, Usage } from './usage.ts';

export class ReadbackRing {
  private readonly bufs: GPUBuffer[];
  private readonly reads: (Promise<ArrayBuffer> | null)[];
  private next = 0;

  /** `slots` buffers of `bytes` each (a multiple of 4). */
  constructor(private readonly gpu: GpuContext, readonly bytes: number, slots = 2, label = 'readback.ring') {
    this.bufs = Array.from({ length: slots }, (_, i) => gpu.device.createBuffer({ label: `${label}.${i}`, size: bytes, usage: Usage.MAP_READ | Usage.COPY_DST }));
    this.reads = this.bufs.map(() => null);
  }

  /** The buffer the next result is copied into (by work submitted before `send`). Throws if its last read is unfinished. */
  slot(): GPUBuffer {
    if (this.reads[this.next]) throw new Error(`readback ring: all ${this.bufs.length} slots are still being read`);
    return this.bufs[this.next]!;
  }

  /** Starts mapping the slot after the submit that fills it; the promise gives its bytes and frees the slot. */
  send(): Promise<ArrayBuffer> {
    const i = this.next;
    const buf = this.slot();
    this.next = (i + 1) % this.bufs.length;
    const mapped = buf.mapAsync(MAP_READ_MODE);
    const read = (async () => {
      try {
        await throwPendingErrors(this.gpu);
        await mapped;
        const out = buf.getMappedRange().slice(0);
        buf.unmap();
        return out;
      } catch (e) {
        if (this.gpu.isLost()) throw new DeviceLostError(await this.gpu.lost);
        throw e;
      } finally {
        this.reads[i] = null;
      }
    })();
    mapped.catch(() => {}); // awaited inside `read`; a failure surfaces there
    read.catch(() => {}); // a result nobody reads (destroy) must not be an unhandled rejection
    this.reads[i] = read;
    return read;
  }

  destroy(): void {
    for (const b of this.bufs) b.destroy();
  }
}
