// router: GPU selection/weights/backward/projection vs the float64 oracle (softmax Qwen-style, sigmoid DeepSeek-style
// with bias and groups, exact ties); oracle backward vs finite differences with the selection held fixed.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/router.ts';
import * as ref from '../../../src/engine/ref/router.ts';
import type { RouterDims } from '../../../src/engine/ops/router.ts';
import { readU32 } from '../../../src/engine/gpu/buffers.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';

const qwen: RouterDims = { T: 13, E: 6, K: 3, scoring: 'softmax', nGroup: 1, topkGroup: 1, normTopkProb: true, routedScalingFactor: 1 };
const olmoe: RouterDims = { ...qwen, normTopkProb: false };
const deepseek: RouterDims = { T: 13, E: 8, K: 3, scoring: 'sigmoid', nGroup: 2, topkGroup: 1, normTopkProb: true, routedScalingFactor: 2.5 };
const cases: [string, RouterDims, boolean][] = [
  ['softmax, renormalized', qwen, false],
  ['softmax, not renormalized', olmoe, false],
  ['sigmoid, bias, 2 groups keep 1, scale 2.5', deepseek, true],
];

function oracleForward(d: RouterDims, logits: ArrayLike<number>, bias: ArrayLike<number> | null) {
  const topIdx = new Uint32Array(d.T * d.K), topW = new Float64Array(d.T * d.K), probs = new Float64Array(d.T * d.E);
  ref.routerForward(topIdx, topW, probs, logits, bias, d);
  return { topIdx, topW, probs };
}

async function gpuForward(d: RouterDims, logits: ArrayLike<number>, bias: ArrayLike<number> | null) {
  const gpu = await testGpu();
  const topIdx = poisoned(gpu, d.T * d.K), topW = poisoned(gpu, d.T * d.K), probs = poisoned(gpu, d.T * d.E);
  await run(gpu, (enc) => gpuOp.routerForward(enc, topIdx, topW, probs, f32Buffer(gpu, logits), bias ? f32Buffer(gpu, bias) : null, d));
  return { topIdx: await readU32(gpu, topIdx), topW: await readF32(gpu, topW), probs: await readF32(gpu, probs) };
}

describe('router', () => {
  for (const [name, d, withBias] of cases) {
    const logits = randn(d.T * d.E, 11, 1.5);
    const bias = withBias ? randn(d.E, 12, 0.1) : null;
    const dTopW = randn(d.T * d.K, 13);

    it(`forward matches the oracle (${name})`, async () => {
      const want = oracleForward(d, logits, bias);
      const got = await gpuForward(d, logits, bias);
      expect(Array.from(got.topIdx)).toEqual(Array.from(want.topIdx));
      expectClose(got.probs, want.probs, 1e-6, 1e-5, 'probs');
      expectClose(got.topW, want.topW, 1e-6, 1e-5, 'topW');
    });

    it(`backward matches the oracle (${name})`, async () => {
      const gpu = await testGpu();
      const f = oracleForward(d, logits, bias);
      const dLogits = poisoned(gpu, d.T * d.E);
      await run(gpu, (enc) =>
        gpuOp.routerBackward(enc, dLogits, f32Buffer(gpu, dTopW), u32Buffer(gpu, f.topIdx), f32Buffer(gpu, f.probs), d),
      );
      const want = new Float64Array(d.T * d.E);
      ref.routerBackward(want, dTopW, f.topIdx, f.probs, d);
      expectClose(await readF32(gpu, dLogits), want, 1e-6, 1e-4, 'dLogits');
    });

    it(`oracle backward agrees with finite differences (${name})`, () => {
      const l64 = Float64Array.from(logits);
      const f = oracleForward(d, l64, bias);
      // loss with the selection of the unperturbed logits held fixed
      const loss = (l: Float64Array) => {
        const probs = new Float64Array(d.T * d.E);
        const o = oracleForward(d, l, bias);
        probs.set(o.probs);
        let s = 0;
        for (let t = 0; t < d.T; t++) {
          let sum = 0;
          for (let k = 0; k < d.K; k++) sum += probs[t * d.E + f.topIdx[t * d.K + k]!]!;
          const denom = d.normTopkProb ? sum + (d.scoring === 'sigmoid' ? 1e-20 : 0) : 1;
          for (let k = 0; k < d.K; k++) s += dTopW[t * d.K + k]! * (probs[t * d.E + f.topIdx[t * d.K + k]!]! / denom) * d.routedScalingFactor;
        }
        return s;
      };
      expectClose([loss(l64)], [f.topW.reduce((a, w, i) => a + w * dTopW[i]!, 0)], 1e-12, 1e-12, 'fixed-selection loss');
      const dl = new Float64Array(d.T * d.E);
      ref.routerBackward(dl, dTopW, f.topIdx, f.probs, d);
      for (const i of [0, 4, 9, 17, 30, d.T * d.E - 1]) expectClose([dl[i]!], [finiteDiff(loss, l64, i)], 1e-7, 1e-5, `dLogits[${i}]`);
    });
  }

  it('ties go to the lower expert index, also between groups', async () => {
    const d: RouterDims = { ...deepseek, T: 3, nGroup: 4, topkGroup: 2, K: 3 };
    // token 0: all equal; token 1: experts 2 and 5 tie for best, 3 and 4 next; token 2: group 0 best, groups 1 and 3 tie
    const logits = Float32Array.from([
      ...[0, 0, 0, 0, 0, 0, 0, 0],
      ...[0, 0, 1, 0, 0, 1, 0, 0],
      ...[2, 2, 0, 1, 0, 0, 1, 0],
    ]);
    const got = await gpuForward(d, logits, null);
    expect(Array.from(got.topIdx)).toEqual([0, 1, 2, 2, 5, 3, 0, 1, 3]);
    expect(Array.from(oracleForward(d, logits, null).topIdx)).toEqual([0, 1, 2, 2, 5, 3, 0, 1, 3]);
    const sm = await gpuForward({ ...qwen, T: 1, E: 5, K: 4 }, [1, 3, 1, 3, 1], null);
    expect(Array.from(sm.topIdx)).toEqual([1, 3, 0, 2]);
  });

  it('projection and its backward match the oracle', async () => {
    const gpu = await testGpu();
    const T = 13, H = 80, E = 6;
    const x = randn(T * H, 21), wr = randn(E * H, 22, 0.1), dl = randn(T * E, 23), dx0 = randn(T * H, 24), dw0 = randn(E * H, 25);
    const logits = poisoned(gpu, T * E), dx = f32Buffer(gpu, dx0), dWr = f32Buffer(gpu, dw0);
    const xb = f32Buffer(gpu, x), wb = f32Buffer(gpu, wr);
    await run(gpu, (enc) => {
      gpuOp.routerLogits(enc, logits, xb, wb, T, H, E);
      gpuOp.routerLogitsBackward(enc, dWr, dx, f32Buffer(gpu, dl), xb, wb, T, H, E, true);
    });
    const lr = new Float64Array(T * E), dxr = Float64Array.from(dx0), dwr = Float64Array.from(dw0);
    ref.routerLogits(lr, x, wr, T, H, E);
    ref.routerLogitsBackward(dwr, dxr, dl, x, wr, T, H, E, true);
    expectClose(await readF32(gpu, logits), lr, 1e-5, 1e-4, 'logits');
    expectClose(await readF32(gpu, dx), dxr, 1e-5, 1e-4, 'dx');
    expectClose(await readF32(gpu, dWr), dwr, 1e-5, 1e-4, 'dWr');
  });
});
