// quantize: GPU HQQ and min-max vs the float64 oracle (codes >= 99.9 % identical, same error within 1e-4), offsets,
// bf16 input, the per-group error kernel, and quantReport on the GPU against the CPU quantizer.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/quantize.ts';
import * as ref from '../../../src/engine/ref/quantize.ts';
import { nibble, quantLayout, unpackScaleZero } from '../../../src/engine/quant/format.ts';
import type { QuantizeDims } from '../../../src/engine/quant/hqq.ts';
import { quantReport } from '../../../src/engine/quant/report.ts';
import { readU32 } from '../../../src/engine/gpu/buffers.ts';
import { encodeBf16, packBf16Pairs, decodeBf16 } from '../../../src/engine/io/dtype.ts';
import type { GpuContext } from '../../../src/engine/gpu/device.ts';
import { randn, rng } from '../../helpers/random.ts';
import { expectClose } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';

const SENTINEL = 0xdeadbeef;

/** Gaussian weights with 1 % outliers, like real expert rows (at scale 0.02 HQQ's shrink zeroes every residual; at 2 it does not). */
function weights(n: number, seed: number, scale = 0.02): Float32Array {
  const w = randn(n, seed, scale);
  const r = rng(seed + 100);
  for (let i = 0; i < n; i++) if (r() < 0.01) w[i] *= 6;
  return w;
}

function oracle(w: ArrayLike<number>, dims: QuantizeDims) {
  const L = quantLayout((dims.rowOffset ?? 0) + dims.rows, dims.K, dims.G);
  const q = new Uint32Array(L.qWords), sz = new Uint32Array(L.groups);
  ref.quantize(q, sz, w, dims);
  const err2 = new Float64Array(quantLayout(dims.rows, dims.K, dims.G).groups);
  ref.quantizeError(err2, w, q, sz, dims);
  return { q, sz, err2 };
}

async function onGpu(gpu: GpuContext, wBuf: GPUBuffer, dims: QuantizeDims, totalRows = dims.rows) {
  const L = quantLayout(totalRows, dims.K, dims.G);
  const q = u32Buffer(gpu, new Uint32Array(L.qWords).fill(SENTINEL)), sz = u32Buffer(gpu, new Uint32Array(L.groups).fill(SENTINEL));
  const err2 = poisoned(gpu, quantLayout(dims.rows, dims.K, dims.G).groups);
  await run(gpu, (enc) => {
    gpuOp.quantize(enc, q, sz, wBuf, dims);
    gpuOp.quantizeError(enc, err2, wBuf, q, sz, dims);
  });
  return { q: await readU32(gpu, q), sz: await readU32(gpu, sz), err2: await readF32(gpu, err2) };
}

const sum = (a: ArrayLike<number>): number => Array.from(a).reduce((x, y) => x + y, 0);

/** Fraction of equal codes over `n` elements from element `from`. */
function sameCodes(a: ArrayLike<number>, b: ArrayLike<number>, n: number, from = 0): number {
  let same = 0;
  for (let i = from; i < from + n; i++) if (nibble(a, i) === nibble(b, i)) same++;
  return same / n;
}

describe('quantize', () => {
  // [rows, K, G, scale]: K = 128 (G = 64), 200 (last group 8), 24 (< G: one short group), 256 (G = 128).
  const cases: [number, number, number, number][] = [[40, 128, 64, 0.02], [26, 200, 64, 2], [30, 24, 128, 0.02], [13, 256, 128, 2]];

  for (const method of ['hqq', 'minmax'] as const) {
    it(`${method} matches the oracle`, async () => {
      const gpu = await testGpu();
      for (const [rows, K, G, scale] of cases) {
        const w = weights(rows * K, rows + K, scale);
        const dims = { rows, K, G, method };
        const want = oracle(w, dims);
        const got = await onGpu(gpu, f32Buffer(gpu, w), dims);
        const what = `${method} [${rows}, ${K}] G ${G}`;
        expect(got.q.includes(SENTINEL) || got.sz.includes(SENTINEL), `${what}: unwritten output`).toBe(false);
        expect(sameCodes(got.q, want.q, rows * K), `${what}: identical codes`).toBeGreaterThanOrEqual(0.999);
        expect(sameCodes(got.sz.map((x) => x & 0xffff), want.sz.map((x) => x & 0xffff), want.sz.length * 2), `${what}: scales`).toBeGreaterThanOrEqual(0.999);
        // Reconstruction error: the GPU's own codes scored by the oracle, and the GPU's error kernel, against the oracle's.
        const e = new Float64Array(want.err2.length);
        ref.quantizeError(e, w, got.q, got.sz, dims);
        expect(Math.abs(sum(e) - sum(want.err2)) / sum(want.err2), `${what}: error`).toBeLessThanOrEqual(1e-4);
        expectClose(got.err2, e, 1e-12, 1e-4, `${what}: err2`);
      }
    });
  }

  it('refuses a group larger than the GPU quantizer keeps in registers', async () => {
    const gpu = await testGpu();
    const dims = { rows: 2, K: 256, G: 256 };
    const L = quantLayout(dims.rows, dims.K, dims.G);
    await expect(run(gpu, (enc) => gpuOp.quantize(enc, u32Buffer(gpu, new Uint32Array(L.qWords)), u32Buffer(gpu, new Uint32Array(L.groups)), f32Buffer(gpu, weights(512, 1)), dims)))
      .rejects.toThrow(/group size G = 256 is over 128/);
  });

  it('HQQ lowers the error of min-max on the GPU', async () => {
    const gpu = await testGpu();
    const w = weights(64 * 128, 7);
    const wBuf = f32Buffer(gpu, w);
    const mm = await onGpu(gpu, wBuf, { rows: 64, K: 128, G: 64, method: 'minmax' });
    const hq = await onGpu(gpu, wBuf, { rows: 64, K: 128, G: 64 });
    expect(Math.sqrt(sum(hq.err2) / sum(mm.err2))).toBeLessThan(0.985);
  });

  it('reads at wOffset, writes rows rowOffset.. only, and takes bf16 weights', async () => {
    const gpu = await testGpu();
    const rows = 20, K = 128, G = 64; // expert 1 of 3
    const w = decodeBf16(encodeBf16(weights(3 * rows * K, 8))); // bf16-exact values
    const dims = { rows, K, G, wOffset: rows * K + 0, rowOffset: rows };
    const L = quantLayout(3 * rows, K, G);
    const f32 = await onGpu(gpu, f32Buffer(gpu, w), dims, 3 * rows);
    const wordsPerExpert = L.qWords / 3, groupsPerExpert = L.groups / 3;
    expect(Array.from(f32.q.subarray(0, wordsPerExpert)).every((x) => x === SENTINEL)).toBe(true);
    expect(Array.from(f32.q.subarray(2 * wordsPerExpert)).every((x) => x === SENTINEL)).toBe(true);
    expect(Array.from(f32.sz.subarray(0, groupsPerExpert)).every((x) => x === SENTINEL)).toBe(true);
    expect(f32.q.subarray(wordsPerExpert, 2 * wordsPerExpert).includes(SENTINEL)).toBe(false);
    const want = oracle(w, dims);
    expect(sameCodes(f32.q, want.q, rows * K, rows * K)).toBeGreaterThanOrEqual(0.999);
    // The same values as bf16 pairs, at an odd element offset: identical output.
    const shifted = new Float32Array(w.length + 1);
    shifted.set(w, 1);
    const bf = await onGpu(gpu, u32Buffer(gpu, packBf16Pairs(encodeBf16(shifted))), { ...dims, wOffset: dims.wOffset + 1, bf16: true }, 3 * rows);
    expect(bf.q).toEqual(f32.q);
    expect(bf.sz).toEqual(f32.sz);
  });

  it('quantReport on the GPU agrees with the CPU quantizer', async () => {
    const gpu = await testGpu();
    const tensors = [
      { name: 'experts.gate_up', data: weights(2 * 24 * 64, 9), shape: [2, 24, 64] },
      { name: 'experts.down', data: weights(64 * 24, 10), shape: [64, 24] },
      { name: 'norm', data: weights(64, 11), shape: [64] },
    ];
    async function* each() { yield* tensors; }
    const cpu = await quantReport(each(), { groupSize: 32 });
    const gpuR = await quantReport(each(), { groupSize: 32, gpu });
    expect(gpuR.skipped.map((s) => s.name)).toEqual(['norm']);
    expect(gpuR.tensors.map((t) => t.name)).toEqual(['experts.gate_up', 'experts.down']);
    for (const key of ['minmax', 'hqq'] as const) {
      expectClose([gpuR.total[key], ...gpuR.tensors.map((t) => t[key])], [cpu.total[key], ...cpu.tensors.map((t) => t[key])], 0, 1e-4, key);
    }
    expect(gpuR.total.hqq).toBeLessThan(gpuR.total.minmax);
  });

  it('random 4-bit tensors equal the oracle word for word (past 65535 workgroups too), spread over every code', async () => {
    const gpu = await testGpu();
    // [qWords, groups, seed]; the last case needs more than 65535 workgroups of 64 threads (the grid spills into y).
    for (const [qWords, groups, seed] of [[1000, 37, 1], [1000, 37, 2], [4_200_000, 90_000, 7]] as const) {
      const q = u32Buffer(gpu, new Uint32Array(qWords).fill(SENTINEL)), sz = u32Buffer(gpu, new Uint32Array(groups).fill(SENTINEL));
      await run(gpu, (enc) => gpuOp.quantizeRandom(enc, q, sz, { qWords, groups, seed }));
      const wantQ = new Uint32Array(qWords), wantSz = new Uint32Array(groups);
      ref.quantizeRandom(wantQ, wantSz, { qWords, groups, seed });
      const gotQ = await readU32(gpu, q), gotSz = await readU32(gpu, sz);
      const what = `[${qWords}, ${groups}] seed ${seed}`;
      expect(gotQ.every((x, i) => x === wantQ[i]), `${what}: codes`).toBe(true);
      expect(gotSz.every((x, i) => x === wantSz[i]), `${what}: table`).toBe(true);
      const counts = new Array(16).fill(0);
      for (let i = 0; i < Math.min(qWords, 1000) * 8; i++) counts[nibble(gotQ, i)]++;
      for (const c of counts) expect(c / (Math.min(qWords, 1000) * 8), `${what}: code frequency`).toBeCloseTo(1 / 16, 1);
      for (const w of gotSz.subarray(0, 100)) {
        const { s, z } = unpackScaleZero(w);
        expect(s >= 2 ** -9 && s < 2 ** -8 && z >= 7 && z < 8, `${what}: s ${s}, z ${z}`).toBe(true);
      }
    }
    const a = new Uint32Array(1000), b = new Uint32Array(1000);
    ref.quantizeRandom(a, new Uint32Array(0), { qWords: 1000, groups: 0, seed: 1 });
    ref.quantizeRandom(b, new Uint32Array(0), { qWords: 1000, groups: 0, seed: 2 });
    expect(a.filter((x, i) => x === b[i]).length, 'seeds give different tensors').toBeLessThan(5);
  });
});

