// Routed-expert (SwiGLU) launchers: grouped GEMMs over the expert-sorted rows of moe_route, weighted combine, backward
// to dx/dTopW/per-row grads, and dense expert weight grads (+=). Same signatures as ref/experts.ts.

import { isCpuAdapter, type GpuContext } from '../gpu/device.ts';
import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { isLargeGpu } from './tiling.ts';
import { GEMM_CACHE_BYTES } from './matmul.ts';
import { moeRouteMaxTiles } from './moe_route.ts';
import { DEFAULT_GROUP, quantLayout } from '../quant/format.ts';
import type { SparseTableGpu } from './experts_q4.ts';
import gateUpSrc from '../../../shaders/experts.wgsl?raw';
import downSrc from '../../../shaders/experts_down.wgsl?raw';
import combineSrc from '../../../shaders/experts_combine.wgsl?raw';
import bwdSrc from '../../../shaders/experts_backward.wgsl?raw';
import actSrc from '../../../shaders/experts_backward_act.wgsl?raw';
import inSrc from '../../../shaders/experts_backward_input.wgsl?raw';
import wSrc from '../../../shaders/experts_backward_weight.wgsl?raw';

// Legend: T tokens, H hidden, E experts, K experts per token, IE expert width, R = T*K expert-sorted rows.

export interface ExpertsDims {
  T: number;
  H: number;
  E: number;
  K: number;
  IE: number;
  /**
   * Storage of gate/up/down: f32; bf16 packed two per u32 (low half = even element); or q4, 4 bits per weight
   * (quant/FORMAT.md): each weight binding holds the code words (element i in word i / 8) and, from word
   * gateSz / upSz / downSz on, the (scale, zero) words of the rows it holds (rows of length H for gate/up, IE for down).
   */
  wDtype: 'f32' | 'bf16' | 'q4';
  /** Element offsets of expert 0 inside the weight buffers (default 0); q4: multiples of the row length. */
  gateOffset?: number;
  upOffset?: number;
  downOffset?: number;
  /** q4 only: group size (default quant/format.ts DEFAULT_GROUP) and word offsets of the (scale, zero) tables. */
  groupSize?: number;
  gateSz?: number;
  upSz?: number;
  downSz?: number;
  /**
   * Only the rows of experts e0..e1-1 (default all): the GEMMs skip other experts' row tiles and the weight bindings
   * hold just these experts (expert e at slot e - e0). Running every chunk in turn gives the unchunked result bit for bit.
   */
  experts?: [e0: number, e1: number];
}

/** gate, up [E, IE, H]; down [E, H, IE] (each all experts of the layer, row-major). */
export interface ExpertWeights<B> {
  gate: B;
  up: B;
  down: B;
}

/** From moe_route (tileM must be EXPERT_TILE_M): offsets [E+1], slot [T*K], rowPair [R], tiles [maxTiles, 4]. */
export interface ExpertRouting<B> {
  offsets: B;
  slot: B;
  rowPair: B;
  tiles: B;
}

/** Saved by forward for backward: G, U, A [R, IE]; Y [R, H]. */
export interface ExpertSaved<B> {
  G: B;
  U: B;
  A: B;
  Y: B;
}

/** Per-row grads made by backward: dY [R, H], dG, dU [R, IE]; dXr [R, H] is workspace (may be saved.Y). */
export interface ExpertGrads<B> {
  dY: B;
  dG: B;
  dU: B;
  dXr: B;
}

type Binding = GPUBuffer | GPUBufferBinding;

// GEMM tiling: moe_route must use tileM = EXPERT_TILE_M. Row-tile kernels run NX x 4 threads over one tile of 32 rows,
// each thread owning 8 rows (strided by 4) x 4 or 8 columns, and stage BK reduction steps per barrier.
export const EXPERT_TILE_M = 32;
const WG = 256;
const MAX_GROUPS = 65535;

export interface ExpertsTiling {
  /** Threads along the columns (x 4 along the rows; backward_weight: x 8 along n). */
  NX: number;
  /** Reduction steps staged in workgroup memory per barrier (multiple of 4; lowered per kernel to fit the device). */
  BK: number;
}

let forced: ExpertsTiling | null = null;
/** Tests and benchmarks: use this tiling on every adapter (null: choose by adapter again). */
export function forceExpertsTiling(t: ExpertsTiling | null): void {
  forced = t;
}

/** The tilings by name (bench/gpu-session.sh measures each: forceExpertsTiling(variant.tiling)). */
const TILINGS = {
  cpu: { NX: 8, BK: 16 },
  gpu: { NX: 16, BK: 16 },
  wide: { NX: 32, BK: 16 },
} satisfies Record<string, ExpertsTiling>;

/**
 * The per-vendor table. CPU adapters (SwiftShader runs invocations as fibers, 4 lanes wide): 32 threads; there, reads
 * of workgroup memory dominate, and BK 8..32 time the same but compile slower as BK grows. NVIDIA, AMD, Apple: 128
 * threads, 32 x 128 tiles (down, backward: 32 x 256), so each row tile's activations are staged for half as many
 * column tiles; other GPUs: 64 threads. BK is lowered per kernel to fit the workgroup memory (gemmConstants).
 */
export function expertsTiling(gpu: GpuContext): ExpertsTiling {
  if (forced) return forced;
  if (isCpuAdapter(gpu.info)) return TILINGS.cpu;
  const wide = isLargeGpu(gpu.info) && TILINGS.wide.NX * 8 <= gpu.info.maxComputeInvocationsPerWorkgroup;
  return wide ? TILINGS.wide : TILINGS.gpu;
}

/** Every expert tiling, by name, for forcing with forceExpertsTiling (each fits any WebGPU device's default limits). */
export function expertsVariants(): { name: string; tiling: ExpertsTiling }[] {
  return Object.entries(TILINGS).map(([name, tiling]) => ({ name: `experts NX ${tiling.NX} BK ${tiling.BK} (${name})`, tiling }));
}

type Gemm = 'gate_up' | 'down' | 'backward_act' | 'backward_input' | 'backward_weight';

/** Workgroup memory (bytes) of each kernel at (NX, BK); see the var<workgroup> declarations of its shader. */
const sharedBytes: Record<Gemm, (nx: number, bk: number) => number> = {
  gate_up: (nx, bk) => 16 * (bk / 4 + 1) * (EXPERT_TILE_M + 8 * nx) + 4 * EXPERT_TILE_M,
  down: (nx, bk) => 16 * (bk / 4 + 1) * (EXPERT_TILE_M + 8 * nx),
  backward_act: (nx, bk) => 16 * (bk / 4 + 1) * EXPERT_TILE_M + 32 * bk * nx,
  backward_input: (nx, bk) => 32 * (bk / 4 + 1) * EXPERT_TILE_M + 64 * bk * nx,
  backward_weight: (nx, bk) => 16 * bk * (16 + 2 * nx),
};

function gemmConstants(gpu: GpuContext, which: Gemm, d: ExpertsDims | null): Record<string, number> {
  const t = expertsTiling(gpu);
  let bk = t.BK;
  while (bk > 4 && sharedBytes[which](t.NX, bk) > gpu.info.maxComputeWorkgroupStorageSize) bk -= 4;
  const c: Record<string, number> = { NX: t.NX, BK: bk };
  if (d) c.W_BF16 = d.wDtype === 'bf16' ? 1 : 0;
  if (d?.wDtype === 'q4') {
    checkQ4(d);
    Object.assign(c, { W_Q4: 1, QG: d.groupSize ?? DEFAULT_GROUP });
  }
  return c;
}

/** The kernels fetch 4 weights at a time from one code word and one group: rows and offsets must keep that true. */
function checkQ4(d: ExpertsDims): void {
  quantLayout(1, d.H, d.groupSize ?? DEFAULT_GROUP);
  quantLayout(1, d.IE, d.groupSize ?? DEFAULT_GROUP);
  const aligned = (off: number | undefined, L: number) => (off ?? 0) % L === 0;
  if (!aligned(d.gateOffset, d.H) || !aligned(d.upOffset, d.H) || !aligned(d.downOffset, d.IE)) {
    throw new RangeError(`experts q4: weight offsets must be whole rows (gate/up of ${d.H}, down of ${d.IE})`);
  }
}

/** Column tiles of a row-tile kernel whose threads own `per` columns each, over n columns. */
const colTiles = (gpu: GpuContext, n: number, per: number) => Math.ceil(n / (per * expertsTiling(gpu).NX));

/** Row tiles the GEMMs are dispatched over: moe_route's bound for tileM = EXPERT_TILE_M (tiles past the end exit). */
export function maxTilesOf(d: ExpertsDims): number {
  return moeRouteMaxTiles({ T: d.T, K: d.K, E: d.E, tileM: EXPERT_TILE_M });
}

// ---------------------------------------------------------------------------------------------------------------
// launch arithmetic (the cost model, gpu/cost.ts): a chunk of experts gets its share of the rows (uniform routing)

/** Rows (of R = T*K) and experts one launch covers. */
function span(d: ExpertsDims): { rows: number; ne: number } {
  const [e0, e1] = d.experts ?? [0, d.E];
  return { rows: (d.T * d.K * (e1 - e0)) / d.E, ne: e1 - e0 };
}

/** Bytes of one expert's [rows, cols] weight matrix in d.wDtype (q4: nibbles + a (scale, zero) word per group). */
function weightBytes(d: ExpertsDims, rows: number, cols: number): number {
  if (d.wDtype === 'q4') return rows * (cols / 2 + 4 * Math.ceil(cols / (d.groupSize ?? DEFAULT_GROUP)));
  return rows * cols * (d.wDtype === 'bf16' ? 2 : 4);
}

/** The GEMMs' params; with a sparse table `s`, its rowptr (forward or, `fwd` false, backward), cols, pos and nnz. */
export function expertsParams(d: ExpertsDims, s: SparseTableGpu | null = null, fwd = true): Uint32Array {
  const o = [d.gateOffset ?? 0, d.upOffset ?? 0, d.downOffset ?? 0];
  const [e0, e1] = d.experts ?? [0, d.E];
  const sp = s ? [fwd ? s.t.fPtr : s.t.bPtr, s.t.cols, s.t.bPos, s.t.nnz] : [0, 0, 0, 0];
  return Uint32Array.from([d.H, d.IE, d.K, ...o, d.T, d.E, d.gateSz ?? 0, d.upSz ?? 0, d.downSz ?? 0, e0, e1, ...sp, 0, 0, 0]);
}

/**
 * The sparse bindings (table, Δ) of a GEMM: the table's when it has entries, else `none` twice (an unread binding), and
 * the table's launch arithmetic (docs/cost-model.md): every row tile of an expert reads, over its column tiles, the
 * rowptr word of each of the expert's `keys` keys and `words` u32/f32 per entry (col, Δ; backward also pos), and adds
 * each entry once. Uniform routing and entries: an expert's rows fill ceil(rows / EXPERT_TILE_M) tiles, its entries are
 * nnz / E. An expert's row tiles are consecutive workgroups, so its part of the table (a strip) is read once when it
 * fits GEMM_CACHE_BYTES (as the weights, read by every row tile, are counted once), else once per row tile.
 */
function sparseOf(s: SparseTableGpu | null | undefined, none: GPUBuffer, d: ExpertsDims, keys: number, words: number): { bind: GPUBuffer[]; flops: number; bytes: number } {
  if (!s || s.t.nnz === 0) return { bind: [none, none], flops: 0, bytes: 0 };
  const { rows, ne } = span(d);
  const tiles = Math.ceil(rows / ne / EXPERT_TILE_M);
  const strip = 4 * (keys + (words * s.t.nnz) / d.E);
  const reads = strip <= GEMM_CACHE_BYTES ? 1 : tiles;
  return { bind: [s.tab, s.delta], flops: ne * tiles * (s.t.nnz / d.E), bytes: reads * ne * strip };
}

function combineParams(T: number, H: number, K: number, weighted: boolean): Uint32Array {
  return Uint32Array.from([T, H, K, weighted ? 1 : 0]);
}

const groups = (n: number, per: number) => Math.max(1, Math.min(MAX_GROUPS, Math.ceil(n / per)));

// ---------------------------------------------------------------------------------------------------------------
// forward

/** out [T, H] = sum_k topW[t,k] * Y[slot(t,k)];  saved G, U, A [R, IE], Y [R, H] <- x [T, H], weights, topW [T, K]. */
export function expertsForward(
  enc: Encoder,
  out: GPUBuffer,
  s: ExpertSaved<GPUBuffer>,
  x: GPUBuffer,
  w: ExpertWeights<GPUBuffer>,
  topW: GPUBuffer,
  route: ExpertRouting<GPUBuffer>,
  d: ExpertsDims,
): void {
  expertsGateUp(enc, s, x, w, route, d);
  expertsDown(enc, s.Y, s.A, w, route, d);
  expertsCombine(enc, out, s.Y, route.slot, topW, d.T, d.H, d.K);
}

/**
 * G, U, A [R, IE] (=) <- x [T, H] gathered per sorted row, gate/up. Forward 1/3. With `sparse` (the G table of a 4-bit
 * base, ops/experts_q4.ts): gate/up = W0 + Δ, Δ added to each staged weight slice.
 */
export function expertsGateUp(enc: Encoder, s: Pick<ExpertSaved<GPUBuffer>, 'G' | 'U' | 'A'>, x: GPUBuffer, w: ExpertWeights<GPUBuffer>, route: ExpertRouting<GPUBuffer>, d: ExpertsDims, sparse?: SparseTableGpu | null): void {
  const gu = kernel(enc.gpu, { name: 'experts.gate_up', code: gateUpSrc, entryPoint: 'gate_up', constants: gemmConstants(enc.gpu, 'gate_up', d) });
  // G = x gate^T, U = x up^T over each row's expert; x rows gathered, gate and up read, G, U, A written
  const { rows, ne } = span(d);
  const sp = sparseOf(sparse, route.tiles, d, 2 * d.IE, 2);
  const cost = { flops: 2 * 2 * rows * d.H * d.IE + sp.flops, bytes: 4 * rows * d.H + 2 * ne * weightBytes(d, d.IE, d.H) + 3 * 4 * rows * d.IE + 4 * rows + sp.bytes };
  gu.dispatch(enc, [x, w.gate, w.up, route.rowPair, route.tiles, s.G, s.U, s.A, ...sp.bind], [colTiles(enc.gpu, d.IE, 4), maxTilesOf(d)], expertsParams(d, sparse), cost);
}

/** Y [R, H] (=) <- A [R, IE], down. Forward 2/3. With `sparse` (the D table): down = W0 + Δ. */
export function expertsDown(enc: Encoder, Y: GPUBuffer, A: GPUBuffer, w: ExpertWeights<GPUBuffer>, route: ExpertRouting<GPUBuffer>, d: ExpertsDims, sparse?: SparseTableGpu | null): void {
  const dn = kernel(enc.gpu, { name: 'experts.down', code: downSrc, entryPoint: 'down', constants: gemmConstants(enc.gpu, 'down', d) });
  const { rows, ne } = span(d);
  const sp = sparseOf(sparse, route.tiles, d, d.H, 2);
  const cost = { flops: 2 * rows * d.IE * d.H + sp.flops, bytes: 4 * rows * d.IE + ne * weightBytes(d, d.H, d.IE) + 4 * rows * d.H + sp.bytes };
  dn.dispatch(enc, [A, w.down, route.tiles, Y, ...sp.bind], [colTiles(enc.gpu, d.H, 8), maxTilesOf(d)], expertsParams(d, sparse), cost);
}

/** out [T, H] = sum_k w[t,k] * rows[slot(t,k)], w = topW [T, K] or 1 when topW is null. rows [R, H]. */
export function expertsCombine(enc: Encoder, out: GPUBuffer, rows: GPUBuffer, slot: GPUBuffer, topW: GPUBuffer | null, T: number, H: number, K: number): void {
  const k = kernel(enc.gpu, { name: 'experts.combine', code: combineSrc, entryPoint: 'combine', constants: { WG } });
  const cost = { flops: 2 * T * K * H, bytes: 4 * T * K * H + 4 * T * H + 8 * T * K };
  k.dispatch(enc, [rows, slot, topW ?? rows, out], [groups(T * H, WG)], combineParams(T, H, K, topW !== null), cost);
}

// ---------------------------------------------------------------------------------------------------------------
// backward

/**
 * dx [T, H] (=), dTopW [T, K] (=), per-row grads dY, dG, dU (=) <- dOut [T, H], weights, topW, saved G, U, Y.
 * Everything the weight gradients need stays in `g` (dY, dG, dU) and `s` (A); x is not read here.
 */
export function expertsBackward(
  enc: Encoder,
  dx: GPUBuffer,
  dTopW: GPUBuffer,
  g: ExpertGrads<GPUBuffer>,
  dOut: GPUBuffer,
  w: ExpertWeights<GPUBuffer>,
  topW: GPUBuffer,
  s: ExpertSaved<GPUBuffer>,
  route: ExpertRouting<GPUBuffer>,
  d: ExpertsDims,
): void {
  expertsBackwardCombine(enc, dTopW, g.dY, dOut, s.Y, topW, route, d);
  expertsBackwardAct(enc, g.dG, g.dU, g.dY, w, s.G, s.U, route, d);
  expertsBackwardInput(enc, g.dXr, g.dG, g.dU, w, route, d);
  expertsCombine(enc, dx, g.dXr, route.slot, null, d.T, d.H, d.K);
}

/** dTopW [T, K] (=) = dOut[t]·Y[slot], dY [R, H] (=) = topW * dOut[t] <- dOut [T, H], Y [R, H], topW [T, K]. Backward 1/4. */
export function expertsBackwardCombine(enc: Encoder, dTopW: GPUBuffer, dY: GPUBuffer, dOut: GPUBuffer, Y: GPUBuffer, topW: GPUBuffer, route: ExpertRouting<GPUBuffer>, d: ExpertsDims): void {
  const b = kernel(enc.gpu, { name: 'experts.backward_combine', code: bwdSrc, entryPoint: 'backward_combine', constants: { WG: 64, TPP: 8 } });
  // dTopW = dOut . Y (2H a pair), dY = topW * dOut (H a pair)
  const R = d.T * d.K;
  const cost = { flops: 3 * R * d.H, bytes: 4 * d.T * d.H + 2 * 4 * R * d.H + 12 * R };
  b.dispatch(enc, [dOut, Y, route.slot, topW, dTopW, dY], [groups(d.T * d.K, 64 / 8)], expertsParams(d), cost);
}

/** dG, dU [R, IE] (=) <- dY [R, H], down, saved G, U [R, IE]. Backward 2/4. With `sparse` (the D table, transposed): down = W0 + Δ. */
export function expertsBackwardAct(enc: Encoder, dG: GPUBuffer, dU: GPUBuffer, dY: GPUBuffer, w: ExpertWeights<GPUBuffer>, G: GPUBuffer, U: GPUBuffer, route: ExpertRouting<GPUBuffer>, d: ExpertsDims, sparse?: SparseTableGpu | null): void {
  const act = kernel(enc.gpu, { name: 'experts.backward_act', code: actSrc, entryPoint: 'backward_act', constants: gemmConstants(enc.gpu, 'backward_act', d) });
  // dA = dY down (per row's expert), then the SwiGLU backward into dG, dU
  const { rows, ne } = span(d);
  const sp = sparseOf(sparse, route.tiles, d, d.IE, 3);
  const cost = { flops: 2 * rows * d.H * d.IE + sp.flops, bytes: 4 * rows * d.H + ne * weightBytes(d, d.H, d.IE) + 4 * 4 * rows * d.IE + sp.bytes };
  act.dispatch(enc, [dY, w.down, G, U, route.tiles, dG, dU, ...sp.bind], [colTiles(enc.gpu, d.IE, 8), maxTilesOf(d)], expertsParams(d, sparse, false), cost);
}

/**
 * dXr [R, H] (=) = dG·gate_e + dU·up_e <- dG, dU [R, IE], gate/up. Backward 3/4 (experts_combine gathers dx). With
 * `sparse` (the G table, transposed): gate/up = W0 + Δ.
 */
export function expertsBackwardInput(enc: Encoder, dXr: GPUBuffer, dG: GPUBuffer, dU: GPUBuffer, w: ExpertWeights<GPUBuffer>, route: ExpertRouting<GPUBuffer>, d: ExpertsDims, sparse?: SparseTableGpu | null): void {
  const inp = kernel(enc.gpu, { name: 'experts.backward_input', code: inSrc, entryPoint: 'backward_input', constants: gemmConstants(enc.gpu, 'backward_input', d) });
  const { rows, ne } = span(d);
  const sp = sparseOf(sparse, route.tiles, d, 2 * d.H, 3);
  const cost = { flops: 2 * 2 * rows * d.IE * d.H + sp.flops, bytes: 2 * 4 * rows * d.IE + 2 * ne * weightBytes(d, d.IE, d.H) + 4 * rows * d.H + sp.bytes };
  inp.dispatch(enc, [dG, dU, w.gate, w.up, route.tiles, dXr, ...sp.bind], [colTiles(enc.gpu, d.H, 8), maxTilesOf(d)], expertsParams(d, sparse, false), cost);
}

/**
 * Dense expert weight grads, accumulated (+=) unless accumulate is false: dGate, dUp [E, IE, H] = dG^T·x and dU^T·x
 * over each expert's rows; dDown [E, H, IE] = dY^T·A. Any of the three may be null. f32 outputs. accumulate 'abs': += |grad|
 * (importance sums, without a dense scratch). With d.experts = [e0, e1]: those experts only, expert e at slot e - e0.
 */
export function expertsBackwardWeights(
  enc: Encoder,
  dW: ExpertWeights<Binding | null>,
  x: GPUBuffer,
  s: ExpertSaved<GPUBuffer>,
  g: ExpertGrads<GPUBuffer>,
  route: ExpertRouting<GPUBuffer>,
  d: ExpertsDims,
  accumulate: boolean | 'abs' = true,
): void {
  const t = expertsTiling(enc.gpu);
  const [e0, e1] = d.experts ?? [0, d.E];
  const k = kernel(enc.gpu, { name: 'experts.backward_weight', code: wSrc, entryPoint: 'backward_weight', constants: gemmConstants(enc.gpu, 'backward_weight', null) });
  // (left [R, N], right [*, C] gathered through rowPair when gather) -> out [E, N, C]
  const one = (out: Binding | null, left: GPUBuffer, right: GPUBuffer, N: number, C: number, gather: boolean) => {
    if (!out) return;
    const p = Uint32Array.from([N, C, d.K, gather ? 1 : 0, accumulate === 'abs' ? 2 : accumulate ? 1 : 0, d.E, e0, 0]);
    // out [e, N, C] (+)= left^T right over the expert's rows; left and right rows read, out written (and read when accumulating)
    const { rows, ne } = span(d);
    const cost = { flops: 2 * rows * N * C, bytes: 4 * rows * (N + C) + 4 * ne * N * C * (accumulate === false ? 1 : 2) };
    k.dispatch(enc, [left, right, route.rowPair, route.offsets, out], [Math.ceil(C / (8 * t.NX)), Math.ceil(N / 64), e1 - e0], p, cost);
  };
  one(dW.gate, g.dG, x, d.IE, d.H, true);
  one(dW.up, g.dU, x, d.IE, d.H, true);
  one(dW.down, g.dY, s.A, d.H, d.IE, false);
}
