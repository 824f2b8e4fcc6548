// Which adapters compute on the CPU (device.ts isCpuAdapter): what the header's amber notice and the estimate rely on.
import { describe, expect, it } from 'vitest';
import { isCpuAdapter } from '../../../src/engine/gpu/device.ts';

const info = (o: Partial<{ vendor: string; architecture: string; device: string; description: string; isFallbackAdapter: boolean }>) =>
  ({ vendor: '', architecture: '', device: '', description: '', ...o });

describe('isCpuAdapter', () => {
  it('names software rasterizers and fallback adapters', () => {
    expect(isCpuAdapter(info({ vendor: 'google', architecture: 'swiftshader' }))).toBe(true);
    expect(isCpuAdapter(info({ vendor: 'mesa', description: 'llvmpipe (LLVM 15.0.6, 256 bits)' }))).toBe(true);
    expect(isCpuAdapter(info({ description: 'Microsoft Basic Render Driver' }))).toBe(true);
    expect(isCpuAdapter(info({ vendor: 'nvidia', architecture: 'ampere', isFallbackAdapter: true }))).toBe(true);
  });
  it('leaves GPUs alone', () => {
    expect(isCpuAdapter(info({ vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H100 80GB HBM3' }))).toBe(false);
    expect(isCpuAdapter(info({ vendor: 'apple', architecture: 'metal-3' }))).toBe(false);
    expect(isCpuAdapter(info({ vendor: 'amd', architecture: 'rdna-3', description: 'AMD Radeon RX 7900 XTX' }))).toBe(false);
    expect(isCpuAdapter(info({ vendor: 'intel', architecture: 'gen-12lp', description: 'Intel(R) Iris(R) Xe Graphics' }))).toBe(false);
  });
});
