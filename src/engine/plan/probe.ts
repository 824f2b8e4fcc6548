// A short measured probe of this adapter: the rate (FLOP/s) of the engine's matrix product (ops/matmul, bf16 weights,
// as the frozen layers run) at a model's expert shape, the fixed costs a training step pays many times over (one more
// dispatch in a submit, a submit with a wait for the GPU), and the compile of one kernel's pipeline, which a run pays once
// per distinct kernel. A few seconds on a CPU adapter (SwiftShader: 2–5 s on a busy 2-core machine), less on a GPU.

import { createBuffer, gpuSync } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { Encoder } from '../gpu/encoder.ts';
import { withLibraries } from '../gpu/kernel.ts';
import { matmulForward } from '../ops/matmul.ts';
import matmulSrc from '../../../shaders/matmul.wgsl?raw';
import type { AdapterRate } from './run-time.ts';

export interface MatmulRate extends AdapterRate {
  /** The product timed: y [M, N] = x [M, K] W^T. */
  M: number;
  N: number;
  K: number;
  /** Wall time of the whole probe, milliseconds. */
  ms: number;
}

/**
 * Seconds for `count` products of [M, K] × [K, N] in one submit and its wait, the median of `reps` after one warm-up:
 * the typical time, not the best moment, as a run lasts minutes under whatever else the machine runs.
 */
async function timeProducts(gpu: GpuContext, M: number, N: number, K: number, reps: number, count = 1): Promise<number> {
  const x = createBuffer(gpu, { label: 'probe x', size: M * K * 4 });
  const w = createBuffer(gpu, { label: 'probe w', size: N * K * 2 });
  const y = createBuffer(gpu, { label: 'probe y', size: M * N * 4 });
  try {
    const times: number[] = [];
    for (let i = 0; i <= reps; i++) {
      const t0 = performance.now();
      const enc = new Encoder(gpu, 'probe');
      for (let c = 0; c < count; c++) matmulForward(enc, y, x, w, null, { M, N, K, wDtype: 'bf16' });
      enc.submit();
      await gpuSync(gpu);
      if (i > 0) times.push((performance.now() - t0) / 1000); // the first includes compiling the kernel
    }
    times.sort((a, b) => a - b);
    const h = times.length >> 1;
    return times.length % 2 ? times[h]! : (times[h - 1]! + times[h]!) / 2;
  } finally {
    for (const b of [x, w, y]) b.destroy();
  }
}

/**
 * Tilings of ops/matmul's kernel that a run does not use (it uses 16 × 16 threads, 16-wide slices): each compiles afresh.
 * The kernel is one of the engine's mid-sized ones; a run's kernels range from a few lines to attention's.
 */
const COMPILE_TILINGS = [{ TX: 8, TY: 8, BK: 8 }, { TX: 8, TY: 4, BK: 8 }] as const;

/** Mean seconds to compile one pipeline (shader module and compute pipeline) of the matrix product's kernel. */
async function timeCompile(gpu: GpuContext): Promise<number> {
  const code = withLibraries('probe.compile', matmulSrc);
  let total = 0;
  for (const t of COMPILE_TILINGS) {
    const t0 = performance.now();
    const module = gpu.device.createShaderModule({ label: 'probe.compile', code });
    await gpu.device.createComputePipelineAsync({
      label: 'probe.compile', layout: 'auto', compute: { module, entryPoint: 'main', constants: { B_BF16: 1, A_T: 1, ...t } },
    });
    total += (performance.now() - t0) / 1000;
  }
  return total / COMPILE_TILINGS.length;
}

/** Dispatches of a tiny product in one submit, to time what each dispatch costs beyond its arithmetic. */
const DISPATCH_BATCH = 32;

/**
 * The adapter's rates for a model of hidden size `hidden` and expert width `width`: the matrix product first at 256
 * tokens, and when that takes under 20 ms (a GPU) at 4096, whose rate is closer to what a GPU reaches on a full
 * microbatch; then a submit with one tiny product (8 × 64 by 64 × 64) and one with DISPATCH_BATCH of them: the first
 * is a wait's cost, the difference over DISPATCH_BATCH - 1 a dispatch's; then the compile of a pipeline (timeCompile).
 */
export async function measureMatmulRate(gpu: GpuContext, hidden: number, width: number): Promise<MatmulRate> {
  const t0 = performance.now();
  const K = Math.min(hidden, 4096);
  const N = Math.min(width, 4096);
  let M = 256;
  let sec = await timeProducts(gpu, M, N, K, 2);
  if (sec < 0.02) {
    M = 4096;
    sec = await timeProducts(gpu, M, N, K, 3);
  }
  const one = await timeProducts(gpu, 8, 64, 64, 3);
  const many = await timeProducts(gpu, 8, 64, 64, 3, DISPATCH_BATCH);
  const dispatchSeconds = Math.max(0, many - one) / (DISPATCH_BATCH - 1);
  const compileSeconds = await timeCompile(gpu);
  return {
    flopsPerSecond: (2 * M * N * K) / Math.max(sec, 1e-6), M, N, K, ms: performance.now() - t0,
    dispatchSeconds, syncSeconds: Math.max(0, one - dispatchSeconds), compileSeconds,
  };
}
