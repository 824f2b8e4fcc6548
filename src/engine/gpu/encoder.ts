// A command encoder that records kernel dispatches (one compute pass until a copy/clear breaks it) and submits them
// in a few segments, so the GPU starts on the first while JS encodes the next. Each dispatch's params go to a slot of
// one per-device uniform buffer, bound at a dynamic offset; a segment's slots are written by one writeBuffer just
// before its submit (queue order keeps each submit's values its own, so the buffer is reused at once). Bind groups are
// cached by kernel and bindings (gpu/bindgroups.ts). One pair of error scopes per segment names its kernels; with
// debugScopes (errors.ts) each bind group gets its own scope too, naming the exact kernel. A queue.writeBuffer made
// while encoding lands before the segments submitted after it only (as between separate encoders).

import type { GpuContext } from './device.ts';
import { KernelError, type Kernel } from './kernel.ts';
import { isDebug, trackScope } from './errors.ts';
import { bindGroup } from './bindgroups.ts';
import { countsOf, type KernelCost } from './cost.ts';
import { Usage } from './usage.ts';

/** Params slots per uniform buffer: a segment is submitted when they run out. */
const SLOTS = 128;
/** A section change submits the segment once it holds this many dispatches. */
const MIN_SEGMENT = 16;

interface ParamsBuffer {
  buffer: GPUBuffer;
  /** minUniformBufferOffsetAlignment: every slot starts at a multiple. */
  align: number;
}

const params = new WeakMap<GPUDevice, ParamsBuffer>();

function paramsBuffer(device: GPUDevice): ParamsBuffer {
  let p = params.get(device);
  if (!p) {
    const align = device.limits.minUniformBufferOffsetAlignment || 256;
    const buffer = device.createBuffer({ label: 'params', size: SLOTS * align, usage: Usage.UNIFORM | Usage.COPY_DST });
    params.set(device, (p = { buffer, align }));
  }
  return p;
}

/** Called as an encoder starts and at each change of its section (gpu/timing.ts PhaseClock: a timestamp per phase). */
const sectionHooks = new WeakMap<GPUDevice, (enc: Encoder, section: string) => void>();
export function onSection(device: GPUDevice, hook: ((enc: Encoder, section: string) => void) | null): void {
  if (hook) sectionHooks.set(device, hook);
  else sectionHooks.delete(device);
}

export class Encoder {
  private enc: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  /** This segment's params, staged for its one writeBuffer; `used` bytes so far. */
  private staged = new Uint8Array(0);
  private used = 0;
  /** Kernels dispatched in this segment (error messages name them). */
  private kernels: string[] = [];
  private readonly params: ParamsBuffer;
  private sectionName = '';

  constructor(readonly gpu: GpuContext, private readonly label = 'usaf') {
    this.params = paramsBuffer(gpu.device);
    this.section = label;
  }

  /**
   * The step phase the next dispatches belong to (the cost model's per-phase tally; the phase clock's marks). A change
   * may submit the segment.
   */
  get section(): string {
    return this.sectionName;
  }
  set section(s: string) {
    if (s === this.sectionName) return;
    if (this.kernels.length >= MIN_SEGMENT) this.flush();
    this.sectionName = s;
    sectionHooks.get(this.gpu.device)?.(this, s);
  }

  /** The open command encoder; opening one opens the segment's error scopes. */
  private encoder(): GPUCommandEncoder {
    if (!this.enc) {
      const device = this.gpu.device;
      device.pushErrorScope('validation');
      device.pushErrorScope('out-of-memory');
      this.enc = device.createCommandEncoder({ label: this.label });
    }
    return this.enc;
  }

  /** `cost`: the launch's FLOPs and bytes, recorded only where the device is counted (gpu/cost.ts). */
  dispatch(k: Kernel, buffers: (GPUBuffer | GPUBufferBinding)[], wg: [number, number?, number?], params?: ArrayBufferView | ArrayBuffer, cost?: KernelCost): void {
    const device = this.gpu.device;
    const [x, y = 1, z = 1] = wg;
    const lim = device.limits.maxComputeWorkgroupsPerDimension;
    if (x > lim || y > lim || z > lim || x < 0 || y < 0 || z < 0) throw new KernelError(k.name, `workgroup count [${x}, ${y}, ${z}] outside 0..${lim}`);
    if (x === 0 || y === 0 || z === 0) return;
    const v = k.variant(buffers.length, !!params);
    let offset = -1, size = 0;
    if (params) {
      const bytes = params instanceof ArrayBuffer ? new Uint8Array(params) : new Uint8Array(params.buffer as ArrayBuffer, params.byteOffset, params.byteLength);
      size = Math.max(16, Math.ceil(bytes.byteLength / 16) * 16);
      const span = Math.ceil(size / this.params.align) * this.params.align;
      if (this.used + span > this.params.buffer.size) this.flush();
      offset = this.used;
      this.stage(bytes, offset);
      this.used += span;
    }
    const enc = this.encoder();
    const debug = isDebug(device);
    if (debug) device.pushErrorScope('validation');
    const bg = bindGroup(device, k.name, v, buffers, params ? { buffer: this.params.buffer, size } : null);
    if (debug) trackScope(this.gpu, device.popErrorScope(), (e) => new KernelError(k.name, `bind group: ${e.message}`));
    if (!this.pass) this.pass = enc.beginComputePass({ label: 'usaf.compute' });
    this.pass.setPipeline(v.pipeline);
    if (offset >= 0) this.pass.setBindGroup(0, bg, [offset]);
    else this.pass.setBindGroup(0, bg);
    this.pass.dispatchWorkgroups(x, y, z);
    this.kernels.push(k.name);
    countsOf(device)?.kernel(this.sectionName, k.name, cost);
    if (this.gpu.submitEach) this.flush();
  }

  private stage(bytes: Uint8Array, offset: number): void {
    if (offset + bytes.byteLength > this.staged.byteLength) {
      const grown = new Uint8Array(Math.min(this.params.buffer.size, Math.max(4096, this.staged.byteLength * 2, offset + bytes.byteLength)));
      grown.set(this.staged.subarray(0, this.used));
      this.staged = grown;
    }
    this.staged.set(bytes, offset);
    // the slot's tail past the params (padding to 16 bytes) is left as is: WGSL reads only the struct's bytes
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.endPass();
    this.encoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  clear(buf: GPUBuffer, offset = 0, size?: number): void {
    this.endPass();
    this.encoder().clearBuffer(buf, offset, size);
  }

  writeTimestamp(querySet: GPUQuerySet, index: number): void {
    // Timestamps are taken at pass boundaries (timestampWrites); see gpu/timing.ts.
    this.endPass();
    this.pass = this.encoder().beginComputePass({ label: 'usaf.timed', timestampWrites: { querySet, beginningOfPassWriteIndex: index } });
  }

  /** Timestamps [first, first + count) of querySet into dst at dstOffset (a multiple of 256), as u64 nanoseconds. */
  resolveQuery(querySet: GPUQuerySet, first: number, count: number, dst: GPUBuffer, dstOffset: number): void {
    this.endPass();
    this.encoder().resolveQuerySet(querySet, first, count, dst, dstOffset);
  }

  /** Submit what is recorded so far (params first) and close the segment's error scopes. */
  private flush(): void {
    if (!this.enc) return;
    this.endPass();
    const device = this.gpu.device;
    if (this.used) device.queue.writeBuffer(this.params.buffer, 0, this.staged, 0, this.used);
    device.queue.submit([this.enc.finish()]);
    const names = summarize(this.kernels);
    this.gpu.onSubmit?.(names, device.queue.onSubmittedWorkDone());
    trackScope(this.gpu, device.popErrorScope(), (e) => new KernelError(names, `out of GPU memory: ${e.message}`));
    trackScope(this.gpu, device.popErrorScope(), (e) => new KernelError(names, e.message));
    this.enc = null;
    this.used = 0;
    this.kernels = [];
  }

  /** Submit the rest. Errors are reported at the next `gpuSync`/readback, naming the kernels of the segment. */
  submit(): void {
    this.encoder(); // one with nothing recorded still submits (an empty command buffer), as before
    this.flush();
  }
}

function summarize(names: string[]): string {
  const uniq = [...new Set(names)];
  return uniq.length <= 6 ? uniq.join(', ') : `${uniq.slice(0, 6).join(', ')} … (${uniq.length} kernels)`;
}
