// xent: chunked lm_head + cross-entropy (V 211 in chunks of 64, ragged last chunk, ignored targets, f32 and bf16 W at an
// offset, logits ~50 and a row near 1000) vs the full-logits float64 oracle; oracle backward vs finite differences of its loss.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/xent.ts';
import * as ref from '../../../src/engine/ref/xent.ts';
import { XENT_IGNORE } from '../../../src/engine/ops/xent.ts';
import type { GpuContext } from '../../../src/engine/gpu/device.ts';
import { createBuffer } from '../../../src/engine/gpu/buffers.ts';
import { randint, randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { testWeights } from '../../helpers/matmul-weights.ts';

const T = 13, H = 80, V = 211, VC = 64, W_OFF = 5;

function targets(seed: number): Uint32Array {
  const tgt = randint(T, V, seed);
  tgt[T - 1] = XENT_IGNORE; // last position
  tgt[4] = XENT_IGNORE;
  tgt[0] = V - 1; // in the ragged last chunk
  tgt[1] = 0;
  tgt[2] = VC; // first column of the second chunk
  return tgt;
}

function setup(gpu: GpuContext, wDtype: 'f32' | 'bf16', hScale: number) {
  const w = testWeights(W_OFF + V * H, 21, 0.5);
  const h = randn(T * H, 22, hScale);
  const wBuf = wDtype === 'bf16' ? u32Buffer(gpu, w.packed, 'w') : f32Buffer(gpu, w.values, 'w');
  const d = { T, H, V, VC, wDtype, wOffset: W_OFF };
  const work = createBuffer(gpu, { label: 'work', size: gpuOp.xentWorkElements(d) * 4 });
  return { w, h, wBuf, d, work };
}

describe('xent', () => {
  // hScale 1: logits ~ 4; hScale 12: logits ~ 50 (max over the vocabulary ~ 150), where a naive exp overflows f32.
  for (const [wDtype, hScale] of [['f32', 1], ['bf16', 1], ['bf16', 12]] as const) {
    it(`forward and backward, ${wDtype} W, h scale ${hScale}`, async () => {
      const gpu = await testGpu();
      const { w, h, wBuf, d, work } = setup(gpu, wDtype, hScale);
      if (hScale > 1) h.set(h.subarray(0, H).map((v) => v * 8), 0); // row 0: logits up to ~1000
      const tgt = targets(23);
      const nValid = tgt.filter((t) => t !== XENT_IGNORE).length;
      const loss = poisoned(gpu, T), lse = poisoned(gpu, T), dh = poisoned(gpu, T * H);
      const dh0 = randn(T * H, 24), dhAcc = f32Buffer(gpu, dh0);
      const H_ = f32Buffer(gpu, h), TGT = u32Buffer(gpu, tgt);
      const bd = { ...d, scale: 1 / nValid };
      await run(gpu, (enc) => {
        gpuOp.xentForward(enc, loss, lse, H_, wBuf, TGT, d, work);
        gpuOp.xentBackward(enc, dh, H_, wBuf, TGT, lse, bd, work);
        gpuOp.xentBackward(enc, dhAcc, H_, wBuf, TGT, lse, { ...bd, accumulate: true }, work);
      });
      const lossR = new Float64Array(T), lseR = new Float64Array(T), dhR = new Float64Array(T * H), dhAccR = Float64Array.from(dh0);
      ref.xentForward(lossR, lseR, h, w.values, tgt, d);
      ref.xentBackward(dhR, h, w.values, tgt, lseR, bd);
      ref.xentBackward(dhAccR, h, w.values, tgt, lseR, { ...bd, accumulate: true });
      const tol = 2e-5 * hScale * 8; // f32 logits: error grows with their magnitude
      expectClose(await readF32(gpu, lse), lseR, tol, 1e-6, 'lse');
      expectClose(await readF32(gpu, loss), lossR, tol, 1e-5, 'loss');
      expect(lossR[4]).toBe(0);
      expectClose(await readF32(gpu, dh), dhR, 1e-5, 1e-4, 'dh');
      expectClose(await readF32(gpu, dhAcc), dhAccR, 1e-5, 1e-4, 'dh (accumulated)');
    });
  }

  it('logitsForward and a target >= V (NaN loss and gradient row)', async () => {
    const gpu = await testGpu();
    const { w, h, wBuf, d, work } = setup(gpu, 'f32', 1);
    const tgt = targets(25);
    tgt[6] = V;
    const logits = poisoned(gpu, T * V), loss = poisoned(gpu, T), lse = poisoned(gpu, T), dh = poisoned(gpu, T * H);
    const H_ = f32Buffer(gpu, h), TGT = u32Buffer(gpu, tgt);
    await run(gpu, (enc) => {
      gpuOp.logitsForward(enc, logits, H_, wBuf, d);
      gpuOp.xentForward(enc, loss, lse, H_, wBuf, TGT, d, work);
      gpuOp.xentBackward(enc, dh, H_, wBuf, TGT, lse, { ...d, scale: 0.1 }, work);
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

  it('oracle backward agrees with finite differences of the mean loss', () => {
    const t = 3, hd = 4, v = 7;
    const d = { T: t, H: hd, V: v, wDtype: 'f32' as const, wOffset: 1 };
    const h = Float64Array.from(randn(t * hd, 26));
    const w = Float64Array.from(randn(1 + v * hd, 27));
    const tgt = [2, XENT_IGNORE, 6];
    const meanLoss = (hh: Float64Array) => {
      const l = new Float64Array(t), s = new Float64Array(t);
      ref.xentForward(l, s, hh, w, tgt, d);
      return (l[0]! + l[2]!) / 2;
    };
    const loss = new Float64Array(t), lse = new Float64Array(t), dh = new Float64Array(t * hd);
    ref.xentForward(loss, lse, h, w, tgt, d);
    ref.xentBackward(dh, h, w, tgt, lse, { ...d, scale: 0.5 });
    for (let i = 0; i < t * hd; i++) expectClose([dh[i]!], [finiteDiff(meanLoss, h, i)], 1e-7, 1e-5, `dh[${i}]`);
  });
});
