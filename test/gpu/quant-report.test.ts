// usaf quant-report on the qwen3_moe fixture and the demo model (and its held-out PPL, 4-bit vs not): JSON with the error of min-max rounding and of HQQ over
// all routed-expert weights (counted from the spec), HQQ lower on both, and the per-tensor list covering every MoE layer.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { quantReportCmd } from '../../src/cli/commands/quant-report.ts';
import { readSpec } from '../../src/cli/load-model.ts';
import { countParams } from '../../src/engine/model/params.ts';

async function report(dir: string, extra: string[] = []): Promise<Record<string, any>> {
  const lines: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((s: string) => void lines.push(s));
  try {
    expect(await quantReportCmd.run(['--model', dir, '--per-tensor', ...extra])).toBe(0);
  } finally {
    log.mockRestore();
  }
  return JSON.parse(lines.at(-1)!);
}

describe('usaf quant-report', () => {
  afterEach(() => vi.restoreAllMocks());
  it('the demo model with --data: held-out PPL with 4-bit HQQ experts close to unquantized on the same windows', async () => {
    const r = await report('public/models/usaf-demo-moe', ['--data', 'public/data/heldout.jsonl', '--seq', '64', '--max-windows', '2']);
    expect(r.ppl.windows).toBe(2);
    expect(r.ppl.tokens_scored).toBe(2 * 63);
    expect(r.ppl.unquantized).toBeGreaterThan(1);
    expect(r.ppl.q4_hqq).not.toBe(r.ppl.unquantized); // a different model was evaluated
    expect(Math.abs(Math.log(r.ppl.ratio))).toBeLessThan(0.05);
    expect(r.ppl.ratio).toBeCloseTo(r.ppl.q4_hqq / r.ppl.unquantized, 10);
  }, 300_000);
  for (const dir of ['test/fixtures/qwen3_moe', 'public/models/usaf-demo-moe']) {
    it(`${dir}: HQQ below min-max over all expert weights`, async () => {
      const spec = await readSpec(dir);
      const r = await report(dir);
      expect(r.expert_weights).toBe(countParams(spec).expert);
      expect(r.tensors.length).toBe(3 * spec.layers.filter((l) => l.mlp === 'moe').length);
      expect(r.rel_frobenius_error.minmax).toBeGreaterThan(0.01);
      expect(r.rel_frobenius_error.minmax).toBeLessThan(0.3);
      expect(r.rel_frobenius_error.hqq).toBeLessThan(r.rel_frobenius_error.minmax);
      expect(r.hqq_lower).toBe(true);
    }, 120_000);
  }
});
