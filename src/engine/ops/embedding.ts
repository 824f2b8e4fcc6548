// Embedding lookup launcher. Same signature as ref/embedding.ts: outputs, inputs, then dimensions.
// out f32 [tokens, hidden] = table [vocab, hidden] (bf16 packed or f32, at tableOffset elements) rows by u32 ids; id >= vocab -> NaN row.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { flatGrid } from './elementwise.ts';
import src from '../../../shaders/embedding.wgsl?raw';

export interface EmbeddingDims {
  tokens: number;
  hidden: number;
  vocab: number;
  tableDtype: 'bf16' | 'f32';
  /** Element offset of the table inside its buffer. */
  tableOffset?: number;
}

const WG = 256;

/** The `params` uniform of shaders/embedding.wgsl. */
export function embeddingParams(d: EmbeddingDims): Uint32Array {
  return Uint32Array.of(d.tokens, d.hidden, d.vocab, d.tableOffset ?? 0);
}

/** out [tokens, hidden] = table [vocab, hidden] [ids [tokens], :]   (NaN rows for ids >= vocab) */
export function embeddingForward(enc: Encoder, out: GPUBuffer, ids: GPUBuffer, table: GPUBuffer, d: EmbeddingDims): void {
  const n = d.tokens * d.hidden;
  const end = (d.tableOffset ?? 0) + d.vocab * d.hidden;
  const tableBytes = d.tableDtype === 'bf16' ? Math.ceil(end / 2) * 4 : end * 4;
  if (table.size < tableBytes) throw new RangeError(`embedding: table holds ${table.size} bytes, needs ${tableBytes}`);
  if (out.size < n * 4 || ids.size < d.tokens * 4) throw new RangeError('embedding: out or ids too small for the token count');
  const k = kernel(enc.gpu, { name: 'embedding.forward', code: src, entryPoint: 'forward', constants: { WG, TABLE_BF16: d.tableDtype === 'bf16' ? 1 : 0 } });
  // ids read, one table row per token read, out written
  const cost = { flops: 0, bytes: 4 * d.tokens + n * (d.tableDtype === 'bf16' ? 2 : 4) + 4 * n };
  k.dispatch(enc, [ids, table, out], flatGrid(Math.ceil(n / WG)), embeddingParams(d), cost);
}
