// Buffer creation (tallied by kind, so the memory planner can be checked against reality), uploads and readback.

import { DeviceLostError, type GpuContext } from './device.ts';
import { throwPendingErrors, trackScope } from './errors.ts';
import { MAP_READ_MODE, Usage } from './usage.ts';

export const STORAGE = Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST;

export class GpuMemoryError extends Error {
  override name = 'GpuMemoryError';
}

const tallies = new WeakMap<GPUDevice, Map<string, number>>();

/** Bytes currently allocated through `createBuffer`, by kind. */
export function allocatedBytes(gpu: GpuContext): Record<string, number> {
  return Object.fromEntries(tallies.get(gpu.device) ?? []);
}

function tally(gpu: GpuContext, kind: string, delta: number): void {
  let m = tallies.get(gpu.device);
  if (!m) tallies.set(gpu.device, (m = new Map()));
  m.set(kind, (m.get(kind) ?? 0) + delta);
}

export interface BufferOpts {
  label: string;
  /** Size in bytes; rounded up to a multiple of 4 (min 4). */
  size: number;
  /** Planner category: "weights", "masters", "optimizer", "activations", "cache", "workspace". */
  kind?: string;
  usage?: number;
}

export function createBuffer(gpu: GpuContext, o: BufferOpts): GPUBuffer {
  const size = Math.max(4, Math.ceil(o.size / 4) * 4);
  if (size > gpu.info.maxBufferSize) throw new GpuMemoryError(`buffer "${o.label}" needs ${size} bytes; this GPU allows ${gpu.info.maxBufferSize} per buffer`);
  const device = gpu.device;
  device.pushErrorScope('out-of-memory');
  const buf = device.createBuffer({ label: o.label, size, usage: o.usage ?? STORAGE });
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
  return buf;
}

/** A buffer holding `data` (at least 4 bytes: an empty array gets one too), pushed onto `scratch` for the caller to destroy. */
export function scratchBuffer(gpu: GpuContext, data: Uint32Array | Float32Array, label: string, scratch: GPUBuffer[]): GPUBuffer {
  const b = createBuffer(gpu, { label, size: Math.max(4, data.byteLength) });
  if (data.length) writeBuffer(gpu, b, 0, data);
  scratch.push(b);
  return b;
}

export function writeBuffer(gpu: GpuContext, buf: GPUBuffer, offset: number, data: ArrayBufferView): void {
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  if (bytes.byteLength % 4 === 0) gpu.device.queue.writeBuffer(buf, offset, bytes);
  else {
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    gpu.device.queue.writeBuffer(buf, offset, padded);
  }
}

/** Wait for all submitted work and throw any GPU error reported meanwhile. */
export async function gpuSync(gpu: GpuContext): Promise<void> {
  await gpu.device.queue.onSubmittedWorkDone();
  await throwPendingErrors(gpu);
}

/** Copy `size` bytes from `buf` at `offset` back to the CPU (throws pending GPU errors first). */
export async function readBuffer(gpu: GpuContext, buf: GPUBuffer, offset = 0, size = buf.size - offset): Promise<ArrayBuffer> {
  const device = gpu.device;
  const staging = device.createBuffer({ label: 'readback', size: Math.ceil(size / 4) * 4, usage: Usage.MAP_READ | Usage.COPY_DST });
  const enc = device.createCommandEncoder({ label: 'readback' });
  enc.copyBufferToBuffer(buf, offset, staging, 0, Math.ceil(size / 4) * 4);
  device.queue.submit([enc.finish()]);
  try {
    await throwPendingErrors(gpu);
    await staging.mapAsync(MAP_READ_MODE);
    return staging.getMappedRange().slice(0, size);
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
