// The schedule and active-set sizes against docs/method.md's formulas written out independently here.
import { describe, expect, it } from 'vitest';
import { activeCount, isReselectStep, learningRate, warmupSteps } from '../../../src/engine/train/schedule.ts';

describe('schedule (docs/method.md)', () => {
  it('warm-up is 5 % of the steps, at least 1', () => {
    expect(warmupSteps(180)).toBe(9);
    expect(warmupSteps(10)).toBe(1);
    expect(warmupSteps(1)).toBe(1);
  });
  it('linear warm-up then cosine to a tenth of the peak', () => {
    const peak = 2e-4;
    expect(learningRate(1, 180, peak)).toBeCloseTo(peak / 9, 15);
    expect(learningRate(9, 180, peak)).toBeCloseTo(peak, 15);
    expect(learningRate(180, 180, peak)).toBeCloseTo(peak / 10, 15);
    const mid = 9 + (180 - 9) / 2;
    expect(learningRate(mid, 180, peak)).toBeCloseTo(peak / 10 + (peak - peak / 10) * 0.5, 12);
    for (let s = 10; s < 180; s++) expect(learningRate(s + 1, 180, peak)).toBeLessThan(learningRate(s, 180, peak));
  });
  it('k = max(1, floor(FRAC * numel)) — the demo layer: 5242 gate+up, 2621 down', () => {
    expect(activeCount(0.005, 2 * 16 * 128 * 256)).toBe(5242);
    expect(activeCount(0.005, 16 * 256 * 128)).toBe(2621);
    expect(activeCount(0.005, 10)).toBe(1);
  });
  it('reselection at s > 1 with s % every == 0', () => {
    expect([1, 49, 50, 51, 100, 150].map((s) => isReselectStep(s, 50))).toEqual([false, false, true, false, true, true]);
    expect(isReselectStep(1, 1)).toBe(false);
  });
});
