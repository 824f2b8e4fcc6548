// Synthetic benchmark models (src/cli/synthetic.ts): the named config cut to its top layers, and a checkpoint of random
// bf16 tensors under the spec's names (norms 1, other weights of magnitude 2^-7..2^-6, deterministic per name).
import { describe, expect, it } from 'vitest';
import { syntheticCheckpoint, syntheticSpec } from '../../../src/cli/synthetic.ts';
import { decodeF32 } from '../../../src/engine/io/dtype.ts';
import { allTensors } from '../../../src/engine/model/tensors.ts';
import { planMemory } from '../../../src/engine/plan/memory.ts';

describe('synthetic models', () => {
  it('qwen3-30b-a3b cut to 8 layers: the published shape; planned 4-bit training of all 8 layers', async () => {
    const spec = await syntheticSpec('qwen3-30b-a3b', 8);
    expect([spec.numLayers, spec.hidden, spec.moe.numExperts, spec.moe.topK, spec.moe.expertIntermediate, spec.vocab]).toEqual([8, 2048, 128, 8, 768, 151936]);
    const p = planMemory(spec, { trainFrom: 0, microbatch: 2, seq: 512, frac: 0.005, frozenCacheN: 0, quantizeExperts: { groupSize: 128 }, steps: 180, reselectEvery: 0 });
    console.log(`synthetic Qwen3-30B-A3B top 8 layers, 2×512, 4-bit: planned peak ${(p.peak / 2 ** 30).toFixed(2)} GiB`);
    expect(p.peak).toBeGreaterThan(8 * 2 ** 30);
    await expect(syntheticSpec('no-such-model', 8)).rejects.toThrow(/synthetic/);
  });

  it('the checkpoint holds every tensor of the spec, random but deterministic, norms 1', async () => {
    const spec = await syntheticSpec('demo', 2);
    const ck = syntheticCheckpoint(spec);
    expect([...ck.tensors.keys()].sort()).toEqual(allTensors(spec).map((e) => e.name).sort());
    const norm = allTensors(spec).find((e) => e.role === 'input_norm')!.name;
    expect(Array.from(decodeF32('BF16', await ck.readTensor(norm))).every((v) => v === 1)).toBe(true);
    const gate = allTensors(spec).find((e) => e.role === 'expert.gate')!.name;
    const a = decodeF32('BF16', await ck.readTensor(gate));
    expect(a.length).toBe(128 * 256);
    expect(a.every((v) => Math.abs(v) >= 2 ** -7 && Math.abs(v) < 2 ** -6)).toBe(true);
    expect(a.filter((v) => v < 0).length / a.length).toBeGreaterThan(0.4);
    expect(Array.from(decodeF32('BF16', await ck.readTensor(gate)))).toEqual(Array.from(a));
  });
});
