// Elementwise launchers: arithmetic, bf16 widening, fill, SwiGLU gating, the sigmoid row gate, clamp, and whole-buffer
// reductions (sum of squares, non-finite count). Same signatures as ref/elementwise.ts; all f32 unless noted; n elements.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import type { KernelCost } from '../gpu/cost.ts';
import mapSrc from '../../../shaders/elementwise.wgsl?raw';
import swigluSrc from '../../../shaders/elementwise_swiglu.wgsl?raw';
import gateSrc from '../../../shaders/elementwise_gate.wgsl?raw';
import reduceSrc from '../../../shaders/elementwise_reduce.wgsl?raw';

const WG = 256;
const MAX_WG = 65535;

/** Workgroups for `count` items folded into a 2-D grid (shaders index (wid.y * nwg.x + wid.x) and guard the tail). */
export function flatGrid(count: number): [number, number] {
  if (count <= MAX_WG) return [count, 1];
  const y = Math.ceil(count / MAX_WG);
  return [Math.ceil(count / y), y];
}

/** The `params` uniform of shaders/elementwise.wgsl. */
export function mapParams(n: number, s0 = 0, s1 = 0, inOff = 0, outOff = 0): ArrayBuffer {
  const b = new ArrayBuffer(24);
  new Uint32Array(b, 0, 4).set([n, inOff, outOff, 0]);
  new Float32Array(b, 16, 2).set([s0, s1]);
  return b;
}

/** `perElement`: FLOPs and bytes (read + written) per element. */
function map(enc: Encoder, entry: string, buffers: GPUBuffer[], n: number, params: ArrayBuffer, perElement: KernelCost): void {
  const k = kernel(enc.gpu, { name: `elementwise.${entry}`, code: mapSrc, entryPoint: entry, constants: { WG } });
  k.dispatch(enc, buffers, flatGrid(Math.ceil(n / WG)), params, { flops: perElement.flops * n, bytes: perElement.bytes * n });
}

// ---------------------------------------------------------------------------------------------
// Arithmetic

/** out [n] = a [n] + b [n]   (out must not alias a or b: use addInPlace) */
export function add(enc: Encoder, out: GPUBuffer, a: GPUBuffer, b: GPUBuffer, n: number): void {
  map(enc, 'add', [a, b, out], n, mapParams(n), { flops: 1, bytes: 12 });
}

/** acc [n] += b [n] */
export function addInPlace(enc: Encoder, acc: GPUBuffer, b: GPUBuffer, n: number): void {
  map(enc, 'add_in_place', [b, acc], n, mapParams(n), { flops: 1, bytes: 12 });
}

/** acc [n] += |b [n]|   (gradient-magnitude importance) */
export function absAddInPlace(enc: Encoder, acc: GPUBuffer, b: GPUBuffer, n: number): void {
  map(enc, 'abs_add_in_place', [b, acc], n, mapParams(n), { flops: 2, bytes: 12 });
}

/** out [n] = s * a [n] */
export function scale(enc: Encoder, out: GPUBuffer, a: GPUBuffer, s: number, n: number): void {
  map(enc, 'scale', [a, out], n, mapParams(n, s), { flops: 1, bytes: 8 });
}

/** buf [n] *= s */
export function scaleInPlace(enc: Encoder, buf: GPUBuffer, s: number, n: number): void {
  map(enc, 'scale_in_place', [buf], n, mapParams(n, s), { flops: 1, bytes: 8 });
}

/** buf [offset, offset + n) = value   (for zeros, enc.clear is cheaper) */
export function fill(enc: Encoder, buf: GPUBuffer, value: number, n: number, offset = 0): void {
  map(enc, 'fill', [buf], n, mapParams(n, value, 0, 0, offset), { flops: 0, bytes: 4 });
}

/** out [outOffset + i] = bf16 element inOffset + i of inPacked (u32 words, two bf16 each, low half first), i < n */
export function convertBf16ToF32(enc: Encoder, out: GPUBuffer, inPacked: GPUBuffer, n: number, inOffset = 0, outOffset = 0): void {
  map(enc, 'bf16_to_f32', [inPacked, out], n, mapParams(n, 0, 0, inOffset, outOffset), { flops: 0, bytes: 6 });
}

// ---------------------------------------------------------------------------------------------
// Clamp (OLMoE clip_qkv)

/** out [n] = min(max(x, lo), hi) */
export function clamp(enc: Encoder, out: GPUBuffer, x: GPUBuffer, lo: number, hi: number, n: number): void {
  map(enc, 'clamp_forward', [x, out], n, mapParams(n, lo, hi), { flops: 2, bytes: 8 });
}

/** dx [n] = dy where lo <= x <= hi, else 0 (x is the input of the clamp) */
export function clampBackward(enc: Encoder, dx: GPUBuffer, dy: GPUBuffer, x: GPUBuffer, lo: number, hi: number, n: number): void {
  map(enc, 'clamp_backward', [x, dy, dx], n, mapParams(n, lo, hi), { flops: 2, bytes: 12 });
}

// ---------------------------------------------------------------------------------------------
// SwiGLU and the sigmoid gate

/** h [n] = silu(g [n]) * u [n]   (n = rows * intermediate) */
export function siluMul(enc: Encoder, h: GPUBuffer, g: GPUBuffer, u: GPUBuffer, n: number): void {
  const k = kernel(enc.gpu, { name: 'elementwise.silu_mul', code: swigluSrc, entryPoint: 'forward', constants: { WG } });
  k.dispatch(enc, [g, u, h], flatGrid(Math.ceil(n / WG)), Uint32Array.of(n), { flops: 6 * n, bytes: 12 * n });
}

/** dg [n], du [n] = gradients of h = silu(g) * u given dh [n] */
export function siluMulBackward(enc: Encoder, dg: GPUBuffer, du: GPUBuffer, dh: GPUBuffer, g: GPUBuffer, u: GPUBuffer, n: number): void {
  const k = kernel(enc.gpu, { name: 'elementwise.silu_mul_backward', code: swigluSrc, entryPoint: 'backward', constants: { WG } });
  k.dispatch(enc, [g, u, dh, dg, du], flatGrid(Math.ceil(n / WG)), Uint32Array.of(n), { flops: 12 * n, bytes: 20 * n });
}

const GATE_WG = 64;

/** out [rows, cols] = sigmoid(s [rows]) * y [rows, cols] */
export function sigmoidGate(enc: Encoder, out: GPUBuffer, s: GPUBuffer, y: GPUBuffer, rows: number, cols: number): void {
  const k = kernel(enc.gpu, { name: 'elementwise.sigmoid_gate', code: gateSrc, entryPoint: 'forward', constants: { WG: GATE_WG } });
  k.dispatch(enc, [s, y, out], flatGrid(Math.ceil((rows * cols) / GATE_WG)), Uint32Array.of(rows, cols), { flops: rows * cols + 4 * rows, bytes: 8 * rows * cols + 4 * rows });
}

/** ds [rows], dy [rows, cols] = gradients of out = sigmoid(s) * y given dout [rows, cols] */
export function sigmoidGateBackward(enc: Encoder, ds: GPUBuffer, dy: GPUBuffer, dout: GPUBuffer, s: GPUBuffer, y: GPUBuffer, rows: number, cols: number): void {
  const k = kernel(enc.gpu, { name: 'elementwise.sigmoid_gate_backward', code: gateSrc, entryPoint: 'backward', constants: { WG: GATE_WG } });
  k.dispatch(enc, [s, y, dout, ds, dy], flatGrid(rows), Uint32Array.of(rows, cols), { flops: 3 * rows * cols + 4 * rows, bytes: 12 * rows * cols + 8 * rows });
}

// ---------------------------------------------------------------------------------------------
// Reductions

/** Workgroups of the first sumSquares pass = f32 elements its `work` buffer needs. */
export const SUM_SQUARES_WORK = 256;

/** out [1] (=|+=) sum of x [n]^2. `work`: f32 [SUM_SQUARES_WORK] scratch. Deterministic (fixed reduction order). */
export function sumSquares(enc: Encoder, out: GPUBuffer, x: GPUBuffer, n: number, work: GPUBuffer, accumulate = false): void {
  if (work.size < SUM_SQUARES_WORK * 4) throw new RangeError(`sumSquares: work holds ${work.size} bytes, needs ${SUM_SQUARES_WORK * 4}`);
  const groups = Math.max(1, Math.min(SUM_SQUARES_WORK, Math.ceil(n / WG)));
  const k1 = kernel(enc.gpu, { name: 'elementwise.sum_squares', code: reduceSrc, entryPoint: 'sum_squares_partial', constants: { WG } });
  k1.dispatch(enc, [x, work], [groups], Uint32Array.of(n, 0, 0, 0), { flops: 2 * n, bytes: 4 * n + 4 * groups });
  const k2 = kernel(enc.gpu, { name: 'elementwise.sum_partials', code: reduceSrc, entryPoint: 'sum_partials', constants: { WG } });
  k2.dispatch(enc, [work, out], [1], Uint32Array.of(groups, 0, accumulate ? 1 : 0, 0), { flops: groups, bytes: 4 * groups + 8 });
}

/** out u32 [1] (=|+=) number of inf/NaN values in x [n] (f32). Without `accumulate` out is cleared first. */
export function nonFiniteCount(enc: Encoder, out: GPUBuffer, x: GPUBuffer, n: number, accumulate = false): void {
  if (!accumulate) enc.clear(out, 0, 4);
  const k = kernel(enc.gpu, { name: 'elementwise.nonfinite_count', code: reduceSrc, entryPoint: 'nonfinite_count', constants: { WG } });
  k.dispatch(enc, [x, out], [Math.max(1, Math.min(1024, Math.ceil(n / WG)))], Uint32Array.of(n, 0, 0, 0), { flops: n, bytes: 4 * n });
}
