// The faithful-merge rule checked independently of the engine's merge code: every tensor of a merged checkpoint
// against the original, bf16(f32(original + d)) at the delta's entries, the original's bytes everywhere else.

import { expect } from 'vitest';
import type { Checkpoint } from '../../src/engine/io/checkpoint.ts';

/** bf16 bits of an f32 value, round to nearest even (written here, independent of the engine's encoder). */
export function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  return Math.floor((u + 0x7fff + ((u >>> 16) & 1)) / 65536) & 0xffff;
}

export const bf16Value = (bits: number): number => new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;

export type MergeEntries = ReadonlyMap<string, { indices: Uint32Array | null; values: Float32Array }>;

/** Checks `merged` against `original` under the merge rule; returns how many entries moved. */
export async function expectFaithfulMerge(original: Checkpoint, merged: Checkpoint, entries: MergeEntries): Promise<number> {
  expect([...merged.tensors.keys()].sort()).toEqual([...original.tensors.keys()].sort());
  let moved = 0;
  for (const [name, t] of original.tensors) {
    const m = merged.tensors.get(name)!;
    expect({ dtype: m.dtype, shape: m.shape }).toEqual({ dtype: t.dtype, shape: t.shape });
    const ob = await original.readTensor(name), mb = await merged.readTensor(name);
    const e = entries.get(name);
    if (!e) {
      if (!Buffer.from(ob).equals(Buffer.from(mb))) throw new Error(`"${name}" is not in the delta but differs from the original`);
      continue;
    }
    expect(t.dtype).toBe('BF16');
    const o = new Uint16Array(ob.buffer, ob.byteOffset, ob.length / 2), g = new Uint16Array(mb.buffer, mb.byteOffset, mb.length / 2);
    const want = o.slice();
    for (let k = 0; k < e.values.length; k++) {
      const i = e.indices ? e.indices[k]! : k;
      want[i] = bf16Bits(Math.fround(bf16Value(o[i]!) + e.values[k]!));
    }
    for (let i = 0; i < o.length; i++) {
      if (want[i] !== g[i]) throw new Error(`"${name}" entry ${i}: merged ${g[i]!.toString(16)}, expected ${want[i]!.toString(16)} (original ${o[i]!.toString(16)})`);
      if (g[i] !== o[i]) moved++;
    }
  }
  return moved;
}
