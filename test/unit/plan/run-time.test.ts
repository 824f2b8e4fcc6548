// The run-time estimate's arithmetic (engine/plan/run-time.ts) against a count written out from the demo's config.json,
// its scaling with the run's shape, its dispatch and wait counts against the counting device running the trainer (the
// cost model), and the worker's evaluation-window count (worker/estimate.ts).
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/engine/model/index.ts';
import { evalBatches, importancePasses, runCalls, runFlops, runSeconds, type RunShape } from '../../../src/engine/plan/run-time.ts';
import { PRESET_MODEL_CONFIGS } from '../../../src/presets/models.ts';
import { evalWindowsOf } from '../../../src/worker/estimate.ts';
import { costModel, ROOFLINES } from '../../../src/cli/cost-bench.ts';
import { syntheticSpec } from '../../../src/cli/synthetic.ts';

const config = PRESET_MODEL_CONFIGS['usaf-demo-moe'] as Record<string, number>;
const demo = parseConfig(config);

/** Forward FLOPs per token of one demo layer at context `seq`, written out from config.json (float64). */
function oracleLayer(seq: number): number {
  const H = config.hidden_size!, NH = config.num_attention_heads!, NKV = config.num_key_value_heads!, D = config.head_dim!;
  const E = config.num_experts!, K = config.num_experts_per_tok!, IE = config.moe_intermediate_size!;
  const weights = H * NH * D + 2 * H * NKV * D + NH * D * H // q, k, v, o
    + E * H // router
    + K * 3 * H * IE // the K chosen experts' gate, up, down
    + 2 * H + 2 * D; // the two RMSNorms, q/k norms
  return 2 * weights + 4 * NH * D * (seq / 2);
}

const shape: RunShape = {
  steps: 10, microbatch: 2, accum: 1, seq: 64, trainFrom: 4, nImportance: 3, reselectEvery: 0, evalEvery: 0, frozenCacheN: 20, evalWindows: [50, 50], sequences: 20, quantized: false,
};

describe('runFlops', () => {
  it('matches a count written out from the demo config: training, the frozen pass, importance and evaluations', () => {
    const layer = oracleLayer(64);
    const head = 2 * config.hidden_size! * config.vocab_size!;
    const L = config.num_hidden_layers!;
    const f = runFlops(demo, shape);
    const fb = (tokens: number) => tokens * 3 * ((L - 4) * layer + head);
    const rel = (a: number, b: number) => Math.abs(a - b) / b;
    // 20 samples drawn from 20 sequences: each through the 4 frozen layers once (then cached)
    expect(rel(f.train, fb(10 * 2 * 64) + 20 * 64 * 4 * layer)).toBeLessThan(1e-3);
    expect(rel(f.setup, fb(3 * 2 * 64) + 3 * 2 * 64 * 4 * layer)).toBeLessThan(1e-3); // importance: through every layer
    expect(f.evaluations).toBe(2);
    expect(rel(f.evals, 2 * 6400 * (L * layer + head))).toBeLessThan(1e-3);
    expect(f.total).toBeCloseTo(f.setup + f.train + f.evals, 0);
    // 4-bit experts: the 3 importance microbatches again for each of the 4 trained layers, the frozen layers once each
    const q = runFlops(demo, { ...shape, quantized: true });
    expect(rel(q.setup, 4 * fb(3 * 2 * 64) + 3 * 2 * 64 * 4 * layer)).toBeLessThan(1e-3);
  });

  it('counts importance passes and evaluation batches as the trainer runs them', () => {
    expect(importancePasses(demo, { trainFrom: 4, nImportance: 3, quantized: false })).toBe(3);
    expect(importancePasses(demo, { trainFrom: 4, nImportance: 3, quantized: true })).toBe(12);
    expect(importancePasses(demo, { trainFrom: 6, nImportance: 1, quantized: true })).toBe(2);
    // each set in batches of MICROBATCH: 5 windows in 3 batches of 2, 4 in 2
    expect(evalBatches({ evalWindows: [5, 4], microbatch: 2 })).toBe(5);
    expect(evalBatches({ evalWindows: [5], microbatch: 1 })).toBe(5);
  });

  it('scales with the run: steps, sequences through the frozen layers, evaluations every EVAL_EVERY, reselections', () => {
    const base = runFlops(demo, shape);
    const frozenRun = 64 * 4 * oracleLayer(64); // one sequence through the 4 frozen layers
    // twice the steps over the same 20 sequences, all cached: only the trained layers' share doubles
    const near = (a: number, b: number) => expect(Math.abs(a - b) / b).toBeLessThan(1e-3);
    near(runFlops(demo, { ...shape, steps: 20 }).train - base.train, base.train - 20 * frozenRun);
    // not cached: the second epoch runs them again
    near(runFlops(demo, { ...shape, steps: 20, frozenCacheN: 0 }).train - runFlops(demo, { ...shape, steps: 20 }).train, 20 * frozenRun);
    expect(runFlops(demo, { ...shape, evalEvery: 3 }).evaluations).toBe(2 + 3); // steps 3, 6, 9 plus before and after
    expect(runFlops(demo, { ...shape, reselectEvery: 5 }).setup).toBeGreaterThan(base.setup);
    expect(runFlops(demo, { ...shape, trainFrom: 0 }).train).toBeGreaterThan(base.train);
  });

  it('counts a step\'s dispatches and waits within 15 % of the counting device running the trainer (demo, 1 and 4 trained layers)', async () => {
    for (const trained of [1, 4]) {
      const spec = await syntheticSpec('demo', trained);
      const counted = (await costModel(spec, 'demo', ROOFLINES.h100!, { microbatch: 1, seq: 16, groupSize: 128 })).normal;
      // one step over a sequence already cached (the counted step 2 of a model with no frozen layers)
      const c = runCalls(spec, { ...shape, steps: 1, microbatch: 1, seq: 16, trainFrom: 0, frozenCacheN: 1, sequences: 1 }, 2).train;
      expect(Math.abs(c.dispatches - counted.dispatches) / counted.dispatches, `${trained} layers: ${c.dispatches} vs ${counted.dispatches}`).toBeLessThan(0.15);
      expect(c.syncs).toBe(counted.blocking);
    }
    const c = runCalls(demo, shape, 2);
    expect(c.train.syncs).toBe(10); // per step: one readback (the loss rows and the non-finite flag)
    expect(c.evals.dispatches).toBe(2 * (25 + 25) * (8 * 22 + 4)); // every layer and the head per batch of 2 windows
  }, 120_000);

  it('gives seconds at a measured rate', () => {
    const rate = { flopsPerSecond: 1e9, dispatchSeconds: 0.002, syncSeconds: 0.01, compileSeconds: 0.5 };
    expect(runSeconds(3e9, { dispatches: 0, syncs: 0, pipelines: 0 }, rate)).toBe(3);
    expect(runSeconds(3e9, { dispatches: 500, syncs: 100, pipelines: 4 }, rate)).toBeCloseTo(3 + 1 + 1 + 2, 12);
  });
});

describe('evalWindowsOf', () => {
  it('counts the windows the evaluator runs (the last one padded), capped by the evaluation windows', () => {
    expect(evalWindowsOf(1000, 128, null)).toBe(8);
    expect(evalWindowsOf(1024, 128, null)).toBe(8);
    expect(evalWindowsOf(1000, 128, 3)).toBe(3);
    expect(evalWindowsOf(100, 128, null)).toBe(1);
  });
});
