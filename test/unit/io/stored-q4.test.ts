// Stored 4-bit checkpoint metadata (quant/stored-q4.ts) and the U32 dtype its buffers use: read back from real
// safetensors files written in memory; missing, unknown or disagreeing metadata is refused with the file named.
import { describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../../src/engine/io/checkpoint.ts';
import { decodeInt } from '../../../src/engine/io/dtype.ts';
import { encodeSafetensors } from '../../../src/engine/io/safetensors-write.ts';
import { memorySink } from '../../../src/engine/io/sink.ts';
import { detectExpertLayout } from '../../../src/engine/model/tensors.ts';
import { storedQ4Info, storedQ4Metadata } from '../../../src/engine/quant/stored-q4.ts';

const words = new Uint32Array([0x87654321, 0xffffffff, 7]);
const q4 = { name: 'model.layers.0.mlp.experts.gate_up.q4', dtype: 'U32' as const, shape: [3], data: new Uint8Array(words.buffer) };
const norm = { name: 'model.norm.weight', dtype: 'BF16' as const, shape: [2], data: new Uint8Array(4) };

async function open(shards: Array<{ meta: Record<string, string> | undefined; tensors: (typeof q4 | typeof norm)[] }>) {
  const sink = memorySink();
  const map: Record<string, string> = {};
  for (const [i, s] of shards.entries()) {
    await sink.write(`s${i}.safetensors`, encodeSafetensors(s.tensors, s.meta));
    for (const t of s.tensors) map[t.name] = `s${i}.safetensors`;
  }
  await sink.write('model.safetensors.index.json', [new TextEncoder().encode(JSON.stringify({ weight_map: map }))]);
  return openCheckpoint(sink.folder());
}

describe('stored 4-bit metadata', () => {
  it('round-trips group size and layout; U32 words come back exactly', async () => {
    const meta = storedQ4Metadata({ groupSize: 64, expertLayout: 'fused' });
    const ck = await open([{ meta, tensors: [q4] }, { meta, tensors: [norm] }]);
    expect(storedQ4Info(ck)).toEqual({ groupSize: 64, expertLayout: 'fused' });
    const got = await ck.readTensor(q4.name);
    expect(new Uint32Array(got.slice().buffer)).toEqual(words);
    expect(decodeInt('U32', got)).toEqual([0x87654321, 0xffffffff, 7]);
    expect(() => detectExpertLayout(ck.tensors.keys())).toThrow(/stored 4-bit checkpoint/);
  });

  it('is null for a plain checkpoint and refuses bad or disagreeing metadata', async () => {
    expect(storedQ4Info(await open([{ meta: { format: 'pt' }, tensors: [norm] }]))).toBeNull();
    const meta = storedQ4Metadata({ groupSize: 128, expertLayout: 'per_expert' });
    await expect(open([{ meta: undefined, tensors: [q4] }]).then(storedQ4Info)).rejects.toThrow(/s0\.safetensors: .*usaf_format/);
    await expect(open([{ meta: { ...meta, usaf_group_size: '12' }, tensors: [q4] }]).then(storedQ4Info)).rejects.toThrow(/group size "12"/);
    await expect(open([{ meta: { ...meta, usaf_quantizer: 'rtn' }, tensors: [q4] }]).then(storedQ4Info)).rejects.toThrow(/quantizer "rtn"/);
    await expect(open([{ meta, tensors: [q4] }, { meta: { ...meta, usaf_group_size: '64' }, tensors: [norm] }]).then(storedQ4Info)).rejects.toThrow(/disagree/);
  });
});
