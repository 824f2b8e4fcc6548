// Node's WebGPU: Dawn through the `webgpu` package (or the dawn.node at $WEBGPU_DAWN_NODE, as ../shared/gpu sets it).
// Without a GPU it falls back to the SwiftShader Vulkan driver that Debian's chromium ships.

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { createGpu, GpuUnavailableError, type GpuContext } from '../engine/gpu/device.ts';
import { throttleDawnPolling } from './dawn-poll.ts';
import { quietRuntimeDir } from './quiet.ts';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

interface DawnModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

async function loadDawn(): Promise<DawnModule> {
  const path = process.env.WEBGPU_DAWN_NODE;
  if (path) {
    const require = createRequire(import.meta.url);
    return require(path) as DawnModule;
  }
  return (await import('webgpu')) as unknown as DawnModule;
}

let dawn: DawnModule | null = null;
// Dawn's GPU instance must outlive every device made from it: if it is garbage-collected, the process crashes.
const instances: GPU[] = [];
function instance(): GPU {
  const g = dawn!.create([]);
  instances.push(g);
  return g;
}

let shared: Promise<GpuContext> | null = null;

/**
 * A GPUDevice in Node, shared by every caller of the process (compiled kernels are per device) unless `fresh`.
 * Tries the default Vulkan driver, then SwiftShader (CPU) if the first finds no adapter.
 */
export async function nodeGpu(opts: { swiftshader?: boolean; fresh?: boolean } = {}): Promise<GpuContext> {
  if (opts.fresh) return openGpu(opts);
  if (shared) {
    const g = await shared.catch(() => null);
    if (g && !g.isLost()) return g;
  }
  shared = openGpu(opts);
  return shared;
}

async function openGpu(opts: { swiftshader?: boolean }): Promise<GpuContext> {
  if (!dawn) {
    quietRuntimeDir(); // before the Vulkan drivers read it
    dawn = await loadDawn();
    Object.assign(globalThis, dawn.globals);
    throttleDawnPolling();
  }
  const forceSS = opts.swiftshader ?? process.env.USAF_SWIFTSHADER === '1';
  if (forceSS && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  try {
    return traced(await createGpu({ gpu: instance() }));
  } catch (e) {
    if (!(e instanceof GpuUnavailableError) || process.env.VK_ICD_FILENAMES || !existsSync(SWIFTSHADER_ICD)) throw e;
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    return traced(await createGpu({ gpu: instance() }));
  }
}

/**
 * USAF_TRACE_GPU=1: each submit's kernels and the GPU time until its work was done (since the previous submit's work was
 * done, or since it was submitted if the queue was idle) on stderr, for finding where a slow run spends its time.
 * USAF_TRACE_GPU=each: a submit after every dispatch, so each line is one kernel (slower; the sum is still the GPU time).
 */
function traced(g: GpuContext): GpuContext {
  if (!process.env.USAF_TRACE_GPU) return g;
  if (process.env.USAF_TRACE_GPU === 'each') g.submitEach = true;
  let lastDone = performance.now();
  g.onSubmit = (kernels, done) => {
    const submitted = performance.now();
    void done.then(() => {
      const now = performance.now();
      const ms = now - Math.max(submitted, lastDone);
      lastDone = now;
      process.stderr.write(`[gpu] ${ms.toFixed(0).padStart(7)} ms  ${kernels || '(copies)'}\n`);
    });
  };
  return g;
}
