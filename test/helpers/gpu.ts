// Shared GPU context for GPU tests (Dawn in Node; SwiftShader without a GPU) and buffer helpers:
// outputs are poisoned with NaN before a kernel runs, so a kernel that skips an element fails.
import { nodeGpu } from '../../src/node/gpu.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { createBuffer, readF32, writeBuffer } from '../../src/engine/gpu/buffers.ts';
import { Encoder } from '../../src/engine/gpu/encoder.ts';

let ctx: Promise<GpuContext> | null = null;
export function testGpu(): Promise<GpuContext> {
  return (ctx ??= nodeGpu());
}

export function f32Buffer(gpu: GpuContext, data: ArrayLike<number>, label = 'in'): GPUBuffer {
  const a = Float32Array.from(data);
  const b = createBuffer(gpu, { label, size: a.byteLength });
  writeBuffer(gpu, b, 0, a);
  return b;
}

export function u32Buffer(gpu: GpuContext, data: ArrayLike<number>, label = 'in'): GPUBuffer {
  const a = Uint32Array.from(data);
  const b = createBuffer(gpu, { label, size: a.byteLength });
  writeBuffer(gpu, b, 0, a);
  return b;
}

/** An output buffer of n f32 filled with NaN (poison). */
export function poisoned(gpu: GpuContext, n: number, label = 'out'): GPUBuffer {
  return f32Buffer(gpu, new Float32Array(n).fill(NaN), label);
}

export async function run(gpu: GpuContext, record: (enc: Encoder) => void): Promise<void> {
  const enc = new Encoder(gpu);
  record(enc);
  enc.submit();
}

export { readF32 };
