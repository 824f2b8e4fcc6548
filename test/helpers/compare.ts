// Elementwise comparison |got - want| <= atol + rtol*|want| with the first mismatches printed, plus finite differences.
import { expect } from 'vitest';

export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number, what = 'tensor'): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  const bad: string[] = [];
  let nBad = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) {
      nBad++;
      if (bad.length < 8) bad.push(`[${i}] got ${g} want ${w}`);
    }
  }
  if (nBad) throw new Error(`${what}: ${nBad}/${want.length} mismatches (atol ${atol}, rtol ${rtol}): ${bad.join('; ')}`);
}

/** max|a-b| / max|b| */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den === 0 ? num : num / den;
}

/** Central finite difference of a scalar function f at x[i]. */
export function finiteDiff(f: (x: Float64Array) => number, x: Float64Array, i: number, h = 1e-6): number {
  const old = x[i]!;
  x[i] = old + h;
  const a = f(x);
  x[i] = old - h;
  const b = f(x);
  x[i] = old;
  return (a - b) / (2 * h);
}
