// Host sampling: repetition penalty, temperature, top-k and top-p against hand-computed distributions; greedy; seeded
// draws reproducible and distributed as the computed distribution; settings checked in words.
import { describe, expect, it } from 'vitest';
import { applyRepetitionPenalty, argmax, checkSampleSettings, sampleDistribution, Sampler, type SampleSettings } from '../../../src/engine/generate/sample.ts';

const base: SampleSettings = { maxNewTokens: 4, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 7 };
const e = Math.E;
const close = (got: number[], want: number[]) => {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 12));
};

describe('sampling', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen tokens, once each', () => {
    const l = Float32Array.of(2, -1, 0.5, 3);
    applyRepetitionPenalty(l, [0, 1, 1, 0], 2);
    expect(Array.from(l)).toEqual([1, -2, 0.5, 3]);
  });

  it('temperature: softmax(logits / T)', () => {
    const d = sampleDistribution([2, 1, 0, -1], { temperature: 2, topK: 0, topP: 1 });
    const w = [e ** 1, e ** 0.5, 1, e ** -0.5];
    const z = w.reduce((a, b) => a + b);
    expect(d.ids).toEqual([0, 1, 2, 3]);
    close(d.probs, w.map((x) => x / z));
  });

  it('top-k keeps the k most likely, renormalized (sorted by logit, not by id)', () => {
    const d = sampleDistribution([0, 2, -1, 1], { temperature: 1, topK: 2, topP: 1 });
    expect(d.ids).toEqual([1, 3]);
    close(d.probs, [e / (e + 1), 1 / (e + 1)]);
  });

  it('top-p keeps the smallest prefix reaching p (the crossing token included)', () => {
    // softmax([2,1,0,-1]) = [.644, .237, .087, .032]: .644 < .7 <= .881
    const d = sampleDistribution([2, 1, 0, -1], { temperature: 1, topK: 0, topP: 0.7 });
    expect(d.ids).toEqual([0, 1]);
    close(d.probs, [e / (e + 1), 1 / (e + 1)]);
    expect(sampleDistribution([2, 1, 0, -1], { temperature: 1, topK: 0, topP: 0.5 }).ids).toEqual([0]);
    // top-k then top-p: over the top 3 [.665, .245, .090], p .9 takes two (.910), p .92 all three
    expect(sampleDistribution([2, 1, 0, -1], { temperature: 1, topK: 3, topP: 0.9 }).ids).toEqual([0, 1]);
    expect(sampleDistribution([2, 1, 0, -1], { temperature: 1, topK: 3, topP: 0.92 }).ids).toEqual([0, 1, 2]);
  });

  it('temperature 0 is argmax (first on ties), after the repetition penalty', () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
    const s = new Sampler({ ...base, temperature: 0, repetitionPenalty: 4 });
    expect(s.next(Float32Array.of(1, 3, 2), [])).toBe(1);
    expect(s.next(Float32Array.of(1, 3, 2), [1])).toBe(2); // 3 / 4 < 2
  });

  it('seeded draws: the same seed gives the same tokens, another seed others, frequencies follow the distribution', () => {
    const logits = [1.5, 1, 0.2, -0.5, 0.9];
    const s = { ...base, topK: 4, topP: 0.95, temperature: 0.8 };
    const draw = (seed: number, n: number) => {
      const smp = new Sampler({ ...s, seed });
      return Array.from({ length: n }, () => smp.next(Float32Array.from(logits), []));
    };
    expect(draw(11, 60)).toEqual(draw(11, 60));
    expect(draw(12, 60)).not.toEqual(draw(11, 60));
    const n = 40000;
    const counts = new Map<number, number>();
    for (const id of draw(3, n)) counts.set(id, (counts.get(id) ?? 0) + 1);
    const d = sampleDistribution(logits, s);
    expect([...counts.keys()].sort()).toEqual([...d.ids].sort());
    d.ids.forEach((id, i) => expect(Math.abs(counts.get(id)! / n - d.probs[i]!)).toBeLessThan(0.01));
  });

  it('settings out of range are named', () => {
    expect(checkSampleSettings(base)).toBeNull();
    expect(checkSampleSettings({ ...base, maxNewTokens: 0 })).toMatch(/max new tokens/);
    expect(checkSampleSettings({ ...base, temperature: -1 })).toMatch(/temperature/);
    expect(checkSampleSettings({ ...base, topK: 1.5 })).toMatch(/top-k/);
    expect(checkSampleSettings({ ...base, topP: 0 })).toMatch(/top-p/);
    expect(checkSampleSettings({ ...base, topP: 1.2 })).toMatch(/top-p/);
    expect(checkSampleSettings({ ...base, repetitionPenalty: 0 })).toMatch(/repetition penalty/);
    expect(checkSampleSettings({ ...base, seed: 0.5 })).toMatch(/seed/);
  });
});
