// Trained layers' 4-bit experts kept off the GPU (LoadOptions.hostExperts): each layer's two 4-bit buffers (FORMAT.md)
// live in host-visible upload buffers (MAP_WRITE | COPY_SRC, written once at load: W0 never changes while training; on a
// discrete GPU they are system memory), and two GPU slots hold the layers being worked on. Layer number r of the hosted
// layers (ascending) uses slot r mod 2: the forward goes up the layers and the backward down, so the two top layers are
// still in place when the backward starts, and each other use is one copy per buffer before it.
//
// Whoever records kernels that read a hosted layer's experts first calls `ExpertWeights.resident(enc)`: it records the
// copy into the slot unless this same encoder already put that layer there (a copy recorded by another encoder, or
// anything written into the slot meanwhile, is not trusted: queue order follows submits, not recording).
// The layer-major frozen pass streams its frozen layers' experts through the same slots (frozen-pass.ts).

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, HOST_KIND, READ_PIECE, readBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';
import { Usage } from '../gpu/usage.ts';
import type { ModelSpec } from '../model/spec.ts';
import type { ExpertWeights } from '../train/weights.ts';
import { q4ExpertLayouts } from './format.ts';

interface Pair { gu: GPUBuffer; dn: GPUBuffer }

interface Slot extends Pair {
  /** The layer the slot holds for commands recorded next on `enc`; null: unknown. */
  holder: { L: number; enc: Encoder } | null;
}

export class ExpertSlots {
  private readonly slots: Slot[] = [];
  private readonly hosted = new Map<number, Pair>();

  /** `count` slots (1 or 2) for layers of `spec` in 4 bits with group size G. */
  constructor(private readonly gpu: GpuContext, private readonly spec: ModelSpec, readonly G: number, count: number) {
    if (count !== 1 && count !== 2) throw new RangeError(`expert slots: 1 or 2, got ${count}`);
    const lay = q4ExpertLayouts(spec, G);
    for (let i = 0; i < count; i++) {
      this.slots.push({
        gu: createBuffer(gpu, { label: `experts.slot${i}.gate_up.q4`, size: lay.gateUp.bytes, kind: 'weights' }),
        dn: createBuffer(gpu, { label: `experts.slot${i}.down.q4`, size: lay.down.bytes, kind: 'weights' }),
        holder: null,
      });
    }
  }

  /** The slots' GPU buffers. */
  buffers(): GPUBuffer[] {
    return this.slots.flatMap((s) => [s.gu, s.dn]);
  }

  /** Something other than `resident` wrote into the slots (the frozen pass): no slot's content is known. */
  invalidate(): void {
    for (const s of this.slots) s.holder = null;
  }

  /**
   * Moves layer L's 4-bit experts (on the GPU, in buffers of their own) into host-visible buffers, a piece at a time
   * (host memory: one piece), and frees the GPU buffers unless they are a slot's. Layers are adopted in ascending order;
   * the r-th one gets slot r mod (slots). Returns the layer's experts as the kernels bind them: in its slot, with `resident`.
   */
  async adopt(L: number, ex: ExpertWeights): Promise<ExpertWeights> {
    if (ex.gate.dtype !== 'q4' || ex.down.dtype !== 'q4' || ex.gate.q4!.G !== this.G) throw new Error(`layer ${L}: hosted experts must be 4-bit with group size ${this.G}`);
    if ([...this.hosted.keys()].some((x) => x >= L)) throw new Error(`layer ${L}: hosted layers are adopted once each, in ascending order`);
    const s = this.slots[this.hosted.size % this.slots.length]!;
    const lay = q4ExpertLayouts(this.spec, this.G);
    const host = async (src: GPUBuffer, size: number, name: string): Promise<GPUBuffer> => {
      const b = createBuffer(this.gpu, { label: `layer${L}.experts.${name}.q4.host`, size, kind: HOST_KIND, usage: Usage.MAP_WRITE | Usage.COPY_SRC, mappedAtCreation: true });
      for (let o = 0; o < size; o += READ_PIECE) {
        const n = Math.min(READ_PIECE, size - o);
        new Uint8Array(b.getMappedRange(o, n)).set(new Uint8Array(await readBuffer(this.gpu, src, o, n)));
      }
      b.unmap();
      return b;
    };
    const pair = { gu: await host(ex.gate.buf, lay.gateUp.bytes, 'gate_up'), dn: await host(ex.down.buf, lay.down.bytes, 'down') };
    this.hosted.set(L, pair);
    for (const b of new Set([ex.gate.buf, ex.up.buf, ex.down.buf])) if (b !== s.gu && b !== s.dn) b.destroy();
    const at = (buf: GPUBuffer, x: ExpertWeights['gate']) => ({ ...x, buf });
    return {
      gate: at(s.gu, ex.gate), up: at(s.gu, ex.up), down: at(s.dn, ex.down),
      resident: (enc: Encoder) => {
        if (s.holder?.L === L && s.holder.enc === enc) return;
        enc.copy(pair.gu, 0, s.gu, 0, pair.gu.size);
        enc.copy(pair.dn, 0, s.dn, 0, pair.dn.size);
        s.holder = { L, enc };
      },
    };
  }

  destroy(): void {
    for (const p of this.hosted.values()) (p.gu.destroy(), p.dn.destroy());
    this.hosted.clear();
    for (const b of this.buffers()) b.destroy();
  }
}
