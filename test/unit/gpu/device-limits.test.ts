// An adapter with fewer storage buffers per shader stage than the widest kernel binds is refused before any work, in
// words that name both numbers; one with enough is asked for its maximum.
import { describe, expect, it } from 'vitest';
import { createGpu, GpuUnavailableError, MIN_STORAGE_BUFFERS } from '../../../src/engine/gpu/device.ts';

function fakeGpu(storageBuffers: number): { gpu: GPU; asked: () => Record<string, number> | undefined } {
  let asked: Record<string, number> | undefined;
  const limits = {
    maxBufferSize: 2 ** 30, maxStorageBufferBindingSize: 2 ** 30, maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256,
    maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupSizeY: 256, maxComputeWorkgroupsPerDimension: 65535, maxStorageBuffersPerShaderStage: storageBuffers,
    minUniformBufferOffsetAlignment: 256,
  };
  const device = { features: new Set<string>(), limits, lost: new Promise(() => {}) };
  const adapter = {
    limits, features: new Set<string>(), info: { vendor: 'test', architecture: '', device: '', description: '' },
    requestDevice: async (d: { requiredLimits: Record<string, number> }) => ((asked = d.requiredLimits), device),
  };
  return { gpu: { requestAdapter: async () => adapter } as unknown as GPU, asked: () => asked };
}

describe('createGpu: storage buffers per shader stage', () => {
  it(`refuses an adapter with fewer than ${MIN_STORAGE_BUFFERS}, naming both numbers`, async () => {
    const f = fakeGpu(8);
    const e = await createGpu({ gpu: f.gpu }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GpuUnavailableError);
    expect((e as Error).message).toMatch(/allows 8 storage buffers per shader stage.*bind 10/);
    expect(f.asked()).toBeUndefined(); // no device was requested
  });
  it('takes one with enough, asking for its maximum', async () => {
    const f = fakeGpu(12);
    const g = await createGpu({ gpu: f.gpu });
    expect(f.asked()!.maxStorageBuffersPerShaderStage).toBe(12);
    expect(g.info.maxStorageBuffersPerShaderStage).toBe(12);
  });
});
