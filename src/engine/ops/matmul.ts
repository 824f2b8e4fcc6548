// Linear-layer launchers (PyTorch convention, W [N, K] = [out, in]). Same signatures as ref/matmul.ts: outputs, inputs, dims.
// y = x W^T (+ b); dx = dy W; dW += dy^T x; dbias += colsum(dy). W may be f32 or packed bf16 at an element offset; x, y, grads f32.

import type { GpuContext } from '../gpu/device.ts';
import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { isLargeGpu } from './tiling.ts';
import src from '../../../shaders/matmul.wgsl?raw';
import tiledSrc from '../../../shaders/matmul_tiled.wgsl?raw';
import plainEntry from '../../../shaders/matmul_plain.wgsl?raw';
import sgEntry from '../../../shaders/matmul_sg.wgsl?raw';
import biasSrc from '../../../shaders/matmul_backward_bias.wgsl?raw';

export type WDtype = 'f32' | 'bf16';

export interface MatmulDims {
  M: number; // rows (tokens)
  N: number; // out features
  K: number; // in features
  wDtype: WDtype;
  /** Element offset of W inside its buffer (e.g. one expert of a stacked [E, N, K] tensor). */
  wOffset?: number;
  biasOffset?: number;
  /** Element offsets of x / dx and of y / dy inside their buffers (e.g. one expert's rows of a token-sorted buffer). */
  xOffset?: number;
  yOffset?: number;
  /** Forward / backward-input: out += instead of =. Default false. */
  accumulate?: boolean;
}

export interface MatmulWeightGradDims {
  M: number;
  N: number;
  K: number;
  /** Element offset of dW (or dbias) inside its buffer. */
  dwOffset?: number;
  /** Element offsets of x and dy inside their buffers. */
  xOffset?: number;
  yOffset?: number;
  /** dW += (default true) or dW =. Named apart from MatmulDims.accumulate so forward dims passed here cannot turn it off. */
  accumulateDw?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Tilings (docs/gemm.md): chosen per adapter by matmulTiling, forced by forceMatmulTiling, listed by matmulVariants.

export interface MatmulTiling {
  /** Threads along n and m. */
  TX: number;
  TY: number;
  /** Outputs a thread owns along m and n: 4 or 8. */
  RM: 4 | 8;
  RN: 4 | 8;
  /** Reduction steps staged per workgroup barrier. */
  BK: number;
  /** Double-buffered workgroup tiles: the next k-slice is loaded into registers while this one is computed. */
  DB: boolean;
  /** A fragments shared through subgroupShuffle (only on a device created with the 'subgroups' feature). */
  SG: boolean;
}

/** 16 x 16 threads, 4 x 4 outputs each: a 64 x 64 tile, K staged 16 at a time (8 KiB of workgroup memory). */
const TILE64: MatmulTiling = { TX: 16, TY: 16, RM: 4, RN: 4, BK: 16, DB: false, SG: false };
/** 16 x 16 threads, 8 x 8 outputs each: a 128 x 128 tile, K staged 8 at a time, two buffers (16 KiB). */
const TILE128: MatmulTiling = { TX: 16, TY: 16, RM: 8, RN: 8, BK: 8, DB: true, SG: false };

/**
 * Few rows (m <= 32: a short microbatch, an evaluation window, the LM head of a tiny SEQ): a 64-row tile would multiply
 * zero padding for most of its rows (m = 16: 75 % of its FLOPs). These thin tiles cover 16 or 32 rows and 128 columns.
 */
const THIN16: MatmulTiling = { TX: 32, TY: 4, RM: 4, RN: 4, BK: 8, DB: false, SG: false };
const THIN32: MatmulTiling = { TX: 32, TY: 8, RM: 4, RN: 4, BK: 8, DB: false, SG: false };

/** Workgroup memory (bytes) of tiling t: As and Bs (shaders/matmul.wgsl), both buffers when DB. */
export function matmulSharedBytes(t: MatmulTiling): number {
  return (t.DB ? 2 : 1) * t.BK * (t.TY * t.RM + t.TX * t.RN) * 4;
}

/** Why tiling t cannot run on gpu (null: it can). */
export function matmulTilingProblem(gpu: GpuContext, t: MatmulTiling): string | null {
  const per = (t.TX * t.TY);
  if (t.SG && !gpu.hasSubgroups) return 'the device has no subgroups';
  if (per > gpu.info.maxComputeInvocationsPerWorkgroup) return `${per} threads exceed maxComputeInvocationsPerWorkgroup ${gpu.info.maxComputeInvocationsPerWorkgroup}`;
  if (matmulSharedBytes(t) > gpu.info.maxComputeWorkgroupStorageSize) return `${matmulSharedBytes(t)} bytes of workgroup memory exceed ${gpu.info.maxComputeWorkgroupStorageSize}`;
  // each thread stages whole, at most 8 values of each slice (the shader's pa / pb registers)
  for (const slice of [t.BK * t.TY * t.RM, t.BK * t.TX * t.RN]) if (slice % per !== 0 || slice / per > 8) return `a ${slice}-value slice does not split into <= 8 values a thread`;
  return null;
}

let forcedMatmul: MatmulTiling | null = null;
let sgStrict = false;
/**
 * Tests and benchmarks: use this tiling on every adapter (null: choose by adapter again). strictSubgroups: an SG
 * workgroup whose subgroups do not match the layout it needs writes nothing instead of falling back to staging A.
 */
export function forceMatmulTiling(t: MatmulTiling | null, strictSubgroups = false): void {
  forcedMatmul = t;
  sgStrict = t !== null && strictSubgroups;
}

let forcedRowsFast: boolean | null = null;
/** Tests: lay every GEMM grid out row tiles first (true) or column tiles first (false); null: whichever reads less (gemmBytes). */
export function forceMatmulGridOrder(rowsFast: boolean | null): void {
  forcedRowsFast = rowsFast;
}

/**
 * The per-vendor table. CPU adapters (SwiftShader): the 64 x 64 tile without subgroups (what the tests time). NVIDIA,
 * AMD, Apple: the 128 x 128 tile, other GPUs the 64 x 64 one; each with subgroup A fragments when the device has them.
 * A tiling the limits refuse falls back to the 64 x 64 one.
 */
export function matmulTiling(gpu: GpuContext): MatmulTiling {
  if (forcedMatmul) return forcedMatmul;
  if (gpu.info.cpu) return TILE64;
  const base = isLargeGpu(gpu.info) ? TILE128 : TILE64;
  for (const t of [{ ...base, SG: gpu.hasSubgroups }, base]) if (!matmulTilingProblem(gpu, t)) return t;
  return TILE64;
}

/** The tiling of a GEMM with m output rows: a thin one for m <= 32 (unless forced), else the adapter's (matmulTiling). */
export function gemmTiling(gpu: GpuContext, m: number): MatmulTiling {
  if (forcedMatmul) return forcedMatmul;
  if (m <= 16) return THIN16;
  if (m <= 32) return THIN32;
  return matmulTiling(gpu);
}

/** Every tiling gpu can run, by name (bench/gpu-session.sh measures each: forceMatmulTiling(variant.tiling)). */
export function matmulVariants(gpu: GpuContext): { name: string; tiling: MatmulTiling }[] {
  const all = [
    { name: 'matmul 64x64 4x4', tiling: TILE64 },
    { name: 'matmul 128x128 8x8 db', tiling: TILE128 },
    { name: 'matmul 64x64 4x4 subgroups', tiling: { ...TILE64, SG: true } },
    { name: 'matmul 128x128 8x8 db subgroups', tiling: { ...TILE128, SG: true } },
    { name: 'matmul 16x128 thin', tiling: THIN16 },
    { name: 'matmul 32x128 thin', tiling: THIN32 },
  ];
  return all.filter((v) => !matmulTilingProblem(gpu, v.tiling));
}

// ---------------------------------------------------------------------------------------------
// Shared GEMM dispatch: C[m, n] (+)= A(i, r) B(r, j) (+ bias)

export interface Gemm {
  m: number; n: number; k: number;
  lda: number; ldb: number; ldc: number;
  aOff: number; bOff: number; cOff: number; biasOff: number;
  aT: boolean; bT: boolean; bBf16: boolean;
  accumulate: boolean; hasBias: boolean;
  /** A(i, r) = exp(stored - shift[i]), the shifts [m] bound as the bias at biasOff (shaders/matmul.wgsl A_EXP). */
  aExp?: boolean;
}

/** The `params` uniform of shaders/matmul.wgsl. */
export function matmulParams(g: Gemm): Uint32Array {
  return Uint32Array.of(g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.aOff, g.bOff, g.cOff, g.biasOff, g.accumulate ? 1 : 0, g.hasBias ? 1 : 0);
}

function gemm(enc: Encoder, name: string, c: GPUBuffer, a: GPUBuffer, b: GPUBuffer, bias: GPUBuffer | null, g: Gemm): void {
  const t = gemmTiling(enc.gpu, g.m);
  const problem = matmulTilingProblem(enc.gpu, t);
  if (problem) throw new RangeError(`${name}: tiling ${JSON.stringify(t)} cannot run here: ${problem}`);
  const base = { A_T: g.aT ? 1 : 0, B_T: g.bT ? 1 : 0, B_BF16: g.bBf16 ? 1 : 0, TX: t.TX, TY: t.TY, BK: t.BK, ...(g.aExp ? { A_EXP: 1 } : {}) };
  // The plain 64 x 64 tile keeps matmul.wgsl's own entry (the fastest on SwiftShader); the others compile matmul_tiled.wgsl.
  const plain = t.RM === 4 && t.RN === 4 && !t.DB && !t.SG;
  const gg = { ...g, hasBias: bias !== null && !g.aExp };
  const cols = gemmBytes(gg, t, false), rows = gemmBytes(gg, t, true);
  const rowsFast = forcedRowsFast ?? rows < cols;
  const grid: [number, number] = [Math.ceil(g.n / (t.RN * t.TX)), Math.ceil(g.m / (t.RM * t.TY))];
  const k = kernel(enc.gpu, plain ? { name, code: src, entryPoint: 'main', constants: { ...base, ROWS_FAST: rowsFast ? 1 : 0 } } : {
    name,
    code: `${t.SG ? 'enable subgroups;\n' : ''}${src}\n${tiledSrc}\n${t.SG ? sgEntry : plainEntry}`,
    entryPoint: 'tiled',
    constants: { ...base, RM: t.RM, RN: t.RN, DB: t.DB ? 1 : 0, SG: t.SG ? 1 : 0, SG_STRICT: sgStrict ? 1 : 0, ROWS_FAST: rowsFast ? 1 : 0 },
  });
  k.dispatch(enc, [a, b, bias ?? a, c], rowsFast ? [grid[1], grid[0]] : grid, matmulParams(gg), { flops: 2 * g.m * g.n * g.k, bytes: rowsFast ? rows : cols });
}

/** An operand larger than this is assumed not to stay in the last-level cache (H100 / H200 L2: 50 MB). */
export const GEMM_CACHE_BYTES = 32 * 2 ** 20;
/** Workgroups of one GEMM dispatch assumed in flight at once (launched in id order, x fastest). */
export const GEMM_WAVE = 128;

/**
 * Memory bytes of gemm g on tiling t, its grid [column tiles, row tiles] (rowsFast: [row tiles, column tiles]). Each
 * workgroup streams its A rows and B columns through the whole reduction. The operand strip that the grid's slow index
 * picks (A's rows on the default grid) is shared by the `fast` consecutive workgroups of a grid row: read from memory
 * once if they are in flight together (fast <= GEMM_WAVE) or the strip fits the cache, else once per wave. The operand
 * the fast index walks (B on the default grid) is read again by every grid row: once in all if it fits the cache, else
 * once per wave of grid rows. C is written (and read when accumulating), the bias read.
 */
export function gemmBytes(g: Gemm, t: MatmulTiling, rowsFast: boolean): number {
  const BM = t.TY * t.RM, BN = t.TX * t.RN;
  const gm = Math.ceil(g.m / BM), gn = Math.ceil(g.n / BN);
  const wb = g.bBf16 ? 2 : 4;
  const [fast, slow] = rowsFast ? [gm, gn] : [gn, gm];
  const stripReads = (strip: number): number => (fast <= GEMM_WAVE || strip <= GEMM_CACHE_BYTES ? 1 : Math.ceil(fast / GEMM_WAVE));
  const walkReads = (all: number): number => (all <= GEMM_CACHE_BYTES ? 1 : Math.ceil(slow / Math.max(1, Math.floor(GEMM_WAVE / fast))));
  const aBytes = 4 * g.m * g.k, bBytes = wb * g.k * g.n;
  const a = aBytes * (rowsFast ? walkReads(aBytes) : stripReads(4 * BM * g.k));
  const b = bBytes * (rowsFast ? stripReads(wb * BN * g.k) : walkReads(bBytes));
  return a + b + 4 * g.m * g.n * (g.accumulate ? 2 : 1) + (g.hasBias ? 4 * g.n : 0) + (g.aExp ? 4 * g.m : 0);
}

function need(buf: GPUBuffer, bytes: number, what: string): void {
  if (buf.size < bytes) throw new RangeError(`matmul: ${what} holds ${buf.size} bytes, needs ${bytes}`);
}

function wBytes(d: MatmulDims): number {
  const end = (d.wOffset ?? 0) + d.N * d.K;
  return d.wDtype === 'bf16' ? Math.ceil(end / 2) * 4 : end * 4;
}

// ---------------------------------------------------------------------------------------------
// Launchers

/** y [M, N] (=|+=) x [M, K] . W [N, K]^T (+ bias [N]) */
export function matmulForward(enc: Encoder, y: GPUBuffer, x: GPUBuffer, w: GPUBuffer, bias: GPUBuffer | null, d: MatmulDims): void {
  const { M, N, K } = d;
  const xo = d.xOffset ?? 0, yo = d.yOffset ?? 0;
  need(y, (yo + M * N) * 4, 'y'); need(x, (xo + M * K) * 4, 'x'); need(w, wBytes(d), 'w');
  if (bias) need(bias, ((d.biasOffset ?? 0) + N) * 4, 'bias');
  gemm(enc, 'matmul.forward', y, x, w, bias, {
    m: M, n: N, k: K, lda: K, ldb: K, ldc: N, aOff: xo, bOff: d.wOffset ?? 0, cOff: yo, biasOff: d.biasOffset ?? 0,
    aT: false, bT: true, bBf16: d.wDtype === 'bf16', accumulate: d.accumulate ?? false, hasBias: false,
  });
}

/**
 * dx [M, K] (=|+=) dy [M, N] . W [N, K]; with `expShift`, dy(i, j) = exp(stored(i, j) - shift[offset + i]) (the LM head:
 * its softmax · scale from the logits, ops/xent.ts).
 */
export function matmulBackwardInput(enc: Encoder, dx: GPUBuffer, dy: GPUBuffer, w: GPUBuffer, d: MatmulDims, expShift: { buf: GPUBuffer; offset: number } | null = null): void {
  const { M, N, K } = d;
  const xo = d.xOffset ?? 0, yo = d.yOffset ?? 0;
  need(dx, (xo + M * K) * 4, 'dx'); need(dy, (yo + M * N) * 4, 'dy'); need(w, wBytes(d), 'w');
  if (expShift) need(expShift.buf, (expShift.offset + M) * 4, 'shift');
  gemm(enc, 'matmul.backward_input', dx, dy, w, expShift?.buf ?? null, {
    m: M, n: K, k: N, lda: N, ldb: K, ldc: K, aOff: yo, bOff: d.wOffset ?? 0, cOff: xo, biasOff: expShift?.offset ?? 0,
    aT: false, bT: false, bBf16: d.wDtype === 'bf16', accumulate: d.accumulate ?? false, hasBias: false, aExp: expShift !== null,
  });
}

/** dW [N, K] (+=|=) dy [M, N]^T . x [M, K]   (f32 dW at dwOffset) */
export function matmulBackwardWeight(enc: Encoder, dw: GPUBuffer, dy: GPUBuffer, x: GPUBuffer, d: MatmulWeightGradDims): void {
  const { M, N, K } = d;
  const xo = d.xOffset ?? 0, yo = d.yOffset ?? 0;
  need(dw, ((d.dwOffset ?? 0) + N * K) * 4, 'dw'); need(dy, (yo + M * N) * 4, 'dy'); need(x, (xo + M * K) * 4, 'x');
  gemm(enc, 'matmul.backward_weight', dw, dy, x, null, {
    m: N, n: K, k: M, lda: N, ldb: K, ldc: K, aOff: yo, bOff: xo, cOff: d.dwOffset ?? 0, biasOff: 0,
    aT: true, bT: false, bBf16: false, accumulate: d.accumulateDw ?? true, hasBias: false,
  });
}

/** dbias [N] (+=|=) sum over rows of dy [M, N]   (at dwOffset) */
export function matmulBackwardBias(enc: Encoder, dbias: GPUBuffer, dy: GPUBuffer, d: MatmulWeightGradDims): void {
  const { M, N } = d;
  const yo = d.yOffset ?? 0;
  need(dbias, ((d.dwOffset ?? 0) + N) * 4, 'dbias'); need(dy, (yo + M * N) * 4, 'dy');
  const k = kernel(enc.gpu, { name: 'matmul.backward_bias', code: biasSrc, entryPoint: 'main' });
  const cost = { flops: M * N, bytes: 4 * M * N + 4 * N * ((d.accumulateDw ?? true) ? 2 : 1) };
  k.dispatch(enc, [dy, dbias], [Math.ceil(N / 64)], Uint32Array.of(M, N, yo, d.dwOffset ?? 0, (d.accumulateDw ?? true) ? 1 : 0), cost);
}
