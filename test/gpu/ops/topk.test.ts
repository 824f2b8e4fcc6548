// topk: GPU radix select + ordered compaction equals the sorting oracle: n=10007, k=50 with ties at the threshold,
// negative values and zeros; k=1 and k=n; chunks of several blocks; all elements equal; the group counts of a GPU and of
// a CPU adapter (whose chunks span several compaction tiles).
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/topk.ts';
import * as ref from '../../../src/engine/ref/topk.ts';
import { readU32 } from '../../../src/engine/gpu/buffers.ts';
import { randn, rng } from '../../helpers/random.ts';
import { f32Buffer, poisoned, run, testGpu } from '../../helpers/gpu.ts';

/** cpu: the group counts of a CPU adapter (few workgroups, chunks of several tiles) or of a GPU, whatever runs the test. */
async function gpuTopk(x: Float32Array, k: number, cpu?: boolean): Promise<number[]> {
  const dev = await testGpu();
  const gpu = cpu === undefined ? dev : { ...dev, info: { ...dev.info, cpu } };
  const idx = poisoned(gpu, k), ws = poisoned(gpu, gpuOp.TOPK_WORKSPACE_WORDS);
  await run(gpu, (enc) => gpuOp.topkSelect(enc, idx, f32Buffer(gpu, x), ws, x.length, k));
  return Array.from(await readU32(gpu, idx));
}

function oracle(x: Float32Array, k: number): number[] {
  const out = new Uint32Array(k);
  ref.topkSelect(out, x, x.length, k);
  return Array.from(out);
}

describe('topk', () => {
  it('n=10007, k=50, ties at the threshold (some tied entries in, some out)', async () => {
    const n = 10007, k = 50;
    const r = rng(3);
    // quantized magnitudes: many exact ties, both signs, zeros
    const x = Float32Array.from(randn(n, 4), (v) => Math.round(v * 4) / 4 * (r() < 0.5 ? -1 : 1));
    const want = oracle(x, k);
    const mags = want.map((i) => Math.abs(x[i]!));
    const tau = Math.min(...mags);
    const tiedIn = want.filter((i) => Math.abs(x[i]!) === tau).length;
    const tiedAll = Array.from(x).filter((v) => Math.abs(v) === tau).length;
    expect(tiedIn).toBeGreaterThan(0);
    expect(tiedAll).toBeGreaterThan(tiedIn); // the tie is split: lowest indices win
    expect(await gpuTopk(x, k)).toEqual(want);
  });

  it('distinct values (threshold decided in the last digit), k=1 and k=n', async () => {
    const n = 10007;
    // values equal in their upper 21 bits, differing only in the low 10
    const x = Float32Array.from({ length: n }, (_, i) => 1.5 + ((i * 7919) % 1024) * 2 ** -22 + (i % 3) * 2 ** -12);
    for (const k of [50, 1, n]) expect(await gpuTopk(x, k), `k=${k}`).toEqual(oracle(x, k));
  });

  it('more elements (n=100003, k=floor(0.005 n)) with zeros, and all-equal input', async () => {
    const n = 100_003, k = Math.floor(0.005 * n);
    const x = randn(n, 9);
    for (let i = 0; i < n; i += 7) x[i] = 0;
    expect(await gpuTopk(x, k)).toEqual(oracle(x, k));
    const same = new Float32Array(10007).fill(-0.25);
    expect(await gpuTopk(same, 50)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('the group counts of a GPU and of a CPU adapter agree with the oracle (n=600011: chunks of several tiles, ties)', async () => {
    const n = 600_011, k = Math.floor(0.005 * n);
    const r = rng(11);
    const x = Float32Array.from(randn(n, 13), (v) => Math.round(v * 64) / 64 * (r() < 0.5 ? -1 : 1));
    const want = oracle(x, k);
    const tau = Math.min(...want.map((i) => Math.abs(x[i]!)));
    expect(Array.from(x).filter((v) => Math.abs(v) === tau).length).toBeGreaterThan(want.filter((i) => Math.abs(x[i]!) === tau).length);
    for (const cpu of [false, true]) expect(await gpuTopk(x, k, cpu), `cpu=${cpu}`).toEqual(want);
  });
});
