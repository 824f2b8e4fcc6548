// The 4-bit weight format (see FORMAT.md): group geometry, nibble packing, f16 (scale, zero) pairs, and exact f16 rounding.
// Pure functions on typed arrays, shared by the CPU quantizer, the oracles, the launchers and the report.

import { f16ToF32 } from '../io/dtype.ts';
import type { ModelSpec } from '../model/spec.ts';

/** Default number of consecutive input-dimension weights sharing one (scale, zero). */
export const DEFAULT_GROUP = 128;
/** Codes are 0..QMAX. */
export const QMAX = 15;

/** A quantized tensor [totalRows, K]; an op works on `rows` of them starting at `rowOffset` (e.g. expert e: e * N). */
export interface QuantDims {
  rows: number;
  /** Row length (the input dimension); a multiple of 8. */
  K: number;
  /** Group size, a positive multiple of 8; the last group of a row is shorter when G does not divide K. */
  G: number;
  /** First row of the quantized tensor this call touches (default 0). */
  rowOffset?: number;
}

export interface DequantDims extends QuantDims {
  /** Element offset of the first output value (default 0). */
  outOffset?: number;
}

/** Ŵ [N, K] = rows rowOffset..rowOffset+N of a quantized tensor; x [M, K], y [M, N]. */
export interface QmatmulDims {
  /** Rows of x and y (tokens). */
  M: number;
  /** Output features: rows of Ŵ. */
  N: number;
  /** Input features: row length of Ŵ (a multiple of 8). */
  K: number;
  G: number;
  /** First row of Ŵ in the quantized tensor (expert e of a layer [E, N, K]: e * N). */
  rowOffset?: number;
  /** Element offsets of x / dx [M, K] and of y / dy [M, N] in their buffers (default 0). */
  xOffset?: number;
  yOffset?: number;
  /** backward_input only: dx += instead of dx = (default false). */
  accumulate?: boolean;
}

export interface QuantLayout {
  rows: number;
  K: number;
  G: number;
  /** ceil(K / G) */
  groupsPerRow: number;
  /** rows * groupsPerRow: u32 words of (scale, zero) pairs */
  groups: number;
  /** rows * K / 8: u32 words of nibbles */
  qWords: number;
}

/** Largest group the GPU quantizer takes (shaders/quantize.wgsl keeps a group's weights in registers for its iterations). */
export const GPU_MAX_GROUP = 128;

/** Throws a RangeError unless G is a group size the GPU quantizer takes (a positive multiple of 8, at most GPU_MAX_GROUP). */
export function checkGpuGroup(G: number): void {
  quantLayout(0, 8, G);
  if (!(G <= GPU_MAX_GROUP)) throw new RangeError(`quant: group size G = ${G} is over ${GPU_MAX_GROUP}, the most the GPU quantizer takes`);
}

const isCount = (n: number): boolean => Number.isInteger(n) && n >= 0;

/** Validated geometry of `rows` rows of length K in groups of G. Throws a RangeError naming the bad dimension. */
export function quantLayout(rows: number, K: number, G: number = DEFAULT_GROUP): QuantLayout {
  if (!isCount(rows)) throw new RangeError(`quant: rows ${rows} is not a non-negative integer`);
  if (!isCount(K) || K === 0 || K % 8 !== 0) throw new RangeError(`quant: row length K = ${K} must be a positive multiple of 8`);
  if (!isCount(G) || G === 0 || G % 8 !== 0) throw new RangeError(`quant: group size G = ${G} must be a positive multiple of 8`);
  const groupsPerRow = Math.ceil(K / G);
  return { rows, K, G, groupsPerRow, groups: rows * groupsPerRow, qWords: (rows * K) / 8 };
}

/** Where group g (0-based within the rows of a call) lies in the flat [rows, K] array. */
export function groupSpan(L: QuantLayout, g: number): { row: number; start: number; len: number } {
  const row = Math.floor(g / L.groupsPerRow);
  const k0 = (g % L.groupsPerRow) * L.G;
  return { row, start: row * L.K + k0, len: Math.min(L.G, L.K - k0) };
}

// ---------------------------------------------------------------------------------------------
// Rounding and f16

/** Round half to even (as torch.round and WGSL round do). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The 4-bit code of value v: clamp(round(v / s + z), 0, 15). */
export function code(v: number, s: number, z: number): number {
  return Math.min(QMAX, Math.max(0, roundHalfEven(v / s + z)));
}

/** Any number → IEEE half bits, rounded to nearest, ties to even, directly from the float64 value (overflow → ±inf). */
export function f16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // subnormal; 1024 lands on the smallest normal
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  let m = roundHalfEven(a * 2 ** (10 - e)); // 1024..2048, exact scaling by a power of two
  if (m === 2048) { e++; m = 1024; }
  return sign | ((e + 15) << 10) | (m - 1024);
}

/** IEEE half bits → value (exact). */
export const f16Value = f16ToF32;

/** One (scale, zero) word: f16 scale in the low half, f16 zero in the high half. */
export function packScaleZero(sBits: number, zBits: number): number {
  return ((sBits & 0xffff) | ((zBits & 0xffff) << 16)) >>> 0;
}

export function unpackScaleZero(word: number): { s: number; z: number } {
  return { s: f16Value(word & 0xffff), z: f16Value(word >>> 16) };
}

/** The weight a 4-bit code stands for, as dequant.wgsl computes it: (q − z) · s in f32 (s, z from one (scale, zero) word). */
export function q4Value(code: number, s: number, z: number): number {
  return Math.fround(Math.fround(code - z) * s);
}

// ---------------------------------------------------------------------------------------------
// Nibbles

/** Code of flat element i (i = row * K + k, counted from row 0 of the quantized tensor). */
export function nibble(q: ArrayLike<number>, i: number): number {
  return (q[i >>> 3]! >>> ((i & 7) * 4)) & 0xf;
}

/** Pack codes [n] (n a multiple of 8) into words [n / 8], element i in nibble i % 8 of word i / 8. */
export function packNibbles(codes: ArrayLike<number>): Uint32Array {
  if (codes.length % 8 !== 0) throw new RangeError(`packNibbles: ${codes.length} codes is not a multiple of 8`);
  const out = new Uint32Array(codes.length / 8);
  for (let i = 0; i < codes.length; i++) out[i >>> 3] |= (codes[i]! & 0xf) << ((i & 7) * 4);
  return out;
}

export function unpackNibbles(q: ArrayLike<number>, n: number = q.length * 8): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = nibble(q, i);
  return out;
}

// ---------------------------------------------------------------------------------------------
// A layer's routed experts in GPU buffers (quant/experts-q4.ts): gate|up = [2·E·IE rows of H] (gate rows first), down =
// [E·H rows of IE]; each buffer is the code words, then from a 256-byte boundary the (scale, zero) words.

/** Alignment of the (scale, zero) table inside a buffer (WebGPU's storage binding offset alignment). */
const TABLE_ALIGN = 256;

export interface Q4BufferLayout extends QuantLayout {
  /** Word where the (scale, zero) table starts. */
  szWord: number;
  /** Bytes of the whole buffer. */
  bytes: number;
}

/** Layout of one buffer of `rows` rows of K in groups of G: codes, padding to TABLE_ALIGN, table. */
export function q4BufferLayout(rows: number, K: number, G: number): Q4BufferLayout {
  const L = quantLayout(rows, K, G);
  const szWord = Math.ceil((L.qWords * 4) / TABLE_ALIGN) * (TABLE_ALIGN / 4);
  return { ...L, szWord, bytes: (szWord + L.groups) * 4 };
}

/** The two buffers' layouts of a layer: gate|up [2·E·IE, H] and down [E·H, IE]. */
export function q4ExpertLayouts(spec: ModelSpec, G: number): { gateUp: Q4BufferLayout; down: Q4BufferLayout } {
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  return { gateUp: q4BufferLayout(2 * E * IE, spec.hidden, G), down: q4BufferLayout(E * spec.hidden, IE, G) };
}
