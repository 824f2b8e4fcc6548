// A command encoder that records kernel dispatches (one compute pass until a copy/clear breaks it),
// allocates each dispatch's params uniform from a recycled pool, and submits with error scopes naming the kernels.

import type { GpuContext } from './device.ts';
import { KernelError, type Kernel } from './kernel.ts';
import { trackScope } from './errors.ts';
import { countsOf, type KernelCost } from './cost.ts';
import { Usage } from './usage.ts';

const UNIFORM_USAGE = Usage.UNIFORM | Usage.COPY_DST;

class UniformPool {
  private free = new Map<number, GPUBuffer[]>();
  constructor(private device: GPUDevice) {}
  take(size: number): GPUBuffer {
    const list = this.free.get(size);
    return list?.pop() ?? this.device.createBuffer({ label: 'params', size, usage: UNIFORM_USAGE });
  }
  give(bufs: GPUBuffer[]): void {
    for (const b of bufs) {
      const list = this.free.get(b.size) ?? [];
      list.push(b);
      this.free.set(b.size, list);
    }
  }
}

const pools = new WeakMap<GPUDevice, UniformPool>();
/** Called as an encoder starts and at each change of its section (gpu/timing.ts PhaseClock: a timestamp per phase). */
const sectionHooks = new WeakMap<GPUDevice, (enc: Encoder, section: string) => void>();
export function onSection(device: GPUDevice, hook: ((enc: Encoder, section: string) => void) | null): void {
  if (hook) sectionHooks.set(device, hook);
  else sectionHooks.delete(device);
}

export class Encoder {
  private enc: GPUCommandEncoder;
  private pass: GPUComputePassEncoder | null = null;
  private uniforms: GPUBuffer[] = [];
  readonly kernels: string[] = [];
  private pool: UniformPool;
  private phase = '';
  /** The step phase the next dispatches belong to (the cost model's per-phase tally; the phase clock's marks). */
  get section(): string {
    return this.phase;
  }
  set section(name: string) {
    if (name !== this.phase) sectionHooks.get(this.gpu.device)?.(this, name);
    this.phase = name;
  }

  constructor(readonly gpu: GpuContext, label = 'usaf') {
    this.enc = gpu.device.createCommandEncoder({ label });
    let p = pools.get(gpu.device);
    if (!p) pools.set(gpu.device, (p = new UniformPool(gpu.device)));
    this.pool = p;
    this.section = label;
  }

  /** `cost`: the launch's FLOPs and bytes, recorded only where the device is counted (gpu/cost.ts). */
  dispatch(k: Kernel, buffers: (GPUBuffer | GPUBufferBinding)[], wg: [number, number?, number?], params?: ArrayBufferView | ArrayBuffer, cost?: KernelCost): void {
    const device = this.gpu.device;
    const entries: GPUBindGroupEntry[] = buffers.map((b, i) => ({ binding: i, resource: 'mapState' in b ? { buffer: b } : b }));
    if (params) {
      const bytes = params instanceof ArrayBuffer ? new Uint8Array(params) : new Uint8Array(params.buffer as ArrayBuffer, params.byteOffset, params.byteLength);
      const size = Math.max(16, Math.ceil(bytes.byteLength / 16) * 16);
      const u = this.pool.take(size);
      device.queue.writeBuffer(u, 0, bytes);
      this.uniforms.push(u);
      entries.push({ binding: buffers.length, resource: { buffer: u } });
    }
    const [x, y = 1, z = 1] = wg;
    const lim = device.limits.maxComputeWorkgroupsPerDimension;
    if (x > lim || y > lim || z > lim || x < 0 || y < 0 || z < 0) throw new KernelError(k.name, `workgroup count [${x}, ${y}, ${z}] outside 0..${lim}`);
    device.pushErrorScope('validation');
    const bg = device.createBindGroup({ label: k.name, layout: k.layout, entries });
    trackScope(this.gpu, device.popErrorScope(), (e) => new KernelError(k.name, `bind group: ${e.message}`));
    if (x === 0 || y === 0 || z === 0) return;
    if (!this.pass) this.pass = this.enc.beginComputePass({ label: 'usaf.compute' });
    this.pass.setPipeline(k.pipeline);
    this.pass.setBindGroup(0, bg);
    this.pass.dispatchWorkgroups(x, y, z);
    this.kernels.push(k.name);
    countsOf(device)?.kernel(this.section, k.name, cost);
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.endPass();
    this.enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  clear(buf: GPUBuffer, offset = 0, size?: number): void {
    this.endPass();
    this.enc.clearBuffer(buf, offset, size);
  }

  writeTimestamp(querySet: GPUQuerySet, index: number): void {
    // Timestamps are taken at pass boundaries (timestampWrites); see gpu/timing.ts.
    this.endPass();
    this.pass = this.enc.beginComputePass({ label: 'usaf.timed', timestampWrites: { querySet, beginningOfPassWriteIndex: index } });
  }

  /** Timestamps [first, first + count) of querySet into dst at dstOffset (a multiple of 256), as u64 nanoseconds. */
  resolveQuery(querySet: GPUQuerySet, first: number, count: number, dst: GPUBuffer, dstOffset: number): void {
    this.endPass();
    this.enc.resolveQuerySet(querySet, first, count, dst, dstOffset);
  }

  /** Finish and submit. Errors are reported at the next `gpuSync`/readback, naming the kernels of this encoder. */
  submit(): void {
    this.endPass();
    const device = this.gpu.device;
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    device.queue.submit([this.enc.finish()]);
    const counts = countsOf(device);
    if (counts) counts.encoderSubmits++;
    const names = summarize(this.kernels);
    trackScope(this.gpu, device.popErrorScope(), (e) => new KernelError(names, `out of GPU memory: ${e.message}`));
    trackScope(this.gpu, device.popErrorScope(), (e) => new KernelError(names, e.message));
    const used = this.uniforms;
    this.uniforms = [];
    device.queue.onSubmittedWorkDone().then(() => this.pool.give(used), () => {});
  }
}

function summarize(names: string[]): string {
  const uniq = [...new Set(names)];
  return uniq.length <= 6 ? uniq.join(', ') : `${uniq.slice(0, 6).join(', ')} … (${uniq.length} kernels)`;
}
