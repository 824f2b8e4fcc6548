// Generation on every family fixture: the prefill through the KV cache (in steps of 7 tokens) gives transformers'
// logits (rel_err 1e-3, as parity.test.ts); greedy decoding equals the argmax continuation of the float64 oracle
// (ref/model.ts, the whole sequence recomputed per token), which itself gives transformers' logits; stops at EOS, a stop string and length.
import { afterAll, describe, expect, it } from 'vitest';
import { decodeF32, decodeInt } from '../../src/engine/io/dtype.ts';
import { openCheckpoint } from '../../src/engine/io/checkpoint.ts';
import { openSafetensors } from '../../src/engine/io/safetensors.ts';
import { FAMILIES } from '../../src/engine/model/families/index.ts';
import { refForward, refTensorsFromCheckpoint } from '../../src/engine/ref/model.ts';
import { Generator } from '../../src/engine/generate/index.ts';
import { argmax } from '../../src/engine/generate/sample.ts';
import { relErr } from '../../src/cli/commands/parity.ts';
import { fileSource } from '../../src/node/file-source.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { testGpu } from '../helpers/gpu.ts';

const TOL = 1e-3;
const NEW = 6;
const greedy = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 };

async function reference(fix: string): Promise<{ ids: number[][]; logits: Float32Array; seq: number }> {
  const ref = await openSafetensors(fileSource(`${fix}/reference.safetensors`));
  const info = ref.tensors.get('input_ids')!;
  const [batch, seq] = info.shape as [number, number];
  const flat = Array.from(decodeInt(info.dtype, await ref.readTensor('input_ids')) as ArrayLike<number>, Number);
  const logits = decodeF32(ref.tensors.get('logits')!.dtype, await ref.readTensor('logits'));
  await ref.source.close?.();
  return { ids: Array.from({ length: batch }, (_, b) => flat.slice(b * seq, (b + 1) * seq)), logits, seq };
}

const open: Generator[] = [];
afterAll(() => open.forEach((g) => g.destroy()));

describe.each(FAMILIES.map((f) => f.arch))('generate on the %s fixture', (arch) => {
  const fix = `test/fixtures/${arch}`;

  it('prefill logits = transformers; greedy tokens = the float64 oracle argmax continuation; EOS and length stop', async () => {
    const gpu = await testGpu();
    const { ids, logits, seq } = await reference(fix);
    const gen = await Generator.open(gpu, nodeFolder(fix), { maxPositions: 64, chunk: 7 });
    open.push(gen);
    const V = gen.spec.vocab;
    for (const [b, sample] of ids.entries()) {
      const got = await gen.prefillLogits(sample);
      expect(relErr(got, logits.subarray(b * seq * V, (b + 1) * seq * V)), `sample ${b} logits rel_err`).toBeLessThanOrEqual(TOL);
    }

    const ckpt = await openCheckpoint(nodeFolder(fix));
    const tensors = await refTensorsFromCheckpoint(gen.spec, ckpt);
    await ckpt.close();
    // the oracle itself is transformers on this fixture
    const r0 = refForward(gen.spec, tensors, ids[0]!, 1, seq);
    expect(relErr(r0.logits!, logits.subarray(0, seq * V)), 'oracle logits rel_err').toBeLessThanOrEqual(TOL);

    const prompt = ids[0]!.slice(0, 12);
    const want: number[] = [];
    const seqIds = [...prompt];
    for (let i = 0; i < NEW; i++) {
      const r = refForward(gen.spec, tensors, seqIds, 1, seqIds.length);
      const last = r.logits!.subarray((seqIds.length - 1) * V);
      const top = argmax(last);
      const second = Math.max(...Array.from(last).filter((_, j) => j !== top));
      expect(last[top]! - second, `oracle margin at new token ${i}`).toBeGreaterThan(1e-3); // a tie would make the check luck
      want.push(top);
      seqIds.push(top);
    }
    const streamed: number[] = [];
    const res = await gen.generate({ ...greedy, maxNewTokens: NEW, promptIds: prompt, eosIds: [], onToken: (id) => streamed.push(id) });
    expect(res.tokens).toEqual(want);
    expect(streamed).toEqual(want);
    expect(res.stop).toBe('length');
    expect(res.tokS).toBeGreaterThan(0);
    expect(res.prefillTokS).toBeGreaterThan(0);

    const atEos = await gen.generate({ ...greedy, maxNewTokens: NEW, promptIds: prompt, eosIds: [want[2]!] });
    expect(atEos.tokens).toEqual(want.slice(0, want.indexOf(want[2]!) + 1));
    expect(atEos.stop).toBe('eos');

    // a stop string: the decoded new text contains it once the token whose text it is has come
    const decode = (t: readonly number[]) => t.map((i) => `<${i}>`).join('');
    const atStop = await gen.generate({ ...greedy, maxNewTokens: NEW, promptIds: prompt, eosIds: [], decode, stopStrings: [`<${want[3]}>`] });
    expect(atStop.tokens).toEqual(want.slice(0, want.indexOf(want[3]!) + 1));
    expect(atStop.stop).toBe('stop-string');
  });
});
