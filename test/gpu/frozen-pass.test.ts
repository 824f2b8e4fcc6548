// The layer-major frozen pass (frozen-pass.ts) and streamed frozen layers: (a) its hidden states at TRAIN_FROM equal the
// sample-major forward's (demo model), resident or streamed; (b) a run with streamed frozen layers gives the resident
// run's losses and eval PPLs, with 4-bit experts and without; (c) every checkpoint tensor is read once per run, however
// many samples; (d) a streamed run resumes exactly. Outputs are poisoned with NaN before the pass writes them.
import { describe, expect, it } from 'vitest';
import { readSpec } from '../../src/cli/load-model.ts';
import { nodeGpu } from '../../src/node/gpu.ts';
import type { GpuContext } from '../../src/engine/gpu/device.ts';
import { readF32, writeBuffer } from '../../src/engine/gpu/buffers.ts';
import { Encoder } from '../../src/engine/gpu/encoder.ts';
import { openCheckpoint, type Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { withExpertLayout } from '../../src/engine/model/config.ts';
import { detectExpertLayout } from '../../src/engine/model/tensors.ts';
import { loadWeights, type LoadOptions } from '../../src/engine/train/weights.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import type { EvalRecord, StepRecord } from '../../src/engine/train/types.ts';
import type { TrainSettings } from '../../src/engine/train/settings.ts';
import { runTraining } from '../../src/engine/train/run.ts';
import { fillFrozen, HostStore } from '../../src/engine/train/frozen-pass.ts';
import { loadTrainCheckpoint } from '../../src/engine/train/checkpoint-file.ts';
import { memorySink } from '../../src/engine/io/sink.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { randomSamples } from '../helpers/samples.ts';

const FIX = 'test/fixtures/qwen3_moe';
const DEMO = 'public/models/usaf-demo-moe';

function settings(over: Partial<TrainSettings>): TrainSettings {
  return { frac: 0.01, steps: 6, microbatch: 2, accum: 1, seq: 12, lrPeak: 5e-3, wd: 0.005, trainFrom: 2, reselectEvery: 3, evalEvery: 2, nImportance: 2, frozenCacheN: 100, seed: 7, evalWindows: null, ...over };
}

/** A model opened as openModel does, its checkpoint wrapped to count reads per tensor. */
async function open(gpu: GpuContext, dir: string, trainFrom: number, o: { stream: boolean; q4?: number }) {
  let spec = await readSpec(dir);
  const raw = await openCheckpoint(nodeFolder(dir));
  const layout = detectExpertLayout(raw.tensors.keys());
  if (layout !== spec.expertLayout) spec = withExpertLayout(spec, layout);
  const reads = new Map<string, number>();
  const ckpt: Checkpoint = { ...raw, readTensor: (name) => (reads.set(name, (reads.get(name) ?? 0) + 1), raw.readTensor(name)) };
  const trained = new Set(Array.from({ length: spec.numLayers - trainFrom }, (_, i) => trainFrom + i));
  const load: LoadOptions = { f32ExpertLayers: trained, quantizeExperts: o.q4 ? { groupSize: o.q4 } : undefined, streamFrozenBelow: o.stream ? trainFrom : undefined };
  const weights = await loadWeights(gpu, spec, ckpt, load);
  return { spec, ckpt, weights, load, reads };
}

function poison(gpu: GpuContext, buf: GPUBuffer): void {
  writeBuffer(gpu, buf, 0, new Float32Array(buf.size / 4).fill(NaN));
}

describe('layer-major frozen pass', () => {
  it('(a) demo model: hidden states at TRAIN_FROM equal the sample-major forward, resident and streamed', async () => {
    const gpu = await nodeGpu();
    const s = settings({ seq: 16, trainFrom: 4 });
    const data = randomSamples(5, s.seq, 4096, 11);
    const evalSet = randomSamples(3, s.seq, 4096, 12);
    const H = 256;
    const n = s.seq * H;
    // Sample-major reference: the graph's own frozenForward, microbatches in another grouping than the pass's chunks.
    const ref = await open(gpu, DEMO, s.trainFrom, { stream: false });
    const tr = new Trainer(gpu, ref.spec, ref.weights, s, data);
    const want = new Map<string, Float32Array>();
    for (const [set, name, groups] of [[data, 'd', [[3, 0], [4, 1], [2]]], [evalSet, 'e', [[2], [1, 0]]]] as const) {
      for (const g of groups) {
        const ids = new Uint32Array(g.length * s.seq), targets = new Uint32Array(g.length * s.seq);
        g.forEach((x, i) => set.fill(x, ids, targets, i * s.seq));
        tr.graph.fwd.setBatch(ids, g.length, s.seq, targets);
        const enc = new Encoder(gpu, 'ref');
        tr.graph.frozenForward(enc, g.length, s.seq);
        enc.submit();
        const h = await readF32(gpu, tr.graph.fwd.resid, 0, g.length * n);
        g.forEach((x, i) => want.set(`${name}${x}`, h.slice(i * n, (i + 1) * n)));
      }
    }
    for (const stream of [false, true]) {
      const m = stream ? await open(gpu, DEMO, s.trainFrom, { stream: true }) : ref;
      const t = stream ? new Trainer(gpu, m.spec, m.weights, s, data) : tr;
      expect(t.streamed).toBe(stream);
      // streamed: the cache is in host memory (its slots start as NaN until the pass's readback fills them)
      expect(t.cache.place).toBe(stream ? 'host' : 'gpu');
      if (stream) expect(t.cache.buf).toBeNull();
      else poison(gpu, t.cache.buf!);
      await fillFrozen(t, stream ? { ckpt: m.ckpt, load: m.load } : null, [evalSet]);
      const host = t.evalStores.get(evalSet)!.store as HostStore;
      expect(host).toBeInstanceOf(HostStore);
      let worst = 0;
      for (let x = 0; x < data.count; x++) {
        const enc = new Encoder(gpu, 'read');
        t.cache.get(enc, x, t.graph.fwd.resid, 0);
        enc.submit();
        const got = await readF32(gpu, t.graph.fwd.resid, 0, n);
        worst = Math.max(worst, maxRel(got, want.get(`d${x}`)!));
      }
      for (let x = 0; x < evalSet.count; x++) worst = Math.max(worst, maxRel(host.data[x]!, want.get(`e${x}`)!));
      console.log(`${stream ? 'streamed' : 'resident'}: max relative difference vs sample-major ${worst}`);
      expect(worst).toBeLessThanOrEqual(1e-6);
    }
  }, 180_000);

  for (const q4 of [undefined, 32]) {
    it(`(b, c, d) qwen3_moe fixture${q4 ? ', 4-bit experts' : ''}: streamed run = resident run; each tensor read once; resume`, async () => {
      const gpu = await nodeGpu();
      const s = settings({});
      const data = randomSamples(6, s.seq, 512, 3);
      const heldout = randomSamples(3, s.seq, 512, 4);
      const run = async (stream: boolean, stopAt = 0, resumeFrom: ReturnType<typeof memorySink> | null = null) => {
        const m = await open(gpu, FIX, s.trainFrom, { stream, q4 });
        const t = new Trainer(gpu, m.spec, m.weights, s, data);
        const steps: StepRecord[] = [];
        const evals: EvalRecord[] = [];
        const sink = memorySink('ckpt');
        const resume = resumeFrom ? await loadTrainCheckpoint(resumeFrom.folder()) : undefined;
        await runTraining(t, {
          inDomain: data, heldout, sink, checkpointEvery: 0, settings: s as unknown as Record<string, unknown>, resume,
          frozenSource: stream ? { ckpt: m.ckpt, load: m.load } : undefined,
          control: async () => (stopAt && t.step >= stopAt ? 'stop' : 'go'),
          events: { onStep: (r) => steps.push(r), onEval: (r) => evals.push(r) },
        });
        return { steps, evals, reads: m.reads, t, sink, total: m.ckpt.tensors.size };
      };
      const resident = await run(false);
      const streamed = await run(true);
      expect(streamed.t.cache.misses).toBe(0);
      expect(streamed.t.cache.place).toBe('host');
      expect(streamed.t.cache.buf).toBeNull();
      expect(streamed.t.cache.hostBytes).toBe(data.count * s.seq * streamed.t.spec.hidden * 4);
      expect(streamed.steps.length).toBe(s.steps);
      expect(streamed.evals.length).toBe(resident.evals.length);
      for (let i = 0; i < s.steps; i++) expect(Math.abs(streamed.steps[i]!.loss - resident.steps[i]!.loss), `step ${i + 1}`).toBeLessThanOrEqual(1e-5);
      resident.evals.forEach((e, i) => {
        const g = streamed.evals[i]!;
        expect(g.step).toBe(e.step);
        expect(Math.abs(g.eval_ppl - e.eval_ppl) / e.eval_ppl, `eval @${e.step}`).toBeLessThanOrEqual(1e-5);
        expect(Math.abs(g.heldout_ppl! - e.heldout_ppl!) / e.heldout_ppl!, `held-out @${e.step}`).toBeLessThanOrEqual(1e-5);
      });
      // (c) storage reads: one per tensor for the whole run (load + one layer-major pass), with 6 samples + 3 windows.
      expect(streamed.reads.size).toBe(streamed.total);
      for (const [name, n] of streamed.reads) expect(n, name).toBe(1);

      // (d) stop after step 3 (checkpoint), resume on freshly loaded streamed weights: the rest of the run is the same.
      const first = await run(true, 3);
      expect(first.t.step).toBe(3);
      const second = await run(true, 0, first.sink);
      expect(second.steps.map((r) => r.step)).toEqual([4, 5, 6]);
      second.steps.forEach((r) => expect(Math.abs(r.loss - streamed.steps[r.step - 1]!.loss), `resumed step ${r.step}`).toBeLessThanOrEqual(1e-5));
      const last = second.evals.at(-1)!, want = streamed.evals.at(-1)!;
      expect(last.step).toBe(6);
      expect(Math.abs(last.eval_ppl - want.eval_ppl) / want.eval_ppl).toBeLessThanOrEqual(1e-5);
      for (const [name, n] of second.reads) expect(n, name).toBe(1);
    }, 240_000);
  }
});

function maxRel(got: Float32Array, want: Float32Array): number {
  let scale = 0;
  for (const w of want) scale = Math.max(scale, Math.abs(w));
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    worst = Math.max(worst, Number.isNaN(d) ? Infinity : d / Math.max(Math.abs(want[i]!), 1e-3 * scale));
  }
  return worst;
}
