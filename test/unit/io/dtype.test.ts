// dtype decoders checked against independent arithmetic (sign * mantissa * 2^exp), spec constants and brute-force rounding.
// Covers every bf16/f16/fp8 bit pattern, round-to-nearest-even ties, integer decoders and bf16 pair packing.

import { describe, expect, it } from 'vitest';
import {
  bf16ToF32, decodeBf16, decodeF32, decodeInt, encodeBf16, f16ToF32, f32ToBf16, f8e4m3ToF32, f8e5m2ToF32, packBf16Pairs,
} from '../../../src/engine/io/dtype.ts';
import { randomBytes } from './helpers.ts';

/** Reference float decode for an IEEE-style format from its fields, using only arithmetic. */
function ieee(bits: number, expBits: number, mantBits: number): number {
  const sign = (bits >>> (expBits + mantBits)) & 1 ? -1 : 1;
  const exp = (bits >>> mantBits) & ((1 << expBits) - 1);
  const mant = bits & ((1 << mantBits) - 1);
  const bias = (1 << (expBits - 1)) - 1;
  if (exp === (1 << expBits) - 1) return mant === 0 ? sign * Infinity : NaN;
  if (exp === 0) return sign * (mant / 2 ** mantBits) * 2 ** (1 - bias);
  return sign * (1 + mant / 2 ** mantBits) * 2 ** (exp - bias);
}

const same = (a: number, b: number): boolean => (Number.isNaN(a) && Number.isNaN(b)) || Object.is(a, b);

describe('bf16', () => {
  it('decodes every bit pattern like the field formula', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const arr = decodeBf16(new Uint8Array(all.buffer));
    for (let b = 0; b < 65536; b++) {
      const want = ieee(b, 8, 7);
      if (!same(bf16ToF32(b), want) || !same(arr[b], want)) throw new Error(`bf16 0x${b.toString(16)}: want ${want}`);
    }
  });

  it('decodes a misaligned view', () => {
    const buf = new Uint8Array(7);
    buf.set([0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40], 1); // 1.0, -2.0, 0x4049 = 3.140625
    expect(Array.from(decodeBf16(buf.subarray(1)))).toEqual([1, -2, 3.140625]);
  });

  it('f32ToBf16 rounds to nearest, ties to even', () => {
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie between 0x3f80 and 0x3f81: even wins
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie between 0x3f81 and 0x3f82
    expect(f32ToBf16(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81); // just above the tie
    expect(f32ToBf16(-0)).toBe(0x8000);
    expect(f32ToBf16(3.4028234663852886e38)).toBe(0x7f80); // f32 max rounds up to +inf
    expect(Number.isNaN(bf16ToF32(f32ToBf16(NaN)))).toBe(true);
  });

  it('f32ToBf16 matches a brute-force nearest search on random floats', () => {
    const f = new Float32Array(randomBytes(4 * 20000, 7).buffer);
    for (const x of f) {
      if (!Number.isFinite(x) || Math.abs(x) >= 3.38e38) continue;
      const lo = new Uint32Array(new Float32Array([x]).buffer)[0] >>> 16; // truncation toward zero
      const cands = [lo, lo + 1].map((b) => ({ b, d: Math.abs(ieee(b, 8, 7) - x) }));
      const best = cands[0].d < cands[1].d || (cands[0].d === cands[1].d && (cands[0].b & 1) === 0) ? cands[0].b : cands[1].b;
      if (f32ToBf16(x) !== best) throw new Error(`${x}: got 0x${f32ToBf16(x).toString(16)}, want 0x${best.toString(16)}`);
    }
  });

  it('encodeBf16 inverts decodeBf16 for every non-NaN pattern', () => {
    const all = new Uint16Array(65536).map((_, i) => i).filter((b) => !Number.isNaN(ieee(b, 8, 7)));
    const bytes = new Uint8Array(all.buffer);
    expect(encodeBf16(decodeBf16(bytes))).toEqual(bytes);
  });

  it('packBf16Pairs puts element 2i in the low half and pads odd counts', () => {
    const bytes = Uint8Array.of(0x01, 0x02, 0x03, 0x04, 0x05, 0x06); // elements 0x0201, 0x0403, 0x0605
    expect(Array.from(packBf16Pairs(bytes))).toEqual([0x0201 + 0x0403 * 65536, 0x0605]);
    expect(Array.from(packBf16Pairs(bytes.subarray(0, 4)))).toEqual([0x04030201]);
    expect(() => packBf16Pairs(bytes.subarray(0, 3))).toThrow();
  });
});

describe('f16 and fp8', () => {
  it('f16 decodes every bit pattern like the field formula', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const arr = decodeF32('F16', new Uint8Array(all.buffer));
    for (let b = 0; b < 65536; b++) {
      const want = Math.fround(ieee(b, 5, 10));
      if (!same(f16ToF32(b), want) || !same(arr[b], want)) throw new Error(`f16 0x${b.toString(16)}: want ${want}`);
    }
  });

  it('E4M3 (fn) matches the OCP spec constants', () => {
    expect(f8e4m3ToF32(0x38)).toBe(1);
    expect(f8e4m3ToF32(0xb8)).toBe(-1);
    expect(f8e4m3ToF32(0x7e)).toBe(448); // max normal
    expect(f8e4m3ToF32(0x78)).toBe(256); // exponent 15 is finite in fn
    expect(f8e4m3ToF32(0x08)).toBe(2 ** -6); // min normal
    expect(f8e4m3ToF32(0x01)).toBe(2 ** -9); // min subnormal
    expect(Object.is(f8e4m3ToF32(0x80), -0)).toBe(true);
    expect(f8e4m3ToF32(0x7f)).toBeNaN();
    expect(f8e4m3ToF32(0xff)).toBeNaN();
    for (let b = 1; b < 0x7f; b++) expect(f8e4m3ToF32(b)).toBeGreaterThan(f8e4m3ToF32(b - 1));
    const arr = decodeF32('F8_E4M3', Uint8Array.from({ length: 256 }, (_, i) => i));
    for (let b = 0; b < 256; b++) expect(same(arr[b], f8e4m3ToF32(b))).toBe(true);
  });

  it('E5M2 is the top byte of an f16 and matches the spec constants', () => {
    const arr = decodeF32('F8_E5M2', Uint8Array.from({ length: 256 }, (_, i) => i));
    for (let b = 0; b < 256; b++) {
      expect(same(f8e5m2ToF32(b), f16ToF32(b << 8))).toBe(true);
      expect(same(arr[b], f8e5m2ToF32(b))).toBe(true);
    }
    expect(f8e5m2ToF32(0x3c)).toBe(1);
    expect(f8e5m2ToF32(0x7b)).toBe(57344);
    expect(f8e5m2ToF32(0x7c)).toBe(Infinity);
    expect(f8e5m2ToF32(0xfc)).toBe(-Infinity);
    expect(f8e5m2ToF32(0x01)).toBe(2 ** -16);
    expect(f8e5m2ToF32(0x7d)).toBeNaN();
  });
});

describe('other dtypes', () => {
  it('F32, F64 and integers decode to f32', () => {
    const f32 = Float32Array.of(1.5, -2.25, 3e-8);
    expect(decodeF32('F32', new Uint8Array(f32.buffer))).toEqual(f32);
    const f64 = Float64Array.of(0.1, -1e10, 2 ** 60);
    expect(Array.from(decodeF32('F64', new Uint8Array(f64.buffer)))).toEqual(Array.from(f64, Math.fround));
    const i64 = BigInt64Array.of(-5n, 1n << 40n);
    expect(Array.from(decodeF32('I64', new Uint8Array(i64.buffer)))).toEqual([-5, 2 ** 40]);
    expect(Array.from(decodeF32('I8', Uint8Array.of(0xff, 0x7f)))).toEqual([-1, 127]);
    expect(Array.from(decodeF32('U8', Uint8Array.of(0xff, 0x7f)))).toEqual([255, 127]);
  });

  it('decodeInt gives Int32Array in range, number[] beyond, and refuses inexact I64', () => {
    const i32 = Int32Array.of(-7, 2147483647);
    expect(decodeInt('I32', new Uint8Array(i32.buffer))).toEqual(i32);
    const small = decodeInt('I64', new Uint8Array(BigInt64Array.of(-3n, 2147483647n).buffer));
    expect(small).toBeInstanceOf(Int32Array);
    expect(Array.from(small)).toEqual([-3, 2147483647]);
    const big = decodeInt('I64', new Uint8Array(BigInt64Array.of(1n, 1n << 40n).buffer));
    expect(big).toEqual([1, 2 ** 40]);
    expect(() => decodeInt('I64', new Uint8Array(BigInt64Array.of(1n << 60n).buffer))).toThrow(RangeError);
    expect(Array.from(decodeInt('BOOL', Uint8Array.of(0, 1)))).toEqual([0, 1]);
    expect(() => decodeInt('F32', new Uint8Array(4))).toThrow();
  });
});
