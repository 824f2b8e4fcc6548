// Attention over a KV cache: GPU vs the float64 oracle on random inputs (outputs poisoned), for prefill (pos0 0, many
// queries), single-token decode deep into the cache (several key chunks), GQA, MLA-like widths and a sliding window;
// the oracle at pos0 0 equals the causal attention oracle (ref/attention.ts) on the same tokens.
import { describe, expect, it } from 'vitest';
import { decodeAttention, type DecodeAttentionDims } from '../../../src/engine/ops/attention_decode.ts';
import * as ref from '../../../src/engine/ref/attention_decode.ts';
import { attentionForward } from '../../../src/engine/ref/attention.ts';
import { randn } from '../../helpers/random.ts';
import { expectClose } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu } from '../../helpers/gpu.ts';

const dims = (o: Omit<DecodeAttentionDims, 'scale' | 'window'> & { window?: number | null }): DecodeAttentionDims => ({ scale: 1 / Math.sqrt(o.dQK), window: null, ...o });

const cases: { name: string; d: DecodeAttentionDims }[] = [
  { name: 'prefill 13 tokens, NH4 NKV2 D16', d: dims({ tokens: 13, pos0: 0, nHeads: 4, nKvHeads: 2, dQK: 16, dV: 16 }) },
  { name: 'decode 1 token at 150 (3 key chunks), NH4 NKV1 D24', d: dims({ tokens: 1, pos0: 150, nHeads: 4, nKvHeads: 1, dQK: 24, dV: 24 }) },
  { name: 'chunk of 5 at 61 (crosses a key chunk), MLA-like Dqk24 Dv16 Dv', d: dims({ tokens: 5, pos0: 61, nHeads: 3, nKvHeads: 3, dQK: 24, dV: 16 }) },
  { name: 'sliding window 7, 2 tokens at 90', d: dims({ tokens: 2, pos0: 90, nHeads: 2, nKvHeads: 2, dQK: 16, dV: 16, window: 7 }) },
  { name: 'value width 130 (3 dims per thread)', d: dims({ tokens: 2, pos0: 3, nHeads: 2, nKvHeads: 1, dQK: 8, dV: 130 }) },
];

describe('decode attention', () => {
  for (const [ci, c] of cases.entries()) {
    it(`matches the oracle (${c.name})`, async () => {
      const d = c.d;
      const P = d.pos0 + d.tokens + 3; // cache rows past the last position hold garbage the kernel must not read
      const q = randn(d.tokens * d.nHeads * d.dQK, 100 + ci);
      const k = randn(P * d.nKvHeads * d.dQK, 200 + ci);
      const v = randn(P * d.nKvHeads * d.dV, 300 + ci);
      for (let x = (d.pos0 + d.tokens) * d.nKvHeads * d.dV; x < v.length; x++) v[x] = 1e6;
      const want = new Float64Array(d.tokens * d.nHeads * d.dV);
      ref.decodeAttention(want, q, k, v, d);
      const gpu = await testGpu();
      const o = poisoned(gpu, want.length);
      await run(gpu, (enc) => decodeAttention(enc, o, f32Buffer(gpu, q), f32Buffer(gpu, k), f32Buffer(gpu, v), d));
      expectClose(await readF32(gpu, o), want, 1e-5, 1e-4, 'o');
    });
  }

  it('oracle at pos0 0 is causal attention', () => {
    const d = dims({ tokens: 9, pos0: 0, nHeads: 4, nKvHeads: 2, dQK: 8, dV: 6, window: 4 });
    const q = randn(9 * 4 * 8, 1), k = randn(9 * 2 * 8, 2), v = randn(9 * 2 * 6, 3);
    const a = new Float64Array(9 * 4 * 6), b = new Float64Array(9 * 4 * 6);
    ref.decodeAttention(a, q, k, v, d);
    attentionForward(b, new Float64Array(9 * 4), q, k, v, { batch: 1, seq: 9, nHeads: 4, nKvHeads: 2, dQK: 8, dV: 6, scale: d.scale, window: 4 });
    expectClose(a, b, 1e-12, 1e-12, 'o');
  });

  it('launcher rejects bad dims', async () => {
    const gpu = await testGpu();
    const b = poisoned(gpu, 4);
    await expect(run(gpu, (enc) => decodeAttention(enc, b, b, b, b, dims({ tokens: 1, pos0: 0, nHeads: 3, nKvHeads: 2, dQK: 8, dV: 8 })))).rejects.toThrow(/multiple/);
  });
});
