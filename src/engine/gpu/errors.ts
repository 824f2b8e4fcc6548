// GPU errors arrive asynchronously (error scopes, device loss). They are collected per device here and
// thrown, naming the kernel, at the next synchronization point (`gpuSync`, a readback).

import type { GpuContext } from './device.ts';
import { DeviceLostError } from './device.ts';

const pending = new WeakMap<GPUDevice, { errors: Error[]; scopes: Promise<void>[] }>();

function slot(gpu: GpuContext) {
  let s = pending.get(gpu.device);
  if (!s) pending.set(gpu.device, (s = { errors: [], scopes: [] }));
  return s;
}

const debugDevices = new WeakSet<GPUDevice>();

/**
 * Debug mode: each dispatch's bind group gets its own error scope, so a binding error names its exact kernel (costs a
 * scope and a promise per dispatch). Otherwise one pair of scopes per submit names the kernels it held (gpu/encoder.ts).
 */
export function debugScopes(gpu: GpuContext, on: boolean): void {
  if (on) debugDevices.add(gpu.device);
  else debugDevices.delete(gpu.device);
}

export function isDebug(device: GPUDevice): boolean {
  return debugDevices.has(device);
}

export function reportError(gpu: GpuContext, e: Error): void {
  slot(gpu).errors.push(e);
}

/** Track an error-scope promise; `make` turns a GPUError into the exception to raise. */
export function trackScope(gpu: GpuContext, p: Promise<GPUError | null>, make: (err: GPUError) => Error): void {
  slot(gpu).scopes.push(
    p.then((err) => {
      if (err) reportError(gpu, make(err));
    }),
  );
}

/** Throw the first error reported since the last check (and forget the rest). */
export async function throwPendingErrors(gpu: GpuContext): Promise<void> {
  const s = slot(gpu);
  while (s.scopes.length) {
    const scopes = s.scopes.splice(0);
    await Promise.all(scopes);
  }
  if (gpu.isLost()) throw new DeviceLostError(await gpu.lost);
  if (s.errors.length) {
    const [first, ...rest] = s.errors.splice(0);
    if (rest.length) first!.message += ` (and ${rest.length} more GPU error(s))`;
    throw first;
  }
}
