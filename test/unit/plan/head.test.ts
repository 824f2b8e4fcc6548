// The LM head's token chunk from the memory budget (plan/head.ts): the fewest chunks whose plan fits, never a binding
// over min(2 GiB, maxBinding), the default chunk without room (or without a budget); the plan counts the chunk's logits.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/engine/model/config.ts';
import { planMemory, type PlanSettings } from '../../../src/engine/plan/memory.ts';
import { chooseHeadRows, withHeadRows } from '../../../src/engine/plan/head.ts';
import { xentDefaultRows, xentMaxRows, xentTokenChunk } from '../../../src/engine/ops/xent.ts';
import { loadJson } from '../model/load.ts';

const spec = parseConfig(loadJson('./configs/Qwen3-30B-A3B.json'));
const V = spec.vocab; // 151,936
const s: PlanSettings = { trainFrom: 40, microbatch: 2, seq: 512, frac: 0.005, frozenCacheN: 0, quantizeExperts: { groupSize: 64 }, fusedExperts: true };
const work = (rows?: number) => planMemory(spec, { ...s, ...(rows !== undefined ? { headRows: rows } : {}) }).items.find((i) => i.label === 'xent.work')!.bytes;
const total = (rows?: number) => planMemory(spec, { ...s, ...(rows !== undefined ? { headRows: rows } : {}) }).peak; // what fits() compares

describe('the head\'s token chunk', () => {
  it('chunks: the default 2^24 logits (103 rows of 10 chunks at 1024 tokens), or any rows up to the 2 GiB binding', () => {
    expect(xentDefaultRows(V)).toBe(110);
    expect(xentTokenChunk(1024, V)).toBe(103);
    expect(xentTokenChunk(1024, V, 1024)).toBe(1024);
    expect(xentTokenChunk(1024, V, 600)).toBe(512); // 2 chunks of equal size
    expect(xentMaxRows(V)).toBe(Math.floor(2 ** 31 / (4 * (V + 1)))); // 3533
    expect(xentMaxRows(V, 2 ** 28)).toBe(Math.floor(2 ** 28 / (4 * (V + 1))));
    expect(xentTokenChunk(8192, V, 8192)).toBe(Math.ceil(8192 / Math.ceil(8192 / 3533))); // never over 2 GiB
  });

  it('the plan counts the chunk\'s logits [rows, V] f32 and a shift a row', () => {
    expect(work()).toBe(110 * (V + 1) * 4);
    expect(work(1024)).toBe(1024 * (V + 1) * 4);
    expect(total(1024) - total()).toBe((1024 - 110) * (V + 1) * 4);
  });

  it('picks the fewest chunks whose plan fits the budget, within maxBinding; the default without room or budget', () => {
    expect(chooseHeadRows(spec, s, Infinity)).toBe(1024);
    expect(withHeadRows(spec, s, 1e15).headRows).toBe(1024);
    // room for 512 rows (2 chunks) but not 1024
    const budget = total(512) + 1000;
    expect(planMemory(spec, { ...s, headRows: 1024 }).fits(budget)).toBe(false);
    expect(chooseHeadRows(spec, s, budget)).toBe(512);
    // the binding limit: 300 rows of logits at most, so 4 chunks of 256
    expect(chooseHeadRows(spec, s, Infinity, 300 * (V + 1) * 4)).toBe(256);
    // no room beyond the default plan: the default (and withHeadRows leaves s as it was)
    expect(chooseHeadRows(spec, s, total())).toBe(110);
    expect(withHeadRows(spec, s, total())).toBe(s);
    expect(withHeadRows(spec, s, undefined)).toBe(s);
  });
});
