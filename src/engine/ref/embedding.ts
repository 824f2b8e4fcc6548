// CPU float64 oracle of the embedding lookup (tests only). Same signature as ops/embedding.ts.
// The table is given as plain numbers (bf16 already decoded); ids >= vocab give NaN rows, as on the GPU.

import type { EmbeddingDims } from '../ops/embedding.ts';

/** out [tokens, hidden] = table [vocab, hidden] [ids [tokens], :] */
export function embeddingForward(out: Float64Array, ids: ArrayLike<number>, table: ArrayLike<number>, d: EmbeddingDims): void {
  const { tokens, hidden, vocab } = d;
  const off = d.tableOffset ?? 0;
  for (let t = 0; t < tokens; t++) {
    const id = ids[t]!;
    for (let h = 0; h < hidden; h++) out[t * hidden + h] = id < vocab ? table[off + id * hidden + h]! : NaN;
  }
}
