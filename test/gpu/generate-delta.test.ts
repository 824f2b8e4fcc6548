// A run's delta overlaid without exporting (engine/generate/overlay.ts), qwen3_moe fixture, a synthetic v2 delta on the
// last layer (10 % of every expert tensor's entries and the whole router, d ~ 0.2·N(0,1)):
// - Hub folder + delta of an unquantized run = the model `usaf merge` makes of them (merge.ts mergeModel): the same
//   prefill logits, bit for bit, and the same greedy tokens;
// - stored 4-bit model (usaf import, G 32) + delta of a 4-bit run = the float64 oracle over the weights the run trained:
//   experts f32(dequantized + d) (dequantized on the CPU here, from the stored codes), the router bf16(original + d) as
//   merged, other layers' experts dequantized; and the model without the delta is far from it (the test can fail);
// - a delta refused in words: made for another model, or of an unquantized run over a 4-bit store.
import { afterAll, describe, expect, it } from 'vitest';
import { readSpec } from '../../src/cli/load-model.ts';
import { relErr } from '../../src/cli/commands/parity.ts';
import { memorySource, type Bytes } from '../../src/engine/io/byte-source.ts';
import { openCheckpoint, type Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { memorySink } from '../../src/engine/io/sink.ts';
import { withExpertLayout } from '../../src/engine/model/config.ts';
import type { ModelSpec } from '../../src/engine/model/spec.ts';
import { detectExpertLayout, layerTensors } from '../../src/engine/model/tensors.ts';
import { q4ExpertLayouts } from '../../src/engine/quant/format.ts';
import { dequantWords } from '../../src/engine/quant/hub-view.ts';
import { importQ4 } from '../../src/engine/quant/import-q4.ts';
import { q4ExpertNames } from '../../src/engine/quant/stored-q4.ts';
import { refForward, refTensorsFromCheckpoint } from '../../src/engine/ref/model.ts';
import { encodeDeltaV2, type DiffEntry } from '../../src/engine/train/delta-v2.ts';
import { fingerprintOf, readConfig } from '../../src/engine/train/fingerprint.ts';
import { mergeModel } from '../../src/engine/train/merge.ts';
import { Generator } from '../../src/engine/generate/index.ts';
import { nodeFileSink } from '../../src/node/file-sink.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { testGpu } from '../helpers/gpu.ts';
import { rng, randn } from '../helpers/random.ts';
import { tempFolder } from '../helpers/train-io.ts';

const FIX = 'test/fixtures/qwen3_moe';
const G = 32;
const TOL = 1e-3;
const PROMPT = [5, 77, 301, 12, 9, 480, 33, 250, 7, 64];
const greedy = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0, maxNewTokens: 5, eosIds: [] as number[] };
const cleanup: (() => Promise<void> | void)[] = [];
afterAll(async () => { for (const c of cleanup) await c(); });

/** A v2 delta over the last layer: 10 % of each expert tensor's entries (sparse) and the router (dense). */
async function syntheticDelta(spec: ModelSpec, src: Checkpoint, quantizeExperts: { groupSize: number } | null): Promise<{ bytes: Bytes; entries: DiffEntry[] }> {
  const L = spec.numLayers - 1;
  const r = rng(99);
  const entries: DiffEntry[] = [];
  for (const [k, e] of layerTensors(spec, L).entries()) {
    if (e.role !== 'router' && !e.role.startsWith('expert.')) continue;
    const n = e.shape.reduce((a, b) => a * b, 1);
    const dtype = src.tensors.get(e.name)!.dtype;
    if (e.role === 'router') entries.push({ name: e.name, dtype, shape: e.shape, indices: null, diff: randn(n, 500 + k, 0.2) });
    else {
      const idx = Uint32Array.from(Array.from({ length: n }, (_, i) => i).filter(() => r() < 0.1));
      entries.push({ name: e.name, dtype, shape: e.shape, indices: idx, diff: randn(idx.length, 500 + k, 0.2) });
    }
  }
  const fp = await fingerprintOf(src, await readConfig(nodeFolder(FIX)));
  const { chunks } = encodeDeltaV2(entries, fp, { quantizeExperts });
  const bytes = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0)) as Bytes;
  let at = 0;
  for (const c of chunks) (bytes.set(c, at), (at += c.byteLength));
  return { bytes, entries };
}

describe('generation with a run\'s delta overlaid', () => {
  it('Hub folder + delta = the merged model (logits bit for bit, greedy tokens)', async () => {
    const gpu = await testGpu();
    const src = await openCheckpoint(nodeFolder(FIX));
    cleanup.push(() => src.close());
    const spec = withExpertLayout(await readSpec(FIX), detectExpertLayout(src.tensors.keys()));
    const { bytes } = await syntheticDelta(spec, src, null);
    const merged = memorySink('merged');
    await mergeModel(nodeFolder(FIX), memorySource(bytes, 'delta'), merged);

    const over = await Generator.open(gpu, nodeFolder(FIX), { delta: bytes, maxPositions: 32 });
    const ref = await Generator.open(gpu, merged.folder(), { maxPositions: 32 });
    const base = await Generator.open(gpu, nodeFolder(FIX), { maxPositions: 32 });
    cleanup.push(() => [over, ref, base].forEach((g) => g.destroy()));
    const a = await over.prefillLogits(PROMPT), b = await ref.prefillLogits(PROMPT), c = await base.prefillLogits(PROMPT);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    expect(relErr(c, b)).toBeGreaterThan(10 * TOL); // the delta matters
    const ga = await over.generate({ ...greedy, promptIds: PROMPT }), gb = await ref.generate({ ...greedy, promptIds: PROMPT });
    expect(ga.tokens).toEqual(gb.tokens);
  }, 300_000);

  it('stored 4-bit model + delta = the float64 oracle over f32(dequantized + d); refusals in words', async () => {
    const gpu = await testGpu();
    const src = await openCheckpoint(nodeFolder(FIX));
    cleanup.push(() => src.close());
    const spec = withExpertLayout(await readSpec(FIX), detectExpertLayout(src.tensors.keys()));
    const store = await tempFolder('gen-store');
    cleanup.push(store.remove);
    await importQ4(gpu, spec, nodeFileSink(store.dir, { fsync: false }), src, nodeFolder(FIX), { groupSize: G });
    const { bytes, entries } = await syntheticDelta(spec, src, { groupSize: G });
    const merged = memorySink('merged');
    await mergeModel(nodeFolder(FIX), memorySource(bytes, 'delta'), merged);

    // the weights the run trained: the merged model's (router bf16(original + d)), experts from the stored codes
    const mergedCkpt = await openCheckpoint(merged.folder());
    const want = await refTensorsFromCheckpoint(spec, mergedCkpt);
    await mergedCkpt.close();
    const stored = await openCheckpoint(nodeFolder(store.dir));
    cleanup.push(() => stored.close());
    const lay = q4ExpertLayouts(spec, G);
    const { numExperts: E, expertIntermediate: IE } = spec.moe;
    const H = spec.hidden;
    const diffs = new Map(entries.map((e) => [e.name, e]));
    for (let L = 0; L < spec.numLayers; L++) {
      const names = q4ExpertNames(spec, L);
      const words = async (name: string) => { const b = await stored.readTensor(name); return new Uint32Array(b.buffer, b.byteOffset, b.byteLength / 4); };
      const gu = await words(names.gateUp), dn = await words(names.down);
      const rows = (w: Uint32Array, l: typeof lay.gateUp, r0: number, n: number) =>
        dequantWords(w.subarray((r0 * l.K) / 8), w.subarray(l.szWord + r0 * l.groupsPerRow), l, n);
      for (const e of layerTensors(spec, L)) {
        const x = e.expert!;
        let v: Float32Array;
        if (e.role === 'expert.gate') v = rows(gu, lay.gateUp, x * IE, IE);
        else if (e.role === 'expert.up') v = rows(gu, lay.gateUp, (E + x) * IE, IE);
        else if (e.role === 'expert.down') v = rows(dn, lay.down, x * H, H);
        else continue;
        const d = diffs.get(e.name);
        if (d) d.indices!.forEach((i, k) => (v[i] = Math.fround(v[i]! + d.diff[k]!)));
        want.set(e.name, Float64Array.from(v));
      }
    }
    const oracle = refForward(spec, want, PROMPT, 1, PROMPT.length).logits!;

    const over = await Generator.open(gpu, nodeFolder(store.dir), { delta: bytes, maxPositions: 32 });
    const plain = await Generator.open(gpu, nodeFolder(store.dir), { maxPositions: 32 });
    cleanup.push(() => [over, plain].forEach((g) => g.destroy()));
    expect(relErr(await over.prefillLogits(PROMPT), oracle)).toBeLessThanOrEqual(TOL);
    expect(relErr(await plain.prefillLogits(PROMPT), oracle)).toBeGreaterThan(10 * TOL);
    const g = await over.generate({ ...greedy, promptIds: PROMPT });
    expect(g.tokens.length).toBe(greedy.maxNewTokens);

    // refused: an unquantized run's delta over the 4-bit store; a delta of another model
    const hubRun = await syntheticDelta(spec, src, null);
    await expect(Generator.open(gpu, nodeFolder(store.dir), { delta: hubRun.bytes })).rejects.toThrow(/unquantized experts of the original model/);
    await expect(Generator.open(gpu, nodeFolder('test/fixtures/mixtral'), { delta: bytes })).rejects.toThrow(/the base test\/fixtures\/mixtral|differs|not the model/);
  }, 400_000);
});
