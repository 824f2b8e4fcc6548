// The GEMM launchers' memory bytes (ops/matmul.ts gemmBytes) against arithmetic written here: an operand counted once
// only where its re-reads hit the cache (it fits GEMM_CACHE_BYTES, or its sharers are in flight together), and the grid
// order the launcher picks. Shapes: the Qwen3-30B-A3B LM head (V 151,936, H 2048) on 1024 tokens, 128 x 128 tiles.
import { describe, expect, it } from 'vitest';
import { GEMM_CACHE_BYTES, GEMM_WAVE, gemmBytes, type Gemm, type MatmulTiling } from '../../../src/engine/ops/matmul.ts';

const T128: MatmulTiling = { TX: 16, TY: 16, RM: 8, RN: 8, BK: 8, DB: true, SG: false };
const V = 151_936, H = 2048, T = 1024;
const base = { lda: 0, ldb: 0, ldc: 0, aOff: 0, bOff: 0, cOff: 0, biasOff: 0, aT: false, accumulate: false, hasBias: false };
const W = 2 * V * H; // bf16 head weight: 622 MB, far above the cache

describe('gemmBytes', () => {
  it('assumes a cache below every large GPU\'s (50 MB L2 on H100/H200) and a wave of at most one workgroup per SM', () => {
    expect(GEMM_CACHE_BYTES).toBeLessThanOrEqual(50e6);
    expect(GEMM_WAVE).toBeLessThanOrEqual(132);
  });

  it('small operands: every input read once, the output written once (read too when accumulating)', () => {
    const g: Gemm = { ...base, m: T, n: 4096, k: H, bT: true, bBf16: true, accumulate: true, hasBias: true };
    const once = 4 * T * H + 2 * H * 4096 + 2 * 4 * T * 4096 + 4 * 4096;
    expect(gemmBytes(g, T128, false)).toBe(once);
    expect(gemmBytes(g, T128, true)).toBe(once);
  });

  it('the head\'s logits h W^T: W read once per row of tiles on the default grid, once in all with row tiles first', () => {
    const g: Gemm = { ...base, m: T, n: V, k: H, bT: true, bBf16: true };
    const rest = 4 * T * H + 4 * T * V;
    expect(gemmBytes(g, T128, false)).toBe(rest + (T / 128) * W); // 1187 column tiles a row: W evicted between rows
    expect(gemmBytes(g, T128, true)).toBe(rest + W); // the 8 row tiles of a W strip are consecutive workgroups
    // 103 rows (one row of tiles): W once either way
    const g103 = { ...g, m: 103 };
    expect(gemmBytes(g103, T128, false)).toBe(4 * 103 * H + W + 4 * 103 * V);
  });

  it('the head\'s dh = dlogits W: a grid of 16 x 8 workgroups is one wave, each operand read once', () => {
    const g: Gemm = { ...base, m: T, n: H, k: V, bT: false, bBf16: true };
    expect(gemmBytes(g, T128, false)).toBe(4 * T * V + W + 4 * T * H);
    // 4096 tokens: 32 row tiles of 16 workgroups, 8 rows a wave: W read 4 times
    const g4 = { ...g, m: 4096 };
    expect(gemmBytes(g4, T128, false)).toBe(4 * 4096 * V + 4 * W + 4 * 4096 * H);
  });
});
