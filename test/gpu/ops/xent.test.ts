// xent: lm_head + cross-entropy in token chunks, each logit computed once (T 13 in chunks of 5, 1 and all 13: ragged last
// chunk; V 1000: each of the kernel's 256 threads folds 3 or 4 columns of a row into its running max and sum; ignored
// targets; f32 and bf16 W at an offset; logits ~50 and a row near 1000) vs the full-logits float64 oracle, forward only and with the gradient (= and +=);
// oracle backward vs finite differences of its loss.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/xent.ts';
import * as ref from '../../../src/engine/ref/xent.ts';
import { XENT_IGNORE } from '../../../src/engine/ops/xent.ts';
import type { GpuContext } from '../../../src/engine/gpu/device.ts';
import { randint, randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { testWeights } from '../../helpers/matmul-weights.ts';
import { withForced } from '../../helpers/forced.ts';
import { forceMatmulGridOrder } from '../../../src/engine/ops/matmul.ts';

const T = 13, H = 80, V = 1000, W_OFF = 5;

function targets(seed: number): Uint32Array {
  const tgt = randint(T, V, seed);
  tgt[T - 1] = XENT_IGNORE; // last position
  tgt[4] = XENT_IGNORE; // last row of the first 5-row chunk
  tgt[0] = V - 1;
  tgt[1] = 0;
  tgt[5] = 7; // first row of the second chunk
  return tgt;
}

function setup(gpu: GpuContext, wDtype: 'f32' | 'bf16', hScale: number, TC: number) {
  const w = testWeights(W_OFF + V * H, 21, 0.5);
  const h = randn(T * H, 22, hScale);
  const wBuf = wDtype === 'bf16' ? u32Buffer(gpu, w.packed, 'w') : f32Buffer(gpu, w.values, 'w');
  const d = { T, H, V, TC, wDtype, wOffset: W_OFF };
  const work = poisoned(gpu, Math.min(TC, T) * (V + 1), 'work'); // exactly one chunk of logits and their shifts
  return { w, h, wBuf, d, work };
}

describe('xent', () => {
  it('token chunks: the fewest within 2^24 logits, of equal size; work bounds every chunk of up to T tokens', () => {
    // Qwen3's vocabulary: 2^24 / 151,936 = 110 rows at most
    expect(gpuOp.xentTokenChunk(1024, 151_936)).toBe(103); // 10 chunks
    expect(gpuOp.xentTokenChunk(110, 151_936)).toBe(110); // 1 chunk
    expect(gpuOp.xentTokenChunk(111, 151_936)).toBe(56); // 2 chunks
    expect(gpuOp.xentWorkElements(1024, 151_936)).toBe(110 * 151_937); // logits and a shift a row
    expect(gpuOp.xentTokenChunk(48, 4096)).toBe(48); // 8192 rows fit: one chunk
    expect(gpuOp.xentWorkElements(48, 4096)).toBe(48 * 4097);
    for (const V of [4096, 151_936, 262_144]) {
      for (let T = 1; T <= 1100; T += 7) expect(gpuOp.xentTokenChunk(T, V) * V).toBeLessThanOrEqual(gpuOp.xentWorkElements(1100, V));
    }
  });

  // hScale 1: logits ~ 4; hScale 12: logits ~ 50 (max over the vocabulary ~ 150), where a naive exp overflows f32.
  // rowsFirst: the head's GEMMs on the grid laid out row tiles first (what gemmBytes picks for a large chunk and vocabulary)
  for (const [wDtype, hScale, TC, rowsFirst] of [['f32', 1, 5, false], ['bf16', 1, 13, false], ['bf16', 12, 5, false], ['f32', 1, 1, false], ['bf16', 1, 13, true]] as const) {
    it(`loss, lse and dh (= and +=) from one set of logits, ${wDtype} W, h scale ${hScale}, ${TC}-token chunks${rowsFirst ? ', row tiles first' : ''}`, () => withForced(forceMatmulGridOrder, rowsFirst, async () => {
      const gpu = await testGpu();
      const { w, h, wBuf, d, work } = setup(gpu, wDtype, hScale, TC);
      if (hScale > 1) h.set(h.subarray(0, H).map((v) => v * 8), 0); // row 0: logits up to ~1000
      const tgt = targets(23);
      const nValid = tgt.filter((t) => t !== XENT_IGNORE).length;
      const scale = 1 / nValid;
      const loss = poisoned(gpu, T), lse = poisoned(gpu, T), dh = poisoned(gpu, T * H);
      const loss2 = poisoned(gpu, T), lse2 = poisoned(gpu, T), lossF = poisoned(gpu, T), lseF = poisoned(gpu, T);
      const dh0 = randn(T * H, 24), dhAcc = f32Buffer(gpu, dh0);
      const H_ = f32Buffer(gpu, h), TGT = u32Buffer(gpu, tgt);
      await run(gpu, (enc) => {
        gpuOp.xentHead(enc, lossF, lseF, H_, wBuf, TGT, d, work); // forward only (evaluation)
        gpuOp.xentHead(enc, loss, lse, H_, wBuf, TGT, d, work, { dh, scale });
        gpuOp.xentHead(enc, loss2, lse2, H_, wBuf, TGT, d, work, { dh: dhAcc, scale, accumulate: true });
      });
      const lossR = new Float64Array(T), lseR = new Float64Array(T), dhR = new Float64Array(T * H), dhAccR = Float64Array.from(dh0);
      ref.xentHead(lossR, lseR, h, w.values, tgt, d, { dh: dhR, scale });
      ref.xentHead(new Float64Array(T), new Float64Array(T), h, w.values, tgt, d, { dh: dhAccR, scale, accumulate: true });
      const tol = 2e-5 * hScale * 8; // f32 logits: error grows with their magnitude
      for (const [l, s, what] of [[loss, lse, 'with dh'], [loss2, lse2, 'with dh +='], [lossF, lseF, 'forward only']] as const) {
        expectClose(await readF32(gpu, s), lseR, tol, 1e-6, `lse (${what})`);
        expectClose(await readF32(gpu, l), lossR, tol, 1e-5, `loss (${what})`);
      }
      expect(lossR[4]).toBe(0);
      expect(lossR.every((x, t) => t === 4 || t === T - 1 || x > 0)).toBe(true);
      expectClose(await readF32(gpu, dh), dhR, 1e-5, 1e-4, 'dh');
      expect(dhR.subarray(4 * H, 5 * H).every((x) => x === 0)).toBe(true); // an ignored row: no gradient
      expectClose(await readF32(gpu, dhAcc), dhAccR, 1e-5, 1e-4, 'dh (accumulated)');
    }));
  }

  it('logitsForward and a target >= V (NaN loss and gradient row, the others finite)', async () => {
    const gpu = await testGpu();
    const { w, h, wBuf, d, work } = setup(gpu, 'f32', 1, 5);
    const tgt = targets(25);
    tgt[6] = V;
    const logits = poisoned(gpu, T * V), loss = poisoned(gpu, T), lse = poisoned(gpu, T), dh = poisoned(gpu, T * H);
    const H_ = f32Buffer(gpu, h), TGT = u32Buffer(gpu, tgt);
    await run(gpu, (enc) => {
      gpuOp.logitsForward(enc, logits, H_, wBuf, d);
      gpuOp.xentHead(enc, loss, lse, H_, wBuf, TGT, d, work, { dh, scale: 0.1 });
    });
    const logitsR = new Float64Array(T * V);
    ref.logitsForward(logitsR, h, w.values, d);
    expectClose(await readF32(gpu, logits), logitsR, 1e-4, 1e-5, 'logits');
    const l = await readF32(gpu, loss), g = await readF32(gpu, dh);
    expect(Number.isNaN(l[6]!)).toBe(true);
    expect(g.subarray(6 * H, 7 * H).every(Number.isNaN)).toBe(true);
    expect([...l].filter((_, t) => t !== 6).every(Number.isFinite)).toBe(true);
    expect([...g.subarray(0, 6 * H), ...g.subarray(7 * H)].every(Number.isFinite)).toBe(true);
  });

  it('refuses a work buffer smaller than one chunk of logits and shifts, and a negative dlogits scale, before recording anything', async () => {
    const gpu = await testGpu();
    const { h, wBuf, d } = setup(gpu, 'f32', 1, 5);
    const small = poisoned(gpu, 5 * (V + 1) - 1, 'work');
    const H_ = f32Buffer(gpu, h), TGT = u32Buffer(gpu, targets(27)), loss = poisoned(gpu, T), lse = poisoned(gpu, T);
    await expect(run(gpu, (enc) => gpuOp.xentHead(enc, loss, lse, H_, wBuf, TGT, d, small))).rejects.toThrow(/xent: work holds \d+ bytes, needs \d+/);
    const work = poisoned(gpu, 5 * (V + 1), 'work'), dh = poisoned(gpu, T * H);
    await expect(run(gpu, (enc) => gpuOp.xentHead(enc, loss, lse, H_, wBuf, TGT, d, work, { dh, scale: -0.5 }))).rejects.toThrow(/dlogits scale -0.5 must be/);
  });

  it('oracle backward agrees with finite differences of the mean loss', () => {
    const t = 3, hd = 4, v = 7;
    const d = { T: t, H: hd, V: v, wDtype: 'f32' as const, wOffset: 1 };
    const h = Float64Array.from(randn(t * hd, 26));
    const w = Float64Array.from(randn(1 + v * hd, 27));
    const tgt = [2, XENT_IGNORE, 6];
    const meanLoss = (hh: Float64Array) => {
      const l = new Float64Array(t), s = new Float64Array(t);
      ref.xentHead(l, s, hh, w, tgt, d);
      return (l[0]! + l[2]!) / 2;
    };
    const dh = new Float64Array(t * hd);
    ref.xentHead(new Float64Array(t), new Float64Array(t), h, w, tgt, d, { dh, scale: 0.5 });
    for (let i = 0; i < t * hd; i++) expectClose([dh[i]!], [finiteDiff(meanLoss, h, i)], 1e-7, 1e-5, `dh[${i}]`);
  });
});
