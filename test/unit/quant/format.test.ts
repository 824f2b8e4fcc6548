// 4-bit format helpers: exact f16 rounding (every half round-trips, ties go to even), nibble order, group geometry.
import { describe, expect, it } from 'vitest';
import { grid2d } from '../../../src/engine/quant/dispatch.ts';
import { f16Bits, f16Value, packNibbles, packScaleZero, quantLayout, groupSpan, roundHalfEven, unpackNibbles, unpackScaleZero } from '../../../src/engine/quant/format.ts';

describe('f16', () => {
  it('round-trips every finite half exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      const back = f16Bits(f16Value(h));
      if (back !== h && !(f16Value(h) === 0 && (back & 0x7fff) === 0)) throw new Error(`half 0x${h.toString(16)} came back as 0x${back.toString(16)}`);
    }
  });

  it('rounds to nearest, ties to even, at every scale', () => {
    for (let h = 1; h < 0x7bff; h += 37) {
      const a = f16Value(h), b = f16Value(h + 1), mid = (a + b) / 2;
      expect(f16Bits(mid), `tie above 0x${h.toString(16)}`).toBe(h % 2 === 0 ? h : h + 1);
      expect(f16Bits(mid + (b - a) * 1e-6)).toBe(h + 1);
      expect(f16Bits(mid - (b - a) * 1e-6)).toBe(h);
      expect(f16Bits(-mid)).toBe(0x8000 | (h % 2 === 0 ? h : h + 1));
    }
  });

  it('handles the edges: overflow, smallest subnormals, signs', () => {
    expect(f16Bits(65504)).toBe(0x7bff);
    expect(f16Bits(65519.99)).toBe(0x7bff);
    expect(f16Bits(65520)).toBe(0x7c00);
    expect(f16Bits(-1e9)).toBe(0xfc00);
    expect(f16Bits(2 ** -24)).toBe(1);
    expect(f16Bits(2 ** -25)).toBe(0); // tie between 0 and the smallest subnormal: even
    expect(f16Bits(3 * 2 ** -25)).toBe(2);
    expect(f16Bits(2 ** -14 - 2 ** -26)).toBe(0x400); // rounds up into the normals
    expect(f16Bits(1)).toBe(0x3c00);
    expect(f16Bits(-2)).toBe(0xc000);
    expect(f16Bits(1 / 3)).toBe(0x3555);
  });

  it('packs (scale, zero) pairs low half first', () => {
    const w = packScaleZero(f16Bits(0.5), f16Bits(7.25));
    expect(w).toBe(0x47403800); // the example in FORMAT.md
    expect(unpackScaleZero(w)).toEqual({ s: 0.5, z: 7.25 });
    expect(unpackScaleZero(packScaleZero(f16Bits(1e-3), f16Bits(-3)))).toEqual({ s: f16Value(f16Bits(1e-3)), z: -3 });
  });
});

describe('layout', () => {
  it('rounds half to even', () => {
    expect([0.5, 1.5, 2.5, 3.49, -1.5, -2.5, 7].map(roundHalfEven)).toEqual([0, 2, 2, 3, -2, -2, 7]);
  });

  it('packs element j of a row in nibble j % 8 of word j / 8, low nibble first', () => {
    const codes = [1, 2, 3, 4, 5, 6, 7, 8, 15, 0, 0, 0, 0, 0, 0, 9];
    const q = packNibbles(codes);
    expect(Array.from(q)).toEqual([0x87654321, 0x9000000f]);
    expect(Array.from(unpackNibbles(q))).toEqual(codes);
    expect(() => packNibbles([1, 2, 3])).toThrow(RangeError);
  });

  it('splits rows into groups of G, the last one shorter when G does not divide K', () => {
    expect(quantLayout(5, 128, 64)).toMatchObject({ groupsPerRow: 2, groups: 10, qWords: 80 });
    expect(quantLayout(3, 24, 128)).toMatchObject({ groupsPerRow: 1, groups: 3, qWords: 9 });
    const L = quantLayout(2, 200, 64);
    expect(L.groupsPerRow).toBe(4);
    expect(groupSpan(L, 3)).toEqual({ row: 0, start: 192, len: 8 });
    expect(groupSpan(L, 5)).toEqual({ row: 1, start: 264, len: 64 });
    expect(() => quantLayout(2, 12, 8)).toThrow(/multiple of 8/);
    expect(() => quantLayout(2, 16, 12)).toThrow(/multiple of 8/);
    expect(() => quantLayout(-1, 16, 8)).toThrow(/rows/);
  });

  it('spreads more than 65535 workgroups over a 2-D grid that still covers every item', () => {
    expect(grid2d(100, 64)).toEqual([2, 1]);
    expect(grid2d(65535 * 64, 64)).toEqual([65535, 1]);
    const [x, y] = grid2d(65535 * 64 + 1, 64);
    expect(y).toBe(2);
    expect(x * y * 64).toBeGreaterThanOrEqual(65535 * 64 + 1);
    expect(x).toBeLessThanOrEqual(65535);
    expect(grid2d(1000, 1, 30)).toEqual([30, 34]);
  });
});
