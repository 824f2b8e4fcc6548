// RoPE launchers (in place) and the float64 cos/sin tables (default, linear, dynamic, YaRN). Same signature as ref/rope.ts.
// Layout: x [T, nHeads, headDim] f32, dims [rotStart, rotStart+rotDim) rotate; interleaved input pairs come out as halves.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import type { RopeScaling } from '../model/spec.ts';
import { yarnMscale } from '../model/rope.ts';
import src from '../../../shaders/rope.wgsl?raw';

// ---------------------------------------------------------------------------------------------------------------
// Tables

/** RopeScaling plus the two rarer transformers keys: an explicit `attention_factor`, and YaRN's `truncate` (default true). */
export type RopeTableScaling = RopeScaling & { attentionFactor?: number; truncate?: boolean };

export interface RopeTables {
  /** [maxPos, rotDim/2]: cos(pos * invFreq[i]) * attentionFactor */
  cos: Float64Array;
  /** [maxPos, rotDim/2]: sin(pos * invFreq[i]) * attentionFactor */
  sin: Float64Array;
  /** [rotDim/2] */
  invFreq: Float64Array;
  /** YaRN magnitude correction folded into cos/sin (1 otherwise). */
  attentionFactor: number;
  /** YaRN ramp bounds (low, high) in pair indices; null for other types. */
  yarnRange: [number, number] | null;
}

/**
 * cos/sin tables for positions 0..maxPos-1, in float64, following transformers' rope init functions:
 * default theta^(-2i/rotDim); linear: / factor; dynamic (NTK): base rescaled when maxPos > originalMaxPos (pass the
 * longest sequence as maxPos, as transformers recomputes per batch); YaRN: ramp blend of interpolated and extrapolated
 * frequencies, attention factor mscale(factor, mscale)/mscale(factor, mscaleAllDim) when both are set, else mscale(factor).
 */
export function ropeTables(theta: number, rotDim: number, maxPos: number, scaling: RopeTableScaling | null = null): RopeTables {
  if (rotDim <= 0 || rotDim % 2) throw new Error(`ropeTables: rotDim must be even and positive, got ${rotDim}`);
  const half = rotDim / 2;
  const base = (b: number) => Float64Array.from({ length: half }, (_, i) => Math.pow(b, (-2 * i) / rotDim));
  let invFreq = base(theta);
  let attentionFactor = 1;
  let yarnRange: [number, number] | null = null;
  if (scaling?.type === 'linear') {
    invFreq = invFreq.map((f) => f / scaling.factor);
  } else if (scaling?.type === 'dynamic') {
    if (maxPos > scaling.originalMaxPos) {
      const f = scaling.factor;
      invFreq = base(theta * Math.pow((f * maxPos) / scaling.originalMaxPos - (f - 1), rotDim / (rotDim - 2)));
    }
  } else if (scaling?.type === 'yarn') {
    const f = scaling.factor;
    const { mscale, mscaleAllDim } = scaling;
    attentionFactor = scaling.attentionFactor ?? (mscale && mscaleAllDim ? yarnMscale(f, mscale) / yarnMscale(f, mscaleAllDim) : yarnMscale(f));
    // Pair index whose wavelength fits `rotations` turns into the original context.
    const corrDim = (rotations: number) => (rotDim * Math.log(scaling.originalMaxPos / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
    let low = corrDim(scaling.betaFast || 32);
    let high = corrDim(scaling.betaSlow || 1);
    if (scaling.truncate ?? true) {
      low = Math.floor(low);
      high = Math.ceil(high);
    }
    low = Math.max(low, 0);
    high = Math.min(high, rotDim - 1);
    yarnRange = [low, high];
    const span = low === high ? 0.001 : high - low;
    const extrap = invFreq;
    invFreq = extrap.map((e, i) => {
      const ramp = Math.min(1, Math.max(0, (i - low) / span)); // 0: keep (extrapolate), 1: interpolate (/ factor)
      return (e / f) * ramp + e * (1 - ramp);
    });
  }
  const cos = new Float64Array(maxPos * half);
  const sin = new Float64Array(maxPos * half);
  for (let pos = 0; pos < maxPos; pos++) {
    for (let i = 0; i < half; i++) {
      const a = pos * invFreq[i]!;
      cos[pos * half + i] = Math.cos(a) * attentionFactor;
      sin[pos * half + i] = Math.sin(a) * attentionFactor;
    }
  }
  return { cos, sin, invFreq, attentionFactor, yarnRange };
}

// ---------------------------------------------------------------------------------------------------------------
// Kernels

export interface RopeDims {
  /** T = batch * seq rows */
  tokens: number;
  nHeads: number;
  /** Stride between heads of a token (the head size). */
  headDim: number;
  /** First rotated dim within a head (MLA: qk_nope_head_dim); default 0. */
  rotStart?: number;
  /** Rotated width, even, <= 256. */
  rotDim: number;
  /** true: input pairs (2i, 2i+1) (DeepSeek rope_interleave), output as halves; false: halves (i, i+rotDim/2). */
  interleave: boolean;
  /** Stride between tokens; default nHeads * headDim (e.g. larger when q/k/v share one buffer). */
  tokenStride?: number;
  /** Element offset of token 0, head 0; default 0. */
  offset?: number;
}

const WG = 64;
const MAX_ROT = 256;

export function ropeParams(d: RopeDims): ArrayBuffer {
  const rotStart = d.rotStart ?? 0;
  if (d.rotDim <= 0 || d.rotDim % 2 || d.rotDim > MAX_ROT) throw new Error(`rope: rotDim must be even and in 2..${MAX_ROT}, got ${d.rotDim}`);
  if (rotStart + d.rotDim > d.headDim) throw new Error(`rope: rotStart ${rotStart} + rotDim ${d.rotDim} exceeds headDim ${d.headDim}`);
  const u = new Uint32Array(8);
  u.set([d.tokens, d.nHeads, d.headDim, d.tokenStride ?? d.nHeads * d.headDim, d.offset ?? 0, rotStart, d.rotDim, d.interleave ? 1 : 0]);
  return u.buffer;
}

function launch(enc: Encoder, entry: 'forward' | 'backward', x: GPUBuffer, positions: GPUBuffer, cos: GPUBuffer, sin: GPUBuffer, d: RopeDims): void {
  const k = kernel(enc.gpu, { name: `rope.${entry}`, code: src, entryPoint: entry, constants: { WG, MAX_ROT } });
  const wx = Math.min(d.tokens, 65535);
  // each rotated pair read and written with its (cos, sin); 3 FLOPs an element
  const n = d.tokens * d.nHeads * d.rotDim;
  const cost = { flops: 3 * n, bytes: 8 * n + 4 * d.tokens + 4 * d.tokens * d.rotDim };
  k.dispatch(enc, [positions, cos, sin, x], [wx, Math.ceil(d.tokens / 65535)], ropeParams(d), cost);
}

/** In place: x [T, nHeads, headDim] <- rope(x) at positions [T] (u32), with cos/sin [maxPos, rotDim/2] from ropeTables. */
export function ropeForward(enc: Encoder, x: GPUBuffer, positions: GPUBuffer, cos: GPUBuffer, sin: GPUBuffer, d: RopeDims): void {
  launch(enc, 'forward', x, positions, cos, sin, d);
}

/** In place: g [T, nHeads, headDim] holds dL/d(rope output) on entry, dL/dx on exit (rotation by -angle; = assignment). */
export function ropeBackward(enc: Encoder, g: GPUBuffer, positions: GPUBuffer, cos: GPUBuffer, sin: GPUBuffer, d: RopeDims): void {
  launch(enc, 'backward', g, positions, cos, sin, d);
}
