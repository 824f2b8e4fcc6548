// attention: GPU forward (o, lse) and backward (dq, dk, dv, delta) vs the float64 oracle for GQA, Dv != Dqk, sliding
// window and several tile shapes (multi-block, non-square); oracle backward vs finite differences of the oracle forward.
// With GQA the dk/dv kernel writes per-query-head partials (dk's into dq, dv's into a scratch) summed per kv head after.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/attention.ts';
import { ATTENTION_TILES, type AttentionDims, type AttentionTiles } from '../../../src/engine/ops/attention.ts';
import * as ref from '../../../src/engine/ref/attention.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu } from '../../helpers/gpu.ts';

const dims = (o: Omit<AttentionDims, 'scale' | 'window'> & { window?: number | null }): AttentionDims => ({ scale: 1 / Math.sqrt(o.dQK), window: null, ...o });

// Score blocks are 4*ty queries x 4*tx keys (dk/dv: 4*ty keys x 4*tx queries). SwiftShader compiles big workgroups
// slowly (~30 s for the default 16x16 forward + backward), so the default tiles run once and small awkward tiles do the rest.
const cases: { name: string; d: AttentionDims; tiles: AttentionTiles }[] = [
  { name: 'NH5 NKV1 D24, default tiles', d: dims({ batch: 2, seq: 13, nHeads: 5, nKvHeads: 1, dQK: 24, dV: 24 }), tiles: ATTENTION_TILES },
  { name: 'NH5 NKV1 D24, 12x8 blocks', d: dims({ batch: 2, seq: 13, nHeads: 5, nKvHeads: 1, dQK: 24, dV: 24 }), tiles: { tx: 2, ty: 3 } },
  { name: 'NH4 NKV2 Dqk24 Dv16', d: dims({ batch: 2, seq: 13, nHeads: 4, nKvHeads: 2, dQK: 24, dV: 16 }), tiles: { tx: 8, ty: 4 } },
  { name: 'MLA-like NH4 NKV4 Dqk24 Dv16', d: dims({ batch: 2, seq: 13, nHeads: 4, nKvHeads: 4, dQK: 24, dV: 16 }), tiles: { tx: 8, ty: 4 } },
  { name: 'sliding window 4, 12x8 blocks', d: dims({ batch: 2, seq: 13, nHeads: 4, nKvHeads: 2, dQK: 24, dV: 16, window: 4 }), tiles: { tx: 2, ty: 3 } },
  { name: 'GQA rep 4, NH8 NKV2 Dqk24 Dv16, seq 21', d: dims({ batch: 2, seq: 21, nHeads: 8, nKvHeads: 2, dQK: 24, dV: 16 }), tiles: { tx: 2, ty: 3 } },
  { name: 'GQA rep 3, window 5, NH6 NKV2', d: dims({ batch: 1, seq: 17, nHeads: 6, nKvHeads: 2, dQK: 8, dV: 12, window: 5 }), tiles: { tx: 2, ty: 2 } },
  // DeepSeek-V3's MLA head dims (nope 128 + rope 64 = 192 for q.k, 128 for v), one kv head per query head
  { name: 'MLA dims Dqk192 Dv128, NH2', d: dims({ batch: 1, seq: 11, nHeads: 2, nKvHeads: 2, dQK: 192, dV: 128 }), tiles: { tx: 12, ty: 2 } },
  { name: 'seq64 D64, 16x16 blocks', d: dims({ batch: 2, seq: 64, nHeads: 2, nKvHeads: 1, dQK: 64, dV: 64 }), tiles: { tx: 4, ty: 4 } },
  // window 18 puts a query block exactly at the last one that sees key block 0 (q 32 - k 15 = 17 < 18), and skips leading key blocks.
  { name: 'seq64 D64, window 18, 16x16 blocks', d: dims({ batch: 1, seq: 64, nHeads: 2, nKvHeads: 1, dQK: 64, dV: 64, window: 18 }), tiles: { tx: 4, ty: 4 } },
];

describe('attention', () => {
  for (const [ci, c] of cases.entries()) {
    const d = c.d;
    const T = d.batch * d.seq;
    const nq = T * d.nHeads * d.dQK, nk = T * d.nKvHeads * d.dQK, nv = T * d.nKvHeads * d.dV, no = T * d.nHeads * d.dV;
    const q = randn(nq, 10 + ci), k = randn(nk, 20 + ci), v = randn(nv, 30 + ci), dO = randn(no, 40 + ci);
    const oRef = new Float64Array(no), lseRef = new Float64Array(T * d.nHeads);
    ref.attentionForward(oRef, lseRef, q, k, v, d);

    it(`forward matches the oracle (${c.name})`, async () => {
      const gpu = await testGpu();
      const o = poisoned(gpu, no), lse = poisoned(gpu, T * d.nHeads);
      await run(gpu, (enc) => gpuOp.attentionForward(enc, o, lse, f32Buffer(gpu, q), f32Buffer(gpu, k), f32Buffer(gpu, v), d, c.tiles));
      expectClose(await readF32(gpu, o), oRef, 1e-5, 1e-4, 'o');
      expectClose(await readF32(gpu, lse), lseRef, 1e-5, 1e-5, 'lse');
    });

    it(`backward matches the oracle (${c.name})`, async () => {
      const gpu = await testGpu();
      const dq = poisoned(gpu, nq), dk = poisoned(gpu, nk), dv = poisoned(gpu, nv), delta = poisoned(gpu, T * d.nHeads);
      const scratch = gpuOp.attentionBackwardScratch(d);
      expect(scratch).toBe(d.nHeads > d.nKvHeads ? no : 0);
      const dvPart = scratch > 0 ? poisoned(gpu, scratch) : null;
      const bufs = [dO, q, k, v, oRef, lseRef].map((a) => f32Buffer(gpu, a));
      await run(gpu, (enc) => gpuOp.attentionBackward(enc, dq, dk, dv, delta, bufs[0]!, bufs[1]!, bufs[2]!, bufs[3]!, bufs[4]!, bufs[5]!, d, c.tiles, dvPart));
      const w = { dq: new Float64Array(nq), dk: new Float64Array(nk), dv: new Float64Array(nv), delta: new Float64Array(T * d.nHeads) };
      ref.attentionBackward(w.dq, w.dk, w.dv, w.delta, dO, q, k, v, oRef, lseRef, d);
      expectClose(await readF32(gpu, delta), w.delta, 2e-5, 1e-4, 'delta');
      expectClose(await readF32(gpu, dv), w.dv, 2e-5, 1e-4, 'dv');
      expectClose(await readF32(gpu, dk), w.dk, 2e-5, 1e-4, 'dk');
      expectClose(await readF32(gpu, dq), w.dq, 2e-5, 1e-4, 'dq');
    });
  }

  it('launcher rejects bad dims', async () => {
    const gpu = await testGpu();
    const b = poisoned(gpu, 4);
    const d = dims({ batch: 1, seq: 4, nHeads: 3, nKvHeads: 2, dQK: 8, dV: 8 });
    await expect(run(gpu, (enc) => gpuOp.attentionForward(enc, b, b, b, b, b, d))).rejects.toThrow(/multiple/);
    const wide = dims({ batch: 1, seq: 4, nHeads: 1, nKvHeads: 1, dQK: 72, dV: 8 });
    await expect(run(gpu, (enc) => gpuOp.attentionForward(enc, b, b, b, b, b, wide, { tx: 4, ty: 4 }))).rejects.toThrow(/exceed/);
    // GQA backward without (or with too small) a dv-partials scratch
    const gqa = dims({ batch: 1, seq: 4, nHeads: 4, nKvHeads: 2, dQK: 8, dV: 8 });
    await expect(run(gpu, (enc) => gpuOp.attentionBackward(enc, b, b, b, b, b, b, b, b, b, b, gqa))).rejects.toThrow(/dv-partials scratch of 512 bytes, got none/);
    await expect(run(gpu, (enc) => gpuOp.attentionBackward(enc, b, b, b, b, b, b, b, b, b, b, gqa, undefined, b))).rejects.toThrow(/512 bytes, got 16/);
  });

  for (const window of [null, 2]) {
    it(`oracle backward agrees with finite differences (window ${window})`, () => {
      const d = dims({ batch: 2, seq: 5, nHeads: 4, nKvHeads: 2, dQK: 3, dV: 2, window });
      d.scale = 0.7;
      const T = 10;
      const q = Float64Array.from(randn(T * 4 * 3, 50)), k = Float64Array.from(randn(T * 2 * 3, 51)), v = Float64Array.from(randn(T * 2 * 2, 52));
      const w = Float64Array.from(randn(T * 4 * 2, 53));
      const loss = (qq: Float64Array, kk: Float64Array, vv: Float64Array) => {
        const o = new Float64Array(T * 4 * 2), lse = new Float64Array(T * 4);
        ref.attentionForward(o, lse, qq, kk, vv, d);
        return o.reduce((a, x, i) => a + x * w[i]!, 0);
      };
      const o = new Float64Array(T * 4 * 2), lse = new Float64Array(T * 4);
      ref.attentionForward(o, lse, q, k, v, d);
      const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length), delta = new Float64Array(T * 4);
      ref.attentionBackward(dq, dk, dv, delta, w, q, k, v, o, lse, d);
      for (const i of [0, 4, 13, 29, 47, 61, 100, 119]) expectClose([dq[i]!], [finiteDiff((x) => loss(x, k, v), q, i)], 1e-7, 1e-6, `dq[${i}]`);
      for (const i of [0, 5, 17, 31, 44, 59]) expectClose([dk[i]!], [finiteDiff((x) => loss(q, x, v), k, i)], 1e-7, 1e-6, `dk[${i}]`);
      for (const i of [0, 3, 11, 22, 39]) expectClose([dv[i]!], [finiteDiff((x) => loss(q, k, x), v, i)], 1e-7, 1e-6, `dv[${i}]`);
    });
  }

  it('oracle: window 1 returns each token its own value; row 0 always does', () => {
    const d = dims({ batch: 2, seq: 4, nHeads: 2, nKvHeads: 1, dQK: 3, dV: 2, window: 1 });
    const q = randn(8 * 2 * 3, 60), k = randn(8 * 3, 61), v = randn(8 * 2, 62);
    const o = new Float64Array(8 * 2 * 2), lse = new Float64Array(16);
    ref.attentionForward(o, lse, q, k, v, d);
    for (let t = 0; t < 8; t++) for (let h = 0; h < 2; h++) expectClose(o.subarray((t * 2 + h) * 2, (t * 2 + h) * 2 + 2), v.subarray(t * 2, t * 2 + 2), 1e-12, 1e-12, 'o');
    ref.attentionForward(o, lse, q, k, v, { ...d, window: null });
    expectClose(o.subarray(0, 2), v.subarray(0, 2), 1e-12, 1e-12, 'o[0]');
    expectClose(o.subarray(4 * 4, 4 * 4 + 2), v.subarray(8, 10), 1e-12, 1e-12, 'o[sample 1, 0]');
  });
});
