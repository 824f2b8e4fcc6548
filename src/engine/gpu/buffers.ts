// Buffer creation (tallied by kind, so the memory planner can be checked against reality), uploads and readback.

import { DeviceLostError, type GpuContext } from './device.ts';
import { throwPendingErrors, trackScope } from './errors.ts';
import { MAP_READ_MODE, Usage } from './usage.ts';

export const STORAGE = Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST;

export class GpuMemoryError extends Error {
  override name = 'GpuMemoryError';
}

/** Per device: bytes allocated through `createBuffer` now, by kind; in all; the most at once (GPU memory: not HOST_KIND). */
const tallies = new WeakMap<GPUDevice, { byKind: Map<string, number>; now: number; peak: number; host: number }>();

/**
 * The kind of host-visible upload buffers (MAP_WRITE | COPY_SRC): on a discrete GPU they are system memory, so they are
 * tallied apart (hostVisibleBytes), not as GPU bytes.
 */
export const HOST_KIND = 'host';

/** Bytes of host-visible buffers (HOST_KIND) allocated through `createBuffer` now. */
export function hostVisibleBytes(gpu: GpuContext): number {
  return tallies.get(gpu.device)?.host ?? 0;
}

/** Bytes currently allocated through `createBuffer`, by kind. */
export function allocatedBytes(gpu: GpuContext): Record<string, number> {
  return Object.fromEntries(tallies.get(gpu.device)?.byKind ?? []);
}

/**
 * The most bytes allocated through `createBuffer` at once since the device was made (or since the last reset): the
 * steady state plus the largest transient work (importance gradients, selection scratch, streamed layers).
 */
export function peakAllocatedBytes(gpu: GpuContext, reset = false): number {
  const t = tallies.get(gpu.device);
  if (!t) return 0;
  const peak = t.peak;
  if (reset) t.peak = t.now;
  return peak;
}

function tally(gpu: GpuContext, kind: string, delta: number): void {
  let t = tallies.get(gpu.device);
  if (!t) tallies.set(gpu.device, (t = { byKind: new Map(), now: 0, peak: 0, host: 0 }));
  if (kind === HOST_KIND) {
    t.host += delta;
    return;
  }
  t.byKind.set(kind, (t.byKind.get(kind) ?? 0) + delta);
  t.now += delta;
  t.peak = Math.max(t.peak, t.now);
}

export interface BufferOpts {
  label: string;
  /** Size in bytes; rounded up to a multiple of 4 (min 4). */
  size: number;
  /** Planner category: "weights", "masters", "optimizer", "activations", "cache", "workspace". */
  kind?: string;
  usage?: number;
  /** Mapped for writing once made (never from a pool); unmap when written. */
  mappedAtCreation?: boolean;
}

/**
 * Buffers given back for reuse by size, usage and kind: while a pool is in use (withPool), createBuffer takes a buffer of
 * the same size, usage and kind from it before making one. Streamed layers reuse the last layer's buffers this way
 * (Chromium on SwiftShader only frees a destroyed buffer's memory with its device).
 */
export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();

  /** Puts buffers made by createBuffer back, for the next withPool to take. */
  give(bufs: Iterable<GPUBuffer>): void {
    for (const b of bufs) {
      const key = keys.get(b);
      if (key === undefined) throw new Error(`buffer "${b.label}" was not made by createBuffer`);
      let list = this.free.get(key);
      if (!list) this.free.set(key, (list = []));
      list.push(b);
    }
  }

  take(key: string): GPUBuffer | undefined {
    return this.free.get(key)?.pop();
  }

  /** Takes back those of `bufs` that are free in the pool, so that destroy leaves them alone. */
  withdraw(bufs: Iterable<GPUBuffer>): void {
    for (const b of bufs) {
      const list = this.free.get(keys.get(b) ?? '');
      const i = list?.indexOf(b) ?? -1;
      if (i >= 0) list!.splice(i, 1);
    }
  }

  destroy(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
  }
}

const keys = new WeakMap<GPUBuffer, string>();
const pools = new WeakMap<GPUDevice, BufferPool>();

/** Runs `make` with `pool` as the source of the device's new buffers (one pool at a time per device). */
export async function withPool<T>(gpu: GpuContext, pool: BufferPool, make: () => Promise<T>): Promise<T> {
  if (pools.has(gpu.device)) throw new Error('withPool: another pool is in use on this device');
  pools.set(gpu.device, pool);
  try {
    return await make();
  } finally {
    pools.delete(gpu.device);
  }
}

export function createBuffer(gpu: GpuContext, o: BufferOpts): GPUBuffer {
  const size = Math.max(4, Math.ceil(o.size / 4) * 4);
  if (size > gpu.info.maxBufferSize) throw new GpuMemoryError(`buffer "${o.label}" needs ${size} bytes; this GPU allows ${gpu.info.maxBufferSize} per buffer`);
  const device = gpu.device;
  const key = `${size}:${o.usage ?? STORAGE}:${o.kind ?? 'workspace'}`;
  const pooled = o.mappedAtCreation ? undefined : pools.get(device)?.take(key);
  if (pooled) return pooled;
  device.pushErrorScope('out-of-memory');
  const buf = device.createBuffer({ label: o.label, size, usage: o.usage ?? STORAGE, mappedAtCreation: !!o.mappedAtCreation });
  trackScope(gpu, device.popErrorScope(), (e) => new GpuMemoryError(`out of GPU memory allocating "${o.label}" (${size} bytes): ${e.message}`));
  const kind = o.kind ?? 'workspace';
  tally(gpu, kind, size);
  const destroy = buf.destroy.bind(buf);
  let alive = true;
  buf.destroy = () => {
    if (alive) tally(gpu, kind, -size);
    alive = false;
    destroy();
  };
  keys.set(buf, key);
  return buf;
}

/** A buffer holding `data` (at least 4 bytes: an empty array gets one too), pushed onto `scratch` for the caller to destroy. */
export function scratchBuffer(gpu: GpuContext, data: Uint32Array | Float32Array, label: string, scratch: GPUBuffer[]): GPUBuffer {
  const b = createBuffer(gpu, { label, size: Math.max(4, data.byteLength) });
  if (data.length) writeBuffer(gpu, b, 0, data);
  scratch.push(b);
  return b;
}

/**
 * Largest piece one queue.writeBuffer call is given. In Chromium the data of one call crosses to the GPU process as a
 * single shared-memory transfer of its whole size, kept after use (a 600 MiB write: 600 MiB of shared memory in both
 * processes); in pieces, the transfer memory stays near one piece (bench/results/scale/README.md).
 */
export const WRITE_PIECE = 16 * 2 ** 20;

export function writeBuffer(gpu: GpuContext, buf: GPUBuffer, offset: number, data: ArrayBufferView): void {
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  const whole = bytes.byteLength - (bytes.byteLength % 4);
  for (let at = 0; at < whole; at += WRITE_PIECE) gpu.device.queue.writeBuffer(buf, offset + at, bytes.subarray(at, Math.min(whole, at + WRITE_PIECE)));
  if (whole < bytes.byteLength) {
    const padded = new Uint8Array(4);
    padded.set(bytes.subarray(whole));
    gpu.device.queue.writeBuffer(buf, offset + whole, padded);
  }
}

/** Source bytes handed to the queue before an upload waits for the GPU to take them (uploadPaced). */
export const PENDING_BYTES = 64 * 2 ** 20;

/**
 * writeBuffer for large uploads (weights): waits for the queue every PENDING_BYTES, so that what the driver copies for
 * later never piles up in host memory (a slow GPU, or a CPU adapter, takes the copies in its own time).
 */
export async function uploadPaced(gpu: GpuContext, buf: GPUBuffer, offset: number, data: ArrayBufferView): Promise<void> {
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  for (let at = 0; at < bytes.byteLength; at += PENDING_BYTES) {
    if (at) await gpu.device.queue.onSubmittedWorkDone();
    writeBuffer(gpu, buf, offset + at, bytes.subarray(at, Math.min(bytes.byteLength, at + PENDING_BYTES)));
  }
}

/**
 * `byteLength` bytes into `buf` from `read(offset, length)`, `piece` bytes at a time with a wait for the queue between
 * pieces: the host holds one piece, and what the driver copies never piles up (stored weights: the LM head, 4-bit experts).
 */
export async function uploadPieces(gpu: GpuContext, buf: GPUBuffer, byteLength: number, read: (offset: number, length: number) => Promise<Uint8Array>, piece = PENDING_BYTES): Promise<void> {
  for (let at = 0; at < byteLength; at += piece) {
    const bytes = await read(at, Math.min(piece, byteLength - at));
    if (at) await gpu.device.queue.onSubmittedWorkDone();
    writeBuffer(gpu, buf, at, bytes);
  }
}

/** Wait for all submitted work and throw any GPU error reported meanwhile. */
export async function gpuSync(gpu: GpuContext): Promise<void> {
  await gpu.device.queue.onSubmittedWorkDone();
  await throwPendingErrors(gpu);
}

/** Largest piece a readback maps at once (readBuffer): in Chromium a mapped buffer is shared memory in two processes. */
export const READ_PIECE = 64 * 2 ** 20;

/** Copy `size` bytes from `buf` at `offset` back to the CPU (throws pending GPU errors first), READ_PIECE at a time. */
export async function readBuffer(gpu: GpuContext, buf: GPUBuffer, offset = 0, size = buf.size - offset): Promise<ArrayBuffer> {
  const device = gpu.device;
  const total = Math.ceil(size / 4) * 4;
  const piece = Math.min(total, READ_PIECE);
  const staging = device.createBuffer({ label: 'readback', size: piece, usage: Usage.MAP_READ | Usage.COPY_DST });
  const out = new Uint8Array(total);
  try {
    for (let at = 0; at < total; at += piece) {
      const n = Math.min(piece, total - at);
      const enc = device.createCommandEncoder({ label: 'readback' });
      enc.copyBufferToBuffer(buf, offset + at, staging, 0, n);
      device.queue.submit([enc.finish()]);
      await throwPendingErrors(gpu);
      await staging.mapAsync(MAP_READ_MODE, 0, n);
      out.set(new Uint8Array(staging.getMappedRange(0, n)), at);
      staging.unmap();
    }
    return total === size ? out.buffer : out.buffer.slice(0, size);
  } catch (e) {
    if (gpu.isLost()) throw new DeviceLostError(await gpu.lost);
    throw e;
  } finally {
    staging.destroy();
  }
}

export async function readF32(gpu: GpuContext, buf: GPUBuffer, offset = 0, count?: number): Promise<Float32Array> {
  return new Float32Array(await readBuffer(gpu, buf, offset, count === undefined ? undefined : count * 4));
}

export async function readU32(gpu: GpuContext, buf: GPUBuffer, offset = 0, count?: number): Promise<Uint32Array> {
  return new Uint32Array(await readBuffer(gpu, buf, offset, count === undefined ? undefined : count * 4));
}
