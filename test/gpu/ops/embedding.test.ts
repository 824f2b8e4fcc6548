// embedding: GPU lookup (bf16 and f32 tables, odd offsets, out-of-range ids -> NaN rows) vs the float64 oracle, bit-exact.
import { describe, expect, it } from 'vitest';
import * as gpuOp from '../../../src/engine/ops/embedding.ts';
import * as ref from '../../../src/engine/ref/embedding.ts';
import { randint } from '../../helpers/random.ts';
import { expectClose } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu, u32Buffer } from '../../helpers/gpu.ts';
import { testWeights } from '../../helpers/matmul-weights.ts';

describe('embedding', () => {
  const tokens = 26, hidden = 80, vocab = 211, off = 3;
  const ids = randint(tokens, vocab, 1);
  ids[4] = vocab - 1;
  ids[5] = 0;
  ids[9] = vocab; // out of range
  ids[17] = 0xffffffff; // out of range
  const w = testWeights(off + vocab * hidden + 1, 2);

  for (const tableDtype of ['bf16', 'f32'] as const) {
    it(`forward, ${tableDtype} table at offset ${off}`, async () => {
      const gpu = await testGpu();
      const d = { tokens, hidden, vocab, tableDtype, tableOffset: off };
      const out = f32Buffer(gpu, new Float32Array(tokens * hidden).fill(12345));
      const table = tableDtype === 'bf16' ? u32Buffer(gpu, w.packed) : f32Buffer(gpu, w.values);
      await run(gpu, (enc) => gpuOp.embeddingForward(enc, out, u32Buffer(gpu, ids), table, d));
      const want = new Float64Array(tokens * hidden);
      ref.embeddingForward(want, ids, w.values, d);
      const got = await readF32(gpu, out);
      for (const t of [9, 17]) {
        expect(got.subarray(t * hidden, (t + 1) * hidden).every(Number.isNaN), `row ${t} (bad id) is NaN`).toBe(true);
        got.fill(0, t * hidden, (t + 1) * hidden), want.fill(0, t * hidden, (t + 1) * hidden);
      }
      expectClose(got, want, 0, 0, 'out');
    });
  }

  it('a poisoned output is fully written', async () => {
    const gpu = await testGpu();
    const d = { tokens: 13, hidden, vocab, tableDtype: 'bf16' as const };
    const out = poisoned(gpu, 13 * hidden);
    await run(gpu, (enc) => gpuOp.embeddingForward(enc, out, u32Buffer(gpu, randint(13, vocab, 3)), u32Buffer(gpu, w.packed), d));
    expect((await readF32(gpu, out)).every(Number.isFinite)).toBe(true);
  });
});
