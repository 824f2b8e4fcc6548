// Screen formatting and chart axis arithmetic.
import { describe, expect, it } from 'vitest';
import { decimate, linearScale, logScale, niceStep } from '../../../src/ui/chart-scale.ts';
import { formatBytes, formatCount, formatDuration, formatParams, formatPercent, formatSettingNumber, formatValue } from '../../../src/ui/format.ts';

describe('format', () => {
  it('sizes, counts, parameters', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.50 KB');
    expect(formatBytes(32_634_680)).toBe('31.1 MB');
    expect(formatBytes(null)).toBe('–');
    expect(formatCount(100_912)).toBe('100,912');
    expect(formatParams(16_291_072)).toBe('16.3 M');
    expect(formatParams(30_532_122_624)).toBe('30.5 B');
    expect(formatParams(47_836)).toBe('47.8 K');
  });

  it('durations, values, percents', () => {
    expect(formatDuration(42)).toBe('42 s');
    expect(formatDuration(185)).toBe('3 min 05 s');
    expect(formatDuration(3720)).toBe('1 h 02 min');
    expect(formatDuration(null)).toBe('–');
    expect(formatValue(14.5366)).toBe('14.54');
    expect(formatValue(2e-4)).toBe('2.00e-4');
    expect(formatValue(NaN)).toBe('–');
    expect(formatPercent(0.9163)).toBe('91.6 %');
    expect(formatSettingNumber(0.005)).toBe('0.005');
    expect(formatSettingNumber(0.0002)).toBe('0.0002');
    expect(formatSettingNumber(0.00002)).toBe('2e-5');
    expect(formatSettingNumber(180)).toBe('180');
  });
});

describe('chart scales', () => {
  it('nice steps', () => {
    expect(niceStep(0.7)).toBe(1);
    expect(niceStep(1.3)).toBe(2);
    expect(niceStep(3)).toBe(5);
    expect(niceStep(7)).toBe(10);
    expect(niceStep(0.013)).toBeCloseTo(0.02);
  });

  it('linear scale covers the data with nice ticks', () => {
    const s = linearScale(2.31, 2.74);
    expect(s.min).toBeLessThanOrEqual(2.31);
    expect(s.max).toBeGreaterThanOrEqual(2.74);
    expect(s.ticks[0]).toBe(s.min);
    expect(s.ticks.at(-1)).toBe(s.max);
    expect(s.at(s.min)).toBe(0);
    expect(s.at(s.max)).toBe(1);
    const flat = linearScale(5, 5);
    expect(flat.min).toBeLessThan(5);
    expect(flat.max).toBeGreaterThan(5);
  });

  it('log scale spans whole decades', () => {
    const s = logScale(2e-5, 2e-4);
    expect(s.min).toBeCloseTo(1e-5);
    expect(s.max).toBeCloseTo(1e-3);
    expect(s.at(1e-4)).toBeCloseTo(0.5);
  });

  it('decimation keeps the first and last points', () => {
    const pts = Array.from({ length: 1000 }, (_, i) => i);
    const d = decimate(pts, 100);
    expect(d).toHaveLength(100);
    expect(d[0]).toBe(0);
    expect(d.at(-1)).toBe(999);
    expect(decimate([1, 2, 3], 10)).toEqual([1, 2, 3]);
  });
});
