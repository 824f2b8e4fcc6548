// The encoder's host side: params of many dispatches share one uniform buffer at dynamic offsets (each dispatch sees
// its own values, also across the submits a long encoder is split into), bind groups are cached by kernel and
// bindings (an identical second pass creates none; another offset or a replaced buffer gets its own), and a binding
// error still names the kernel in debug mode.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/node/gpu.ts';
import { kernel, KernelError } from '../../src/engine/gpu/kernel.ts';
import { Encoder } from '../../src/engine/gpu/encoder.ts';
import { createBuffer, gpuSync, readF32, writeBuffer } from '../../src/engine/gpu/buffers.ts';
import { countCalls } from '../../src/engine/gpu/cost.ts';
import { debugScopes } from '../../src/engine/gpu/errors.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';

// y[i] = y[i] * p.a + x[i] * p.b over n = 4 floats
const AXPBY = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
struct P { a: f32, b: f32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(4) fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < arrayLength(&y)) { y[g.x] = y[g.x] * p.a + x[g.x] * p.b; }
}`;

const N = 4;
const X = [1, 2, 3, 4];
const POISON = 12345;
const Y0 = [POISON, POISON, POISON, POISON];

function setup(gpu: GpuContext) {
  const k = kernel(gpu, { name: 'test.axpby', code: AXPBY, entryPoint: 'main' });
  const x = createBuffer(gpu, { label: 'x', size: N * 4 });
  writeBuffer(gpu, x, 0, new Float32Array(X));
  const ys = [0, 1, 2].map((i) => {
    const y = createBuffer(gpu, { label: `y${i}`, size: N * 4 });
    writeBuffer(gpu, y, 0, new Float32Array(N).fill(POISON)); // a = 0 overwrites it; a dispatch not run leaves it
    return y;
  });
  return { k, x, ys };
}

/** y = y * a + x * b on the CPU (float64; every value here is a small integer, exact in f32). */
function oracle(y: number[], a: number, b: number): number[] {
  return y.map((v, i) => v * a + X[i]! * b);
}

describe('encoder: params at dynamic offsets', () => {
  it('dispatches of one kernel with different params in one submit each see their own', async () => {
    const gpu = await nodeGpu({ fresh: true });
    const counts = countCalls(gpu.device);
    const { k, x, ys } = setup(gpu);
    const enc = new Encoder(gpu);
    const s0 = counts.submits, w0 = counts.writes;
    k.dispatch(enc, [x, ys[0]!], [1], new Float32Array([0, 2]));
    k.dispatch(enc, [x, ys[1]!], [1], new Float32Array([0, -3]));
    k.dispatch(enc, [x, ys[0]!], [1], new Float32Array([10, 1])); // reads the first dispatch's result
    enc.submit();
    expect(counts.submits - s0).toBe(1);
    expect(counts.writes - w0).toBe(1); // the three params in one writeBuffer
    const want0 = oracle(oracle(Y0, 0, 2), 10, 1);
    expect(Array.from(await readF32(gpu, ys[0]!))).toEqual(want0);
    expect(Array.from(await readF32(gpu, ys[1]!))).toEqual(oracle(Y0, 0, -3));
  });

  it('a long encoder is split into several submits, in order, each with its params', async () => {
    const gpu = await nodeGpu({ fresh: true });
    const counts = countCalls(gpu.device);
    const { k, x, ys } = setup(gpu);
    const enc = new Encoder(gpu);
    const s0 = counts.submits;
    let want = Y0;
    k.dispatch(enc, [x, ys[2]!], [1], new Float32Array([0, 0]));
    want = oracle(want, 0, 0);
    for (let i = 1; i <= 300; i++) {
      // y = -y + x * i: the result depends on every dispatch's params and on their order
      k.dispatch(enc, [x, ys[2]!], [1], new Float32Array([-1, i]));
      want = oracle(want, -1, i);
    }
    enc.submit();
    expect(counts.submits - s0).toBeGreaterThan(1);
    expect(Array.from(await readF32(gpu, ys[2]!))).toEqual(want);
  });
});

describe('encoder: bind groups cached', () => {
  it('an identical second pass creates no bind groups; another offset or a new buffer gets its own', async () => {
    const gpu = await nodeGpu({ fresh: true });
    const counts = countCalls(gpu.device);
    const { k, x, ys } = setup(gpu);
    const pass = (y: GPUBuffer | GPUBufferBinding, a: number, b: number) => {
      const enc = new Encoder(gpu);
      k.dispatch(enc, [x, ys[0]!], [1], new Float32Array([a, b]));
      k.dispatch(enc, [x, y], [1], new Float32Array([a, b]));
      enc.submit();
    };
    const b0 = counts.bindGroups;
    pass(ys[1]!, 0, 1);
    expect(counts.bindGroups - b0).toBe(2);
    pass(ys[1]!, 0, 5);
    expect(counts.bindGroups - b0).toBe(2);
    expect(Array.from(await readF32(gpu, ys[1]!))).toEqual(oracle(Y0, 0, 5));

    // the same buffers at another offset are other bindings (offsets of 256 bytes: the storage offset alignment)
    const xx = createBuffer(gpu, { label: 'xx', size: 512 }), yy = createBuffer(gpu, { label: 'yy', size: 512 });
    writeBuffer(gpu, xx, 0, new Float32Array(128).fill(1));
    writeBuffer(gpu, xx, 256, new Float32Array([10, 20, 30, 40]));
    writeBuffer(gpu, yy, 0, new Float32Array(128).fill(7));
    const enc = new Encoder(gpu);
    for (const offset of [0, 256]) k.dispatch(enc, [{ buffer: xx, offset, size: 16 }, { buffer: yy, offset, size: 16 }], [1], new Float32Array([1, 1]));
    enc.submit();
    expect(counts.bindGroups - b0).toBe(4);
    const got = await readF32(gpu, yy);
    expect(Array.from(got.subarray(0, 5))).toEqual([8, 8, 8, 8, 7]);
    expect(Array.from(got.subarray(64, 69))).toEqual([17, 27, 37, 47, 7]);

    // a destroyed buffer's bind group is not reused for its replacement
    ys[1]!.destroy();
    const fresh = createBuffer(gpu, { label: 'fresh', size: N * 4 });
    pass(fresh, 0, 4);
    expect(counts.bindGroups - b0).toBe(5);
    expect(Array.from(await readF32(gpu, fresh))).toEqual(oracle(Y0, 0, 4));
    await gpuSync(gpu);
  });

  it('debug mode: a binding error names the kernel and says it is the bind group', async () => {
    const gpu = await nodeGpu({ fresh: true });
    debugScopes(gpu, true);
    const { k, x, ys } = setup(gpu);
    const enc = new Encoder(gpu);
    k.dispatch(enc, [x, ys[0]!, ys[1]!], [1], new Float32Array([0, 1])); // one buffer too many: y1 lands on the uniform
    enc.submit();
    const err = await gpuSync(gpu).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect(String((err as Error).message)).toMatch(/kernel "test\.axpby": bind group/);
  });
});
