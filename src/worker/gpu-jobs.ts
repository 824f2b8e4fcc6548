// Contract: GPU memory of the engine's jobs (a run, an export) is given back when they end. The engine allocates its
// buffers once per Trainer and never frees them; the worker outlives many jobs, so it destroys what they allocated.
// Destroying buffers is not always enough: Chromium on SwiftShader keeps a destroyed buffer's memory until its device is
// destroyed (bench/results/scale/README.md), so a device whose jobs have all ended is `spent` and the worker replaces it
// before its next use (WorkerTrainer.device).

import { Usage } from '../engine/gpu/usage.ts';

/** Usages whose buffers are not the job's (the encoder's recycled params uniforms, readback staging buffers). */
const NOT_OWNED = Usage.UNIFORM | Usage.MAP_READ | Usage.MAP_WRITE;

interface Jobs {
  /** Jobs going on this device. */
  count: number;
  /** Storage buffers created while any job was going. */
  buffers: Set<GPUBuffer>;
  /** A job ran and none runs now. */
  spent: boolean;
}

const byDevice = new WeakMap<GPUDevice, Jobs>();

/** The device's createBuffer, wrapped once so that buffers created during jobs are recorded. */
function jobsOf(device: GPUDevice): Jobs {
  let jobs = byDevice.get(device);
  if (jobs) return jobs;
  const j: Jobs = { count: 0, buffers: new Set(), spent: false };
  const create = device.createBuffer.bind(device);
  device.createBuffer = (desc: GPUBufferDescriptor): GPUBuffer => {
    const b = create(desc);
    if (j.count > 0 && !(desc.usage & NOT_OWNED)) j.buffers.add(b);
    return b;
  };
  byDevice.set(device, j);
  return (jobs = j);
}

/**
 * Marks the start of a job on `device`; the returned function marks its end. When the last job going ends, every
 * storage buffer created meanwhile is destroyed (jobs that overlap share their buffers' lifetime: nothing is freed
 * while any of them may still use it).
 */
export function beginGpuJob(device: GPUDevice): () => void {
  const jobs = jobsOf(device);
  jobs.count++;
  jobs.spent = false;
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    if (--jobs.count > 0) return;
    for (const b of jobs.buffers) b.destroy();
    jobs.buffers.clear();
    jobs.spent = true;
  };
}

/** Every job on `device` has ended (at least one ran): what they allocated is only given back by destroying the device. */
export function isSpent(device: GPUDevice): boolean {
  const j = byDevice.get(device);
  return !!j && j.count === 0 && j.spent;
}
