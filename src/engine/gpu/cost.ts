// What a device was asked to do, counted per device (no effect unless a CallCounts is attached): buffers, writes,
// dispatches, submits, mapAsync and queue drains, and per phase and kernel the FLOPs and bytes each launcher declares.

/** A kernel launch's work from its launch arithmetic: floating-point operations and bytes read + written in memory. */
export interface KernelCost {
  flops: number;
  bytes: number;
}

export interface KernelTally extends KernelCost {
  dispatches: number;
  /** Roofline seconds (CallCounts.roofline) summed over the dispatches, split by what bounds each one. */
  computeSec: number;
  memorySec: number;
}

/** A device's peaks for the roofline: FLOP/s and bytes/s. */
export interface Roofline {
  name: string;
  flops: number;
  bytes_per_s: number;
  /** GPU memory (bytes): the run's budget (TrainSettings.gpuBytes) unless one is given. */
  gpu_bytes?: number;
}

const zeroTally = (): KernelTally => ({ dispatches: 0, flops: 0, bytes: 0, computeSec: 0, memorySec: 0 });

/** Counts of one interval (see CallCounts.since). */
export interface CountSnapshot {
  dispatches: number;
  submits: number;
  /** mapAsync calls: each one a CPU wait for the GPU (readBuffer). */
  mapAsync: number;
  /** onSubmittedWorkDone calls (queue drains: the code awaits each one). */
  drains: number;
  /** mapAsync + drains: the round trips where the CPU waits for the GPU. */
  blocking: number;
  buffers: number;
  bufferBytes: number;
  /** createBindGroup calls (the encoder's cache misses). */
  bindGroups: number;
  writes: number;
  writeBytes: number;
  flops: number;
  bytes: number;
  /** by `phase\tkernel` */
  kernels: Map<string, KernelTally>;
}

export class CallCounts {
  buffers = 0;
  bufferBytes = 0;
  liveBytes = 0;
  peakBytes = 0;
  writes = 0;
  writeBytes = 0;
  dispatches = 0;
  submits = 0;
  /** createBindGroup calls (Encoder caches them: a step binding the same buffers as the last creates none). */
  bindGroups = 0;
  mapAsync = 0;
  workDone = 0;
  readonly kernels = new Map<string, KernelTally>();
  /** Kernels dispatched without a declared cost (the cost model's gaps). */
  readonly uncosted = new Set<string>();
  /** Prefix of the phase names recorded (e.g. 'reselection' while the trainer reselects), or null. */
  scope: string | null = null;
  /** When set, each dispatch also adds its roofline time max(flops / peak, bytes / bandwidth) to its tally. */
  roofline: Roofline | null = null;

  get drains(): number {
    return this.workDone;
  }

  kernel(phase: string, name: string, cost: KernelCost | undefined): void {
    if (!cost) this.uncosted.add(name);
    const key = `${this.scope ? `${this.scope}.` : ''}${phase}\t${name}`;
    const t = this.kernels.get(key) ?? zeroTally();
    t.dispatches++;
    t.flops += cost?.flops ?? 0;
    t.bytes += cost?.bytes ?? 0;
    if (cost && this.roofline) {
      const c = cost.flops / this.roofline.flops, m = cost.bytes / this.roofline.bytes_per_s;
      if (c >= m) t.computeSec += c;
      else t.memorySec += m;
    }
    this.kernels.set(key, t);
  }

  /** A frozen copy of the counters now. */
  now(): CountSnapshot {
    let flops = 0, bytes = 0;
    for (const t of this.kernels.values()) (flops += t.flops, bytes += t.bytes);
    return {
      dispatches: this.dispatches, submits: this.submits, mapAsync: this.mapAsync, drains: this.drains, blocking: this.mapAsync + this.drains,
      buffers: this.buffers, bufferBytes: this.bufferBytes, bindGroups: this.bindGroups, writes: this.writes, writeBytes: this.writeBytes, flops, bytes,
      kernels: new Map([...this.kernels].map(([k, v]) => [k, { ...v }])),
    };
  }
}

/** b − a, counter by counter (the work between two snapshots). */
export function countsBetween(a: CountSnapshot, b: CountSnapshot): CountSnapshot {
  const kernels = new Map<string, KernelTally>();
  for (const [k, v] of b.kernels) {
    const o = a.kernels.get(k) ?? zeroTally();
    if (v.dispatches > o.dispatches) {
      kernels.set(k, { dispatches: v.dispatches - o.dispatches, flops: v.flops - o.flops, bytes: v.bytes - o.bytes, computeSec: v.computeSec - o.computeSec, memorySec: v.memorySec - o.memorySec });
    }
  }
  const d = (f: Exclude<keyof CountSnapshot, 'kernels'>) => b[f] - a[f];
  return {
    dispatches: d('dispatches'), submits: d('submits'), mapAsync: d('mapAsync'), drains: d('drains'), blocking: d('blocking'), buffers: d('buffers'),
    bufferBytes: d('bufferBytes'), bindGroups: d('bindGroups'), writes: d('writes'), writeBytes: d('writeBytes'), flops: d('flops'), bytes: d('bytes'), kernels,
  };
}

const attached = new WeakMap<GPUDevice, CallCounts>();

export function countsOf(device: GPUDevice): CallCounts | undefined {
  return attached.get(device);
}

/** Phase names recorded from now on start with `scope` (null: none). No effect without counts attached. */
export function costScope(device: GPUDevice, scope: string | null): void {
  const c = attached.get(device);
  if (c) c.scope = scope;
}

/**
 * Count every call of `device` that the cost model reports, by wrapping its methods in place (a real Dawn device or
 * the null device of counting.ts alike). Returns the counters, also found later by countsOf(device).
 */
export function countCalls(device: GPUDevice): CallCounts {
  const prev = attached.get(device);
  if (prev) return prev;
  const c = new CallCounts();
  attached.set(device, c);
  const q = device.queue;
  const submit = q.submit.bind(q);
  q.submit = (bufs) => (c.submits++, submit(bufs));
  const write = q.writeBuffer.bind(q) as (...a: unknown[]) => undefined;
  q.writeBuffer = ((buf: GPUBuffer, off: number, data: ArrayBufferView | ArrayBuffer, dataOff = 0, size?: number) => {
    const per = ArrayBuffer.isView(data) && 'BYTES_PER_ELEMENT' in data ? (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT : 1;
    c.writes++;
    c.writeBytes += size !== undefined ? size * per : data.byteLength - dataOff * per;
    return write(buf, off, data, dataOff, size);
  }) as GPUQueue['writeBuffer'];
  const done = q.onSubmittedWorkDone.bind(q);
  q.onSubmittedWorkDone = () => (c.workDone++, done());
  const createBuffer = device.createBuffer.bind(device);
  device.createBuffer = (desc) => {
    const b = createBuffer(desc);
    c.buffers++;
    c.bufferBytes += desc.size;
    c.liveBytes += desc.size;
    c.peakBytes = Math.max(c.peakBytes, c.liveBytes);
    const destroy = b.destroy.bind(b);
    let alive = true;
    b.destroy = () => {
      if (alive) c.liveBytes -= desc.size;
      alive = false;
      destroy();
    };
    const map = b.mapAsync.bind(b);
    b.mapAsync = (...a) => (c.mapAsync++, map(...a));
    return b;
  };
  const createBindGroup = device.createBindGroup.bind(device);
  device.createBindGroup = (desc) => (c.bindGroups++, createBindGroup(desc));
  const createEncoder = device.createCommandEncoder.bind(device);
  device.createCommandEncoder = (desc) => {
    const e = createEncoder(desc);
    const begin = e.beginComputePass.bind(e);
    e.beginComputePass = (pd) => {
      const p = begin(pd);
      const dispatch = p.dispatchWorkgroups.bind(p);
      p.dispatchWorkgroups = (x, y, z) => (c.dispatches++, dispatch(x, y, z));
      return p;
    };
    return e;
  };
  return c;
}
