// Contract: axis arithmetic for the app's SVG charts: "nice" tick values covering a data range, linear and log
// scales, and decimation of long series to what a chart can show. Pure functions; tested in test/unit/ui.

export interface Scale {
  min: number;
  max: number;
  ticks: number[];
  log: boolean;
  /** Data value → [0, 1] along the axis. */
  at(v: number): number;
}

/** 1, 2 or 5 times a power of ten, at least `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/** A linear scale over [lo, hi] widened to nice tick boundaries, about `count` ticks. */
export function linearScale(lo: number, hi: number, count = 5): Scale {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 0;
    hi = 1;
  }
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep((hi - lo) / Math.max(1, count));
  const min = Number((Math.floor(lo / step) * step).toPrecision(12));
  const max = Number((Math.ceil(hi / step) * step).toPrecision(12));
  const ticks: number[] = [];
  for (let v = min; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return { min, max, ticks, log: false, at: (v) => (v - min) / (max - min) };
}

/** A base-10 log scale over positive [lo, hi], ticks at 1-2-5 steps of each decade. */
export function logScale(lo: number, hi: number): Scale {
  if (!(lo > 0) || !(hi > 0) || !Number.isFinite(lo) || !Number.isFinite(hi)) return linearScale(lo, hi);
  if (hi < lo) [lo, hi] = [hi, lo];
  const a = Math.floor(Math.log10(lo));
  const b = Math.max(a + 1, Math.ceil(Math.log10(hi)));
  const min = 10 ** a;
  const max = 10 ** b;
  const ticks: number[] = [];
  for (let e = a; e <= b; e++) for (const m of b - a > 2 ? [1] : [1, 2, 5]) {
    const v = Number((m * 10 ** e).toPrecision(12));
    if (v >= min && v <= max) ticks.push(v);
  }
  const la = Math.log10(min);
  const lb = Math.log10(max);
  return { min, max, ticks, log: true, at: (v) => (Math.log10(Math.max(v, min)) - la) / (lb - la) };
}

/** At most `max` points: every point when they fit; otherwise evenly chosen ones, always keeping the last. */
export function decimate<T>(points: readonly T[], max: number): T[] {
  if (points.length <= max) return points.slice();
  const out: T[] = [];
  const step = (points.length - 1) / (max - 1);
  for (let i = 0; i < max; i++) out.push(points[Math.round(i * step)]!);
  return out;
}
