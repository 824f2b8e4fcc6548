// adam: SparseAdam (3 steps), master scatter/gather (f32 and bf16 at an odd offset, neighbouring pairs), router SGD
// (first step then momentum) and the non-finite guard, GPU vs the float64 oracle; oracle's first step is lr*sign(g).
// SparseAdam with a step count per entry (random counts, some past the table): vs its oracle, NaN sentinels past n
// untouched, and bit-identical to the global-t kernel when every count is the same.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/adam.ts';
import * as ref from '../../../src/engine/ref/adam.ts';
import type { WeightTarget } from '../../../src/engine/ops/adam.ts';
import { readU32 } from '../../../src/engine/gpu/buffers.ts';
import { randn, rng } from '../../helpers/random.ts';
import { expectClose } from '../../helpers/compare.ts';
import { f32Buffer, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { packBf16, roundBf16 } from '../../helpers/experts-data.ts';

const n = 1013;
const wd = 0.005;

describe('adam', () => {
  it('oracle: the first step moves each entry by lr * sign(g + wd*W)', () => {
    const w = Float64Array.from(randn(n, 1)), g = randn(n, 2);
    const m = new Float64Array(n), v = new Float64Array(n), w0 = w.slice();
    ref.sparseAdam(w, m, v, g, null, n, { lr: 1e-3, t: 1, weightDecay: wd });
    const want = Array.from(w0, (x, j) => x - 1e-3 * Math.sign(g[j]! + wd * x));
    expectClose(w, want, 1e-9, 1e-6, 'W after step 1');
  });

  it('SparseAdam matches the oracle over 3 steps, and a set guard skips the step', async () => {
    const gpu = await testGpu();
    const w0 = randn(n, 3), m0 = randn(n, 4, 0.01), v0 = randn(n, 5, 0.01).map(Math.abs);
    const master = f32Buffer(gpu, w0), m = f32Buffer(gpu, m0), v = f32Buffer(gpu, v0);
    const wr = Float64Array.from(w0), mr = Float64Array.from(m0), vr = Float64Array.from(v0);
    const clear = u32Buffer(gpu, [0]), set = u32Buffer(gpu, [1]);
    for (let t = 1; t <= 3; t++) {
      const g = randn(n, 10 + t, 0.1);
      const h = { lr: 2e-3 * t, t, weightDecay: wd };
      await run(gpu, (enc) => gpuOp.sparseAdam(enc, master, m, v, f32Buffer(gpu, g), t === 2 ? clear : null, n, h));
      ref.sparseAdam(wr, mr, vr, g, t === 2 ? [0] : null, n, h);
      await run(gpu, (enc) => gpuOp.sparseAdam(enc, master, m, v, f32Buffer(gpu, g), set, n, h));
      ref.sparseAdam(wr, mr, vr, g, [1], n, h);
    }
    expectClose(await readF32(gpu, m), mr, 1e-7, 1e-5, 'm');
    expectClose(await readF32(gpu, v), vr, 1e-9, 1e-5, 'v');
    expectClose(await readF32(gpu, master), wr, 1e-6, 1e-5, 'master');
  });

  it('SparseAdam with per-entry step counts matches its oracle over 3 steps (guard skips, sentinels past n untouched)', async () => {
    const gpu = await testGpu();
    const pad = 7, tMax = 50;
    const r = rng(50);
    const t0 = Uint32Array.from({ length: n }, () => Math.floor(r() * 60)); // 0 = a grown entry; > tMax: clamped
    const w0 = randn(n, 51), m0 = randn(n, 52, 0.01), v0 = randn(n, 53, 0.01).map(Math.abs);
    for (let j = 0; j < n; j++) if (t0[j] === 0) (m0[j] = 0, v0[j] = 0);
    const withTail = (a: ArrayLike<number>) => f32Buffer(gpu, [...Array.from(a), ...new Array(pad).fill(NaN)]);
    const master = withTail(w0), m = withTail(m0), v = withTail(v0);
    const steps = u32Buffer(gpu, [...Array.from(t0), ...new Array(pad).fill(0xdeadbeef)]);
    const bc = f32Buffer(gpu, gpuOp.adamBiasTable(tMax));
    const wr = Float64Array.from(w0), mr = Float64Array.from(m0), vr = Float64Array.from(v0), tr = t0.slice();
    const set = u32Buffer(gpu, [1]);
    for (let s = 1; s <= 3; s++) {
      const g = randn(n, 60 + s, 0.1);
      const h = { lr: 2e-3 * s, tMax, weightDecay: wd };
      await run(gpu, (enc) => gpuOp.sparseAdamEntryT(enc, master, m, v, steps, f32Buffer(gpu, g), s === 2 ? u32Buffer(gpu, [0]) : null, bc, n, h));
      ref.sparseAdamEntryT(wr, mr, vr, tr, g, null, n, h);
      await run(gpu, (enc) => gpuOp.sparseAdamEntryT(enc, master, m, v, steps, f32Buffer(gpu, g), set, bc, n, h));
      ref.sparseAdamEntryT(wr, mr, vr, tr, g, [1], n, h);
    }
    expect(Array.from(tr.subarray(0, 5))).toEqual(Array.from(t0.subarray(0, 5), (x) => x + 3));
    const gotSteps = await readU32(gpu, steps);
    expect(Array.from(gotSteps.subarray(0, n))).toEqual(Array.from(tr));
    expect(Array.from(gotSteps.subarray(n))).toEqual(new Array(pad).fill(0xdeadbeef));
    for (const [name, buf, want, atol] of [['m', m, mr, 1e-7], ['v', v, vr, 1e-9], ['master', master, wr, 1e-6]] as const) {
      const got = await readF32(gpu, buf);
      expectClose(got.subarray(0, n), want, atol, 1e-5, name);
      expect(Array.from(got.subarray(n)).every(Number.isNaN), `${name} past n`).toBe(true);
    }
  });

  it('SparseAdam with per-entry counts all equal to t-1 is bit-identical to the global-t kernel at t', async () => {
    const gpu = await testGpu();
    const t = 7;
    const w0 = randn(n, 70), m0 = randn(n, 71, 0.01), v0 = randn(n, 72, 0.01).map(Math.abs), g = f32Buffer(gpu, randn(n, 73, 0.1));
    const a = [f32Buffer(gpu, w0), f32Buffer(gpu, m0), f32Buffer(gpu, v0)] as const;
    const b = [f32Buffer(gpu, w0), f32Buffer(gpu, m0), f32Buffer(gpu, v0)] as const;
    await run(gpu, (enc) => {
      gpuOp.sparseAdam(enc, a[0], a[1], a[2], g, null, n, { lr: 3e-3, t, weightDecay: wd });
      gpuOp.sparseAdamEntryT(enc, b[0], b[1], b[2], u32Buffer(gpu, new Uint32Array(n).fill(t - 1)), g, null, f32Buffer(gpu, gpuOp.adamBiasTable(10)), n, { lr: 3e-3, tMax: 10, weightDecay: wd });
    });
    for (let i = 0; i < 3; i++) expect(Array.from(await readF32(gpu, b[i]!))).toEqual(Array.from(await readF32(gpu, a[i]!)));
  });

  // active entries with an even/odd pair sharing a bf16 word, a lone odd, a lone even, first and last
  const size = 301, offset = 5;
  const r = rng(9);
  const idx = Uint32Array.from([0, 2, 3, 8, 9, 10, 17, 40, 41, 99, 100, 101, 102, ...Array.from({ length: 40 }, (_, i) => 110 + i * 4 + Math.floor(r() * 4)), size - 1]);
  const masters = randn(idx.length, 20);
  for (const dtype of ['f32', 'bf16'] as const) {
    it(`scatter and gather of masters (${dtype} weights at offset ${offset})`, async () => {
      const gpu = await testGpu();
      const t: WeightTarget = { dtype, offset };
      const vals = roundBf16(randn(offset + size, 21));
      const words = dtype === 'bf16' ? packBf16(vals) : new Uint32Array(vals.buffer.slice(0));
      const wb = u32Buffer(gpu, words);
      const ib = u32Buffer(gpu, idx);
      const back = f32Buffer(gpu, new Float32Array(idx.length).fill(NaN));
      await run(gpu, (enc) => {
        gpuOp.scatterMasters(enc, wb, f32Buffer(gpu, masters), ib, u32Buffer(gpu, [0]), idx.length, t);
        gpuOp.gatherMasters(enc, back, wb, ib, idx.length, t);
      });
      const want = dtype === 'bf16' ? Uint32Array.from(words) : Float64Array.from(vals);
      ref.scatterMasters(want, masters, idx, [0], idx.length, t);
      const got = await readU32(gpu, wb);
      if (dtype === 'bf16') expect(Array.from(got)).toEqual(Array.from(want));
      else expect(Array.from(new Float32Array(got.buffer))).toEqual(Array.from(want));
      const wantBack = new Float64Array(idx.length);
      ref.gatherMasters(wantBack, want, idx, idx.length, t);
      expect(Array.from(await readF32(gpu, back))).toEqual(Array.from(wantBack));
      if (dtype === 'f32') expect(Array.from(wantBack)).toEqual(Array.from(masters));
      else expectClose(wantBack, masters, 0, 2 ** -8, 'bf16 round trip');
    });
  }

  it('range-filtered scatter and gather (f32): only indices in [lo, hi), at offset + idx - lo; the rest untouched', async () => {
    const gpu = await testGpu();
    const lo = 99, hi = 150, chunk = hi - lo;
    const t: WeightTarget = { dtype: 'f32', offset, range: [lo, hi] };
    const wb = f32Buffer(gpu, new Float32Array(offset + chunk).fill(NaN));
    const ib = u32Buffer(gpu, idx);
    const back = f32Buffer(gpu, new Float32Array(idx.length).fill(-7));
    await run(gpu, (enc) => {
      gpuOp.scatterMasters(enc, wb, f32Buffer(gpu, masters), ib, null, idx.length, t);
      gpuOp.gatherMasters(enc, back, wb, ib, idx.length, t);
    });
    const want = new Float64Array(offset + chunk).fill(NaN);
    ref.scatterMasters(want, masters, idx, null, idx.length, t);
    const got = Array.from(await readF32(gpu, wb));
    expect(got).toEqual(Array.from(want, (x) => Math.fround(x)));
    const inRange = Array.from(idx, (i) => i >= lo && i < hi);
    expect(inRange.filter(Boolean).length).toBeGreaterThan(5);
    for (let i = 0; i < offset + chunk; i++) expect(Number.isNaN(got[i]!)).toBe(!idx.some((j) => j >= lo && j < hi && offset + j - lo === i));
    const wantBack = new Float64Array(idx.length).fill(-7);
    ref.gatherMasters(wantBack, want, idx, idx.length, t);
    expect(Array.from(await readF32(gpu, back))).toEqual(Array.from(wantBack, (x) => Math.fround(x)));
    expect(Array.from(wantBack)).toEqual(Array.from(masters, (m, j) => (inRange[j] ? Math.fround(m) : -7)));
  });

  it('router SGD with momentum matches the oracle (buffer initialised to the first gradient)', async () => {
    const gpu = await testGpu();
    const N = 6 * 80, w0 = randn(N, 30, 0.1);
    const w = f32Buffer(gpu, w0), buf = f32Buffer(gpu, new Float32Array(N).fill(NaN));
    const wr = Float64Array.from(w0), br = new Float64Array(N).fill(NaN);
    for (let s = 0; s < 3; s++) {
      const g = randn(N, 31 + s);
      const h = { lr: 1e-2, weightDecay: wd, hasBuf: s > 0 };
      await run(gpu, (enc) => gpuOp.routerSgd(enc, w, buf, f32Buffer(gpu, g), u32Buffer(gpu, [0]), N, h));
      ref.routerSgd(wr, br, g, [0], N, h);
    }
    expectClose(await readF32(gpu, buf), br, 1e-6, 1e-5, 'buf');
    expectClose(await readF32(gpu, w), wr, 1e-6, 1e-5, 'w');
  });

  it('checkFinite flags NaN and inf anywhere, and only then', async () => {
    const gpu = await testGpu();
    const N = 300_001;
    const clean = randn(N, 40);
    for (const [what, at, val] of [['clean', -1, 0], ['NaN', N - 1, NaN], ['-inf', 123_457, -Infinity], ['inf', 0, Infinity]] as const) {
      const x = clean.slice();
      if (at >= 0) x[at] = val;
      const flag = u32Buffer(gpu, [0]);
      await run(gpu, (enc) => gpuOp.checkFinite(enc, flag, f32Buffer(gpu, x), N));
      const want = Uint32Array.of(0);
      ref.checkFinite(want, x, N);
      expect((await readU32(gpu, flag))[0], what).toBe(want[0]);
      expect(want[0], what).toBe(at >= 0 ? 1 : 0);
    }
  });
});
