// Which GEMM tilings an adapter gets (docs/gemm.md): the vendor half of the per-vendor table that ops/matmul.ts and
// ops/experts.ts share; each launcher checks its own tiling against the device limits.

import type { GpuInfo } from '../gpu/device.ts';

/** Desktop and datacenter GPU vendors (GPUAdapterInfo.vendor) whose GEMMs get the large tiles. */
const LARGE_GPU_VENDORS = /^(nvidia|amd|apple)$/i;

/** A GPU (not a CPU adapter) of a vendor in LARGE_GPU_VENDORS. */
export function isLargeGpu(info: Pick<GpuInfo, 'vendor' | 'cpu'>): boolean {
  return !info.cpu && LARGE_GPU_VENDORS.test(info.vendor);
}
