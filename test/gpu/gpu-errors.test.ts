// GPU errors surface as exceptions that name the kernel: WGSL compile errors, bad bindings, out-of-range dispatches,
// oversized buffers, and a lost device.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/node/gpu.ts';
import { kernel, KernelError } from '../../src/engine/gpu/kernel.ts';
import { Encoder } from '../../src/engine/gpu/encoder.ts';
import { createBuffer, gpuSync, readF32, GpuMemoryError } from '../../src/engine/gpu/buffers.ts';
import { DeviceLostError } from '../../src/engine/gpu/device.ts';
import { rmsnormForward } from '../../src/engine/ops/rmsnorm.ts';

const GOOD = `@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(1) fn main() { y[0] = 1.0; }`;

describe('GPU errors name the kernel', () => {
  it('a WGSL compile error', async () => {
    const gpu = await nodeGpu({ fresh: true });
    const k = kernel(gpu, { name: 'test.broken', code: 'fn main( {', entryPoint: 'main' });
    const enc = new Encoder(gpu);
    k.dispatch(enc, [createBuffer(gpu, { label: 'y', size: 4 })], [1]);
    enc.submit();
    await expect(gpuSync(gpu)).rejects.toThrow(/test\.broken/);
  });

  it('a binding that does not match the shader', async () => {
    const gpu = await nodeGpu({ fresh: true });
    const enc = new Encoder(gpu);
    const tiny = createBuffer(gpu, { label: 'tiny', size: 4 });
    // rmsnorm.forward wants 4 storage buffers + params: give it one too few.
    const k = kernel(gpu, { name: 'test.rmsnorm-misbound', code: GOOD, entryPoint: 'main' });
    k.dispatch(enc, [tiny, tiny], [1]);
    enc.submit();
    const err = await gpuSync(gpu).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect(String((err as Error).message)).toMatch(/test\.rmsnorm-misbound/);
  });

  it('an out-of-range workgroup count is refused before submission', async () => {
    const gpu = await nodeGpu({ fresh: true });
    const enc = new Encoder(gpu);
    const y = createBuffer(gpu, { label: 'y', size: 16 });
    expect(() => rmsnormForward(enc, y, y, y, y, 1e9, 4, 1e-6)).toThrow(/rmsnorm\.forward/);
  });

  it('a buffer larger than the device allows', async () => {
    const gpu = await nodeGpu({ fresh: true });
    expect(() => createBuffer(gpu, { label: 'huge', size: gpu.info.maxBufferSize + 4 })).toThrow(GpuMemoryError);
  });

  it('a lost device turns readbacks into DeviceLostError', async () => {
    const gpu = await nodeGpu({ fresh: true });
    const y = createBuffer(gpu, { label: 'y', size: 16 });
    gpu.device.destroy();
    expect(await gpu.lost).toMatch(/lost/);
    await expect(readF32(gpu, y)).rejects.toBeInstanceOf(DeviceLostError);
  });
});
