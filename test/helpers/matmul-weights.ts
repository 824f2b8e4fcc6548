// Seeded weights for the matmul/embedding/xent tests: the same values as f32 and as packed bf16 words (bf16-exact both ways).
// Shared by the matmul, embedding and xent GPU tests; values come from the seeded randn of random.ts.
import { decodeBf16, encodeBf16, packBf16Pairs } from '../../src/engine/io/dtype.ts';
import { randn } from './random.ts';

export interface TestWeights {
  /** Values rounded to bf16, as f32 (what both the f32 and the bf16 kernels see). */
  values: Float32Array;
  /** The same values as WGSL `array<u32>` words, two bf16 a word, element 2i in the low half. */
  packed: Uint32Array;
}

export function testWeights(n: number, seed: number, scale = 1): TestWeights {
  const bytes = encodeBf16(randn(n, seed, scale));
  return { values: decodeBf16(bytes), packed: packBf16Pairs(bytes) };
}
