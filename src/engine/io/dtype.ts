// Safetensors dtypes: byte sizes, decoders from raw little-endian bytes to f32, and bf16 pack/convert helpers.
// Pure functions on typed arrays; assumes a little-endian host (every WebGPU platform is) and never mutates its input.

export const DTYPES = ['BF16', 'F16', 'F32', 'F64', 'I32', 'I64', 'U8', 'I8', 'BOOL', 'F8_E4M3', 'F8_E5M2', 'U32'] as const;
export type Dtype = (typeof DTYPES)[number];

export const DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  BF16: 2, F16: 2, F32: 4, F64: 8, I32: 4, I64: 8, U8: 1, I8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1, U32: 4,
};

export function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && (DTYPES as readonly string[]).includes(s);
}

// ---------------------------------------------------------------------------------------------
// Scalar conversions

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** bf16 bit pattern (low 16 bits of `bits`) → the f32 value it denotes (exact). */
export function bf16ToF32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}

/** f32 value → bf16 bit pattern, rounding to nearest, ties to even; NaN stays a (quiet) NaN. */
export function f32ToBf16(x: number): number {
  scratchF32[0] = x;
  const bits = scratchU32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return (bits >>> 16) | 0x0040;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** IEEE half bit pattern → f32 value (exact; subnormals, infinities and NaN included). */
export function f16ToF32(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) {
    scratchU32[0] = sign | 0x7f800000 | (mant << 13);
  } else if (exp !== 0) {
    scratchU32[0] = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant === 0) {
    scratchU32[0] = sign;
  } else {
    // Subnormal half: normalise the mantissa into an f32 normal number.
    let e = 113;
    while ((mant & 0x400) === 0) { mant <<= 1; e--; }
    scratchU32[0] = sign | (e << 23) | ((mant & 0x3ff) << 13);
  }
  return scratchF32[0];
}

/** OCP FP8 E4M3 ("e4m3fn"): bias 7, no infinities, 0x7f and 0xff are NaN, max 448. */
export function f8e4m3ToF32(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >>> 3) & 0xf;
  const mant = b & 0x7;
  if (exp === 0xf && mant === 0x7) return NaN;
  if (exp === 0) return sign * mant * 2 ** -9; // (mant / 8) * 2^(1 - 7)
  return sign * (1 + mant / 8) * 2 ** (exp - 7);
}

/** OCP FP8 E5M2: bias 15, IEEE-like (exponent 31 is infinity or NaN), max finite 57344. */
export function f8e5m2ToF32(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >>> 2) & 0x1f;
  const mant = b & 0x3;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  if (exp === 0) return sign * mant * 2 ** -16; // (mant / 4) * 2^(1 - 15)
  return sign * (1 + mant / 4) * 2 ** (exp - 15);
}

// ---------------------------------------------------------------------------------------------
// Array decoders

/** A view of `bytes` as T, copying first if `bytes` is not aligned to T's element size. */
function view<T>(bytes: Uint8Array, elemBytes: number, make: (buf: ArrayBufferLike, off: number, len: number) => T): T {
  if (bytes.byteLength % elemBytes !== 0) {
    throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${elemBytes}-byte elements`);
  }
  const src = bytes.byteOffset % elemBytes === 0 ? bytes : bytes.slice();
  return make(src.buffer, src.byteOffset, src.byteLength / elemBytes);
}

const u16 = (b: Uint8Array): Uint16Array => view(b, 2, (buf, o, n) => new Uint16Array(buf, o, n));

let e4m3Table: Float32Array | null = null;
let e5m2Table: Float32Array | null = null;

function byteTable(decode: (b: number) => number): Float32Array {
  const t = new Float32Array(256);
  for (let i = 0; i < 256; i++) t[i] = decode(i);
  return t;
}

/** Raw bf16 bytes → Float32Array (exact). */
export function decodeBf16(bytes: Uint8Array): Float32Array {
  const src = u16(bytes);
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return new Float32Array(out.buffer);
}

/** Raw bytes of any dtype → Float32Array (F64 and 64-bit integers are rounded to the nearest f32). */
export function decodeF32(dtype: Dtype, bytes: Uint8Array): Float32Array {
  switch (dtype) {
    case 'BF16': return decodeBf16(bytes);
    case 'F16': return Float32Array.from(u16(bytes), f16ToF32);
    case 'F32': return view(bytes, 4, (buf, o, n) => new Float32Array(buf, o, n)).slice();
    case 'F64': return Float32Array.from(view(bytes, 8, (buf, o, n) => new Float64Array(buf, o, n)));
    case 'F8_E4M3': return Float32Array.from(bytes, (b) => (e4m3Table ??= byteTable(f8e4m3ToF32))[b]);
    case 'F8_E5M2': return Float32Array.from(bytes, (b) => (e5m2Table ??= byteTable(f8e5m2ToF32))[b]);
    case 'I64': return Float32Array.from(view(bytes, 8, (buf, o, n) => new BigInt64Array(buf, o, n)), Number);
    default: return Float32Array.from(decodeInt(dtype, bytes));
  }
}

/**
 * Raw integer bytes (I32, I64, U8, I8, BOOL) → Int32Array; I64 data with a value outside the i32 range comes back
 * as a number[] instead, and a value beyond ±2^53 (not exactly representable) throws.
 */
export function decodeInt(dtype: Dtype, bytes: Uint8Array): Int32Array | number[] {
  switch (dtype) {
    case 'I32': return view(bytes, 4, (buf, o, n) => new Int32Array(buf, o, n)).slice();
    case 'U32': {
      const src = view(bytes, 4, (buf, o, n) => new Uint32Array(buf, o, n));
      return src.every((v) => v <= 0x7fffffff) ? Int32Array.from(src) : Array.from(src);
    }
    case 'U8': case 'BOOL': return Int32Array.from(bytes);
    case 'I8': return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    case 'I64': {
      const src = view(bytes, 8, (buf, o, n) => new BigInt64Array(buf, o, n));
      const nums = Array.from(src, (v): number => {
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
          throw new RangeError(`I64 value ${v} is not exactly representable as a number`);
        }
        return Number(v);
      });
      return nums.every((v) => v >= -0x80000000 && v <= 0x7fffffff) ? Int32Array.from(nums) : nums;
    }
    default: throw new TypeError(`decodeInt: ${dtype} is not an integer dtype`);
  }
}

// ---------------------------------------------------------------------------------------------
// Encoders and GPU packing

/** Float32Array → raw bf16 bytes (round to nearest even). */
export function encodeBf16(values: Float32Array): Uint8Array<ArrayBuffer> {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToBf16(values[i]);
  return new Uint8Array(out.buffer);
}

/**
 * Raw bf16 bytes → u32 words holding two bf16 each (element 2i in the low half, 2i+1 in the high half), as a WGSL
 * `array<u32>` expects them. An odd element count is padded with a zero high half.
 */
export function packBf16Pairs(bytes: Uint8Array): Uint32Array {
  if (bytes.byteLength % 2 !== 0) throw new RangeError(`bf16 data has an odd byte count (${bytes.byteLength})`);
  const out = new Uint32Array(Math.ceil(bytes.byteLength / 4));
  new Uint8Array(out.buffer).set(bytes);
  return out;
}
