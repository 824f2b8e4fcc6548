// The run-time estimate's arithmetic (engine/plan/run-time.ts) against a count written out from the demo's config.json,
// its scaling with the run's shape, and the worker's evaluation-token count (worker/estimate.ts).
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/engine/model/index.ts';
import { runFlops, runSeconds, type RunShape } from '../../../src/engine/plan/run-time.ts';
import { PRESET_MODEL_CONFIGS } from '../../../src/presets/models.ts';
import { evalTokensOf } from '../../../src/worker/estimate.ts';

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
  steps: 10, microbatch: 2, accum: 1, seq: 64, trainFrom: 4, nImportance: 3, reselectEvery: 0, evalEvery: 0, frozenCacheN: 20, evalTokens: 6400,
};

describe('runFlops', () => {
  it('matches a count written out from the demo config: training, the frozen pass, importance and evaluations', () => {
    const layer = oracleLayer(64);
    const head = 2 * config.hidden_size! * config.vocab_size!;
    const L = config.num_hidden_layers!;
    const f = runFlops(demo, shape);
    const fb = (tokens: number, frozen: number) => tokens * (3 * ((L - 4) * layer + head) + frozen * 4 * layer);
    const rel = (a: number, b: number) => Math.abs(a - b) / b;
    expect(rel(f.train, fb(10 * 2 * 64, 0))).toBeLessThan(1e-3); // all 20 samples cached: no frozen layer per step
    expect(rel(f.setup, 20 * 64 * 4 * layer + fb(3 * 2 * 64, 1))).toBeLessThan(1e-3);
    expect(f.evaluations).toBe(2);
    expect(rel(f.evals, 2 * 6400 * (L * layer + head))).toBeLessThan(1e-3);
    expect(f.total).toBeCloseTo(f.setup + f.train + f.evals, 0);
  });

  it('scales with the run: steps, uncached sequences through the frozen layers, evaluations every EVAL_EVERY, reselections', () => {
    const base = runFlops(demo, shape);
    expect(runFlops(demo, { ...shape, steps: 20, frozenCacheN: 40 }).train / base.train).toBeCloseTo(2, 6);
    const uncached = runFlops(demo, { ...shape, frozenCacheN: 0 }).train - base.train; // every step through the 4 frozen layers
    expect(Math.abs(uncached - 10 * 2 * 64 * 4 * oracleLayer(64)) / uncached).toBeLessThan(1e-3);
    expect(runFlops(demo, { ...shape, evalEvery: 3 }).evaluations).toBe(2 + 3); // steps 3, 6, 9 plus before and after
    expect(runFlops(demo, { ...shape, reselectEvery: 5 }).setup).toBeGreaterThan(base.setup);
    expect(runFlops(demo, { ...shape, trainFrom: 0 }).train).toBeGreaterThan(base.train);
  });

  it('gives seconds at a measured rate', () => {
    expect(runSeconds(3e9, 1e9, 1)).toBe(3);
    expect(runSeconds(3e9, 1e9, 2)).toBe(6);
  });
});

describe('evalTokensOf', () => {
  it('counts whole windows of SEQ tokens, capped by the evaluation windows', () => {
    expect(evalTokensOf(1000, 128, null)).toBe(7 * 128);
    expect(evalTokensOf(1000, 128, 3)).toBe(3 * 128);
    expect(evalTokensOf(100, 128, null)).toBe(0);
  });
});
