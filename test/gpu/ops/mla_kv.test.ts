// mla_kv: GPU assembly of MLA keys/values (and its backward) vs the float64 oracle at awkward sizes; oracle backward vs
// finite differences of the oracle forward.
import { describe, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/mla_kv.ts';
import * as ref from '../../../src/engine/ref/mla_kv.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu } from '../../helpers/gpu.ts';

describe('mla_kv', () => {
  // 13 tokens, 5 heads, nope 24, rope 6, value 10 (value width differs from the nope width on purpose)
  const d = { T: 13, NH: 5, DN: 24, DR: 6, DV: 10 };
  const { T, NH, DN, DR, DV } = d;
  const kvB = randn(T * NH * (DN + DV), 1);
  const kRope = randn(T * DR, 2);

  it('forward matches the oracle (exact copies)', async () => {
    const gpu = await testGpu();
    const k = poisoned(gpu, T * NH * (DN + DR)), v = poisoned(gpu, T * NH * DV);
    await run(gpu, (enc) => gpuOp.mlaKvForward(enc, k, v, f32Buffer(gpu, kvB), f32Buffer(gpu, kRope), d));
    const kr = new Float64Array(T * NH * (DN + DR)), vr = new Float64Array(T * NH * DV);
    ref.mlaKvForward(kr, vr, kvB, kRope, d);
    expectClose(await readF32(gpu, k), kr, 0, 0, 'k');
    expectClose(await readF32(gpu, v), vr, 0, 0, 'v');
  });

  it('backward matches the oracle', async () => {
    const gpu = await testGpu();
    const dk = randn(T * NH * (DN + DR), 3), dv = randn(T * NH * DV, 4);
    const dkvB = poisoned(gpu, T * NH * (DN + DV)), dkRope = poisoned(gpu, T * DR);
    await run(gpu, (enc) => gpuOp.mlaKvBackward(enc, dkvB, dkRope, f32Buffer(gpu, dk), f32Buffer(gpu, dv), d));
    const a = new Float64Array(T * NH * (DN + DV)), b = new Float64Array(T * DR);
    ref.mlaKvBackward(a, b, dk, dv, d);
    expectClose(await readF32(gpu, dkvB), a, 0, 0, 'dkvB');
    expectClose(await readF32(gpu, dkRope), b, 1e-6, 1e-6, 'dkRope');
  });

  it('oracle backward agrees with finite differences', () => {
    const s = { T: 2, NH: 3, DN: 2, DR: 2, DV: 3 };
    const nKvB = s.T * s.NH * (s.DN + s.DV), nR = s.T * s.DR;
    const gk = Float64Array.from(randn(s.T * s.NH * (s.DN + s.DR), 5));
    const gv = Float64Array.from(randn(s.T * s.NH * s.DV, 6));
    const x = Float64Array.from(randn(nKvB + nR, 7)); // kvB then kRope
    const loss = (xx: Float64Array) => {
      const k = new Float64Array(gk.length), v = new Float64Array(gv.length);
      ref.mlaKvForward(k, v, xx.subarray(0, nKvB), xx.subarray(nKvB), s);
      return k.reduce((a, e, i) => a + e * gk[i]!, 0) + v.reduce((a, e, i) => a + e * gv[i]!, 0);
    };
    const dkvB = new Float64Array(nKvB), dkRope = new Float64Array(nR);
    ref.mlaKvBackward(dkvB, dkRope, gk, gv, s);
    for (let i = 0; i < nKvB + nR; i++) {
      const want = finiteDiff(loss, x, i);
      expectClose([i < nKvB ? dkvB[i]! : dkRope[i - nKvB]!], [want], 1e-7, 1e-6, `d[${i}]`);
    }
  });
});
