// rope: tables vs transformers' formulas, oracle vs a transcription of transformers' apply_rotary_pos_emb(_interleave),
// GPU forward/backward (in place, strided, sentinels around the rows) vs the oracle, oracle backward vs finite differences.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/rope.ts';
import { ropeTables, type RopeDims, type RopeTableScaling } from '../../../src/engine/ops/rope.ts';
import * as ref from '../../../src/engine/ref/rope.ts';
import { randint, randn } from '../../helpers/random.ts';
import { expectClose, finiteDiff } from '../../helpers/compare.ts';
import { f32Buffer, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';

const yarn = (over: Partial<RopeTableScaling>): RopeTableScaling => ({
  type: 'yarn', factor: 40, originalMaxPos: 4096, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 0, ...over,
});

/** transformers, literally: cos/sin = cat(freqs, freqs) * attention_scaling; interleave = view(d/2, 2).transpose; x*cos + rotate_half(x)*sin. */
function hfRotate(slice: number[], pos: number, invFreq: Float64Array, af: number, interleave: boolean): number[] {
  const d = slice.length, h = d / 2;
  const v = interleave ? [...slice.filter((_, i) => i % 2 === 0), ...slice.filter((_, i) => i % 2 === 1)] : slice;
  const rotated = [...v.slice(h).map((a) => -a), ...v.slice(0, h)];
  return v.map((a, i) => a * Math.cos(pos * invFreq[i % h]!) * af + rotated[i]! * Math.sin(pos * invFreq[i % h]!) * af);
}

describe('ropeTables', () => {
  it('default and linear follow theta^(-2i/d)', () => {
    const t = ropeTables(10000, 24, 5);
    for (let i = 0; i < 12; i++) expect(t.invFreq[i]).toBeCloseTo(1 / Math.pow(10000, (2 * i) / 24), 14);
    expect(t.cos[3 * 12 + 5]).toBeCloseTo(Math.cos(3 * t.invFreq[5]!), 14);
    const lin = ropeTables(10000, 24, 5, { ...yarn({}), type: 'linear', factor: 4 });
    for (let i = 0; i < 12; i++) expect(lin.invFreq[i]).toBeCloseTo(t.invFreq[i]! / 4, 14);
    expect(lin.attentionFactor).toBe(1);
    const dyn = ropeTables(10000, 24, 100, { ...yarn({}), type: 'dynamic', factor: 4, originalMaxPos: 256 });
    expect(Array.from(dyn.invFreq)).toEqual(Array.from(t.invFreq));
  });

  it('YaRN: DeepSeek-V3 ramp bounds and attention factors', () => {
    // rope dim 64, theta 1e4, factor 40, original 4096: transformers finds low = 10, high = 23.
    const ds = ropeTables(10000, 64, 3, yarn({ mscale: 1, mscaleAllDim: 1 }));
    expect(ds.yarnRange).toEqual([10, 23]);
    expect(ds.attentionFactor).toBe(1); // mscale / mscale_all_dim cancel
    const plain = ropeTables(10000, 64, 3);
    for (let i = 0; i < 32; i++) {
      const r = Math.min(1, Math.max(0, (i - 10) / 13));
      expect(ds.invFreq[i]).toBeCloseTo((plain.invFreq[i]! / 40) * r + plain.invFreq[i]! * (1 - r), 15);
    }
    expect(ds.invFreq[3]).toBe(plain.invFreq[3]); // high frequencies kept
    expect(ds.invFreq[30]).toBeCloseTo(plain.invFreq[30]! / 40, 16); // low frequencies interpolated
    expect(ropeTables(10000, 64, 3, yarn({ mscale: 1, mscaleAllDim: 0 })).attentionFactor).toBeCloseTo(0.1 * Math.log(40) + 1, 14);
    expect(ropeTables(10000, 64, 3, yarn({ mscale: 0.707, mscaleAllDim: 1 })).attentionFactor).toBeCloseTo((0.0707 * Math.log(40) + 1) / (0.1 * Math.log(40) + 1), 14);
    const t = ropeTables(10000, 64, 3, yarn({ attentionFactor: 1.25 }));
    expect(t.cos[2 * 32 + 1]).toBeCloseTo(Math.cos(2 * t.invFreq[1]!) * 1.25, 14);
    expect(ropeTables(10000, 64, 3, yarn({ truncate: false })).yarnRange![0]).toBeCloseTo((64 * Math.log(4096 / (64 * Math.PI))) / (2 * Math.log(10000)), 12);
  });
});

describe('rope', () => {
  const batch = 2, seq = 13, T = batch * seq, nHeads = 5, headDim = 24, maxPos = 40;
  const seqPos = Uint32Array.from({ length: T }, (_, t) => t % seq);
  const randPos = randint(T, maxPos, 7);
  const cases: { name: string; d: RopeDims; pos: Uint32Array; scaling: RopeTableScaling | null }[] = [
    { name: 'halves, whole head', d: { tokens: T, nHeads, headDim, rotDim: 24, interleave: false }, pos: seqPos, scaling: null },
    { name: 'MLA interleaved, dims 16..24', d: { tokens: T, nHeads, headDim, rotStart: 16, rotDim: 8, interleave: true }, pos: randPos, scaling: null },
    {
      name: 'partial halves, strided with offset, YaRN',
      d: { tokens: T, nHeads, headDim, rotDim: 16, interleave: false, tokenStride: nHeads * headDim + 7, offset: 3 },
      pos: randPos,
      scaling: yarn({ factor: 4, originalMaxPos: 16 }),
    },
    { name: 'interleaved whole head, YaRN', d: { tokens: T, nHeads, headDim, rotDim: 24, interleave: true }, pos: seqPos, scaling: yarn({ factor: 4, originalMaxPos: 16 }) },
  ];
  const size = (d: RopeDims) => (d.offset ?? 0) + T * (d.tokenStride ?? nHeads * headDim) + 5;

  for (const c of cases) {
    const tab = ropeTables(10000, c.d.rotDim, maxPos, c.scaling);

    it(`oracle equals transformers (${c.name})`, () => {
      const x = Float64Array.from(randn(size(c.d), 1));
      const y = x.slice();
      ref.ropeForward(y, c.pos, tab.cos, tab.sin, c.d);
      const stride = c.d.tokenStride ?? nHeads * headDim, r0 = c.d.rotStart ?? 0;
      const want = x.slice();
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < nHeads; h++) {
          const base = (c.d.offset ?? 0) + t * stride + h * headDim + r0;
          want.set(hfRotate(Array.from(x.subarray(base, base + c.d.rotDim)), c.pos[t]!, tab.invFreq, tab.attentionFactor, c.d.interleave), base);
        }
      }
      expectClose(y, want, 1e-12, 1e-12, 'rope');
    });

    it(`GPU forward and backward match the oracle (${c.name})`, async () => {
      const gpu = await testGpu();
      const x = randn(size(c.d), 2);
      const [pos, cosB, sinB] = [u32Buffer(gpu, c.pos), f32Buffer(gpu, tab.cos), f32Buffer(gpu, tab.sin)];
      const xb = f32Buffer(gpu, x);
      await run(gpu, (enc) => gpuOp.ropeForward(enc, xb, pos, cosB, sinB, c.d));
      const want = Float64Array.from(x);
      ref.ropeForward(want, c.pos, tab.cos, tab.sin, c.d);
      // Untouched elements (pass-through dims, stride gaps, sentinels around) must stay bit-identical.
      const got = await readF32(gpu, xb);
      expectClose(got, want, 2e-6, 1e-5, 'y');
      const changed = got.filter((v, i) => want[i] === x[i] && v !== x[i]).length;
      expect(changed, 'elements outside the rotated slices changed').toBe(0);
      const g = randn(size(c.d), 3);
      const gb = f32Buffer(gpu, g);
      await run(gpu, (enc) => gpuOp.ropeBackward(enc, gb, pos, cosB, sinB, c.d));
      const gw = Float64Array.from(g);
      ref.ropeBackward(gw, c.pos, tab.cos, tab.sin, c.d);
      expectClose(await readF32(gpu, gb), gw, 2e-6, 1e-5, 'dx');
      const moved = (await readF32(gpu, gb)).filter((v, i) => v !== g[i]).length;
      expect(moved).toBeGreaterThan(0);
    });
  }

  it('oracle backward is the transpose (finite differences) and undoes a unit-factor forward', () => {
    const d: RopeDims = { tokens: 3, nHeads: 2, headDim: 10, rotStart: 2, rotDim: 6, interleave: true };
    const pos = [4, 0, 9];
    const tab = ropeTables(500, 6, 12, yarn({ factor: 3, originalMaxPos: 4 }));
    expect(tab.attentionFactor).not.toBe(1);
    const x = Float64Array.from(randn(60, 4));
    const w = Float64Array.from(randn(60, 5));
    const loss = (xx: Float64Array) => {
      const y = xx.slice();
      ref.ropeForward(y, pos, tab.cos, tab.sin, d);
      return y.reduce((a, v, i) => a + v * w[i]!, 0);
    };
    const g = w.slice();
    ref.ropeBackward(g, pos, tab.cos, tab.sin, d);
    for (const i of [0, 2, 3, 7, 12, 15, 27, 41, 59]) expectClose([g[i]!], [finiteDiff(loss, x, i)], 1e-8, 1e-7, `dx[${i}]`);
    const plain = ropeTables(500, 6, 12);
    const y = x.slice();
    ref.ropeForward(y, pos, plain.cos, plain.sin, d);
    ref.ropeBackward(y, pos, plain.cos, plain.sin, d);
    expectClose(y, x, 1e-12, 1e-12, 'inverse');
  });
});
