// Attention of new tokens over a KV cache (generation). Same signature as ref/attention_decode.ts: output, inputs, dims.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import src from '../../../shaders/attention_decode.wgsl?raw';

/**
 * q [T, nHeads, dQK] holds T new tokens at positions pos0..pos0+T-1; the caches k [P, nKvHeads, dQK], v [P, nKvHeads, dV]
 * hold positions 0..pos0+T-1 (the new tokens' own keys included). Head h reads kv head floor(h / (nHeads / nKvHeads)).
 * Query i sees key j iff j <= pos0 + i and (window === null or pos0 + i - j < window). o [T, nHeads, dV].
 */
export interface DecodeAttentionDims {
  tokens: number;
  pos0: number;
  nHeads: number;
  nKvHeads: number;
  dQK: number;
  dV: number;
  scale: number;
  window: number | null;
}

const WG = 64;
const MAXC = 8;

export function decodeAttentionParams(d: DecodeAttentionDims): ArrayBuffer {
  const b = new ArrayBuffer(32);
  const u = new Uint32Array(b);
  u.set([d.tokens, d.pos0, d.nHeads, d.nKvHeads]);
  new Float32Array(b)[4] = d.scale;
  u[5] = d.window ?? 0;
  return b;
}

/** o [T, NH, dV] <- q [T, NH, dQK] over the cached k [P, NKV, dQK], v [P, NKV, dV] (positions 0..pos0+T-1). */
export function decodeAttention(enc: Encoder, o: GPUBuffer, q: GPUBuffer, k: GPUBuffer, v: GPUBuffer, d: DecodeAttentionDims): void {
  const bad = (m: string) => new Error(`decode attention: ${m}`);
  if (d.nHeads % d.nKvHeads) throw bad(`nHeads ${d.nHeads} is not a multiple of nKvHeads ${d.nKvHeads}`);
  if (d.window !== null && !(d.window >= 1)) throw bad(`window must be >= 1 or null, got ${d.window}`);
  if (d.dV > WG * MAXC) throw bad(`value width ${d.dV} exceeds ${WG * MAXC}`);
  if (d.tokens < 1 || d.tokens > 65535 || d.nHeads > 65535) throw bad(`${d.tokens} tokens x ${d.nHeads} heads is out of range`);
  const kf = kernel(enc.gpu, { name: 'attention.decode', code: src, entryPoint: 'decode', constants: { WG, DQK: d.dQK, DV: d.dV } });
  // query i scores its visible keys (all pos0 + i + 1, or the window): QK and PV products; every cached K/V read once
  let pairs = 0;
  for (let i = 0; i < d.tokens; i++) pairs += Math.min(d.pos0 + i + 1, d.window ?? Infinity);
  const P = d.pos0 + d.tokens;
  const cost = { flops: 2 * pairs * d.nHeads * (d.dQK + d.dV), bytes: 4 * (d.tokens * d.nHeads * (d.dQK + d.dV) + P * d.nKvHeads * (d.dQK + d.dV)) };
  kf.dispatch(enc, [q, k, v, o], [d.tokens, d.nHeads], decodeAttentionParams(d), cost);
}
