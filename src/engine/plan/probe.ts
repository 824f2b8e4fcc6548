// A short measured probe of this adapter: the rate (FLOP/s) of the engine's matrix product (ops/matmul, bf16 weights,
// as the frozen layers run) at a model's expert shape. Small on a CPU adapter (well under a second), larger on a GPU.

import { createBuffer, gpuSync } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/device.ts';
import { Encoder } from '../gpu/encoder.ts';
import { matmulForward } from '../ops/matmul.ts';

export interface MatmulRate {
  flopsPerSecond: number;
  /** The product timed: y [M, N] = x [M, K] W^T. */
  M: number;
  N: number;
  K: number;
  /** Wall time of the whole probe, milliseconds. */
  ms: number;
}

/** Seconds per product of [M, K] × [K, N], the best of `reps` after one warm-up. */
async function timeProduct(gpu: GpuContext, M: number, N: number, K: number, reps: number): Promise<number> {
  const x = createBuffer(gpu, { label: 'probe x', size: M * K * 4 });
  const w = createBuffer(gpu, { label: 'probe w', size: N * K * 2 });
  const y = createBuffer(gpu, { label: 'probe y', size: M * N * 4 });
  try {
    let best = Infinity;
    for (let i = 0; i <= reps; i++) {
      const t0 = performance.now();
      const enc = new Encoder(gpu, 'probe');
      matmulForward(enc, y, x, w, null, { M, N, K, wDtype: 'bf16' });
      enc.submit();
      await gpuSync(gpu);
      if (i > 0) best = Math.min(best, (performance.now() - t0) / 1000); // the first includes compiling the kernel
    }
    return best;
  } finally {
    for (const b of [x, w, y]) b.destroy();
  }
}

/**
 * The matrix-product rate for a model of hidden size `hidden` and expert width `width`: first 256 tokens; when that takes
 * under 20 ms (a GPU), 4096 tokens, whose rate is closer to what a GPU reaches on a full microbatch.
 */
export async function measureMatmulRate(gpu: GpuContext, hidden: number, width: number): Promise<MatmulRate> {
  const t0 = performance.now();
  const K = Math.min(hidden, 4096);
  const N = Math.min(width, 4096);
  let M = 256;
  let sec = await timeProduct(gpu, M, N, K, 2);
  if (sec < 0.02) {
    M = 4096;
    sec = await timeProduct(gpu, M, N, K, 3);
  }
  return { flopsPerSecond: (2 * M * N * K) / Math.max(sec, 1e-6), M, N, K, ms: performance.now() - t0 };
}
