// Routed experts on a 4-bit base with trained entries, without materializing f32 weights: the grouped GEMMs of
// ops/experts.ts read the 4-bit W0 (dequantized in registers) and, given a table of this file, add the trained entries'
// part to each weight slice they stage: Δ = current value − dequantized W0 at every entry that differs (active masters
// and the overlay of dropped, once-trained entries). Per selection tensor a host-built table orders its entries by
// weight row (forward: output column of G/U or Y) and transposed (backward: output column of dG/dU or dXr), so one
// thread per staged column walks that column's entries in reduction order. Oracle: ref/experts_q4.ts (the products'
// Δ part).
//
// Index spaces (train/selection.ts): G = gate|up [2, E, IE, H] flat, D = down [E, H, IE] flat. Both are blocks of
// M rows of length L: flat f = (b·M + m)·L + l with b = part·E + e (G: M = IE, L = H) or e (D: M = H, L = IE). The
// forward key of f is its row b·M + m (other index l), the backward key b·L + l (other index m). Both other indices share
// one u32 per entry (16 bits each), so a table costs 8 bytes per entry and Δ 4.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import { DEFAULT_GROUP } from '../quant/format.ts';
import type { ExpertsDims } from './experts.ts';
import deltaSrc from '../../../shaders/experts_q4_delta.wgsl?raw';

/** Bit of a forward column field: set = the entry is in the overlay (its value at the next overlay slot of its row). */
export const OVERLAY = 0x8000;

/** One selection tensor's geometry: blocks of M rows of length L (see the header). */
export interface SparseGeometry { blocks: number; M: number; L: number }

export const gGeometry = (d: Pick<ExpertsDims, 'E' | 'IE' | 'H'>): SparseGeometry => ({ blocks: 2 * d.E, M: d.IE, L: d.H });
export const dGeometry = (d: Pick<ExpertsDims, 'E' | 'IE' | 'H'>): SparseGeometry => ({ blocks: d.E, M: d.H, L: d.IE });

/**
 * A selection tensor's entries as one u32 table (word offsets below), 8 bytes per entry: forward rowptr [blocks·M + 1]
 * and the active entries before each forward row [blocks·M + 1] (an entry's master slot = that + the active entries
 * before it in its row; overlay slots likewise); backward rowptr [blocks·L + 1]; cols [nnz], whose low 16 bits are the
 * forward entry j's l (OVERLAY bit set for an overlay entry) and high 16 bits the backward entry j's m; pos [nnz] (the
 * backward entry's place in forward order, where its Δ is). `flat` [nnz]: each forward entry's index (host only).
 */
export interface SparseTable {
  words: Uint32Array;
  flat: Uint32Array;
  nnz: number;
  fPtr: number; fAct: number; bPtr: number; cols: number; bPos: number;
}

/**
 * The table of `active` (ascending, master slot = position) and `overlay` (ascending, disjoint from active, overlay
 * slot = position). Throws naming the index when one lies outside the tensor, or when rows are too long for 16-bit columns.
 */
export function buildSparseTable(g: SparseGeometry, active: Uint32Array, overlay: Uint32Array): SparseTable {
  const { blocks, M, L } = g;
  if (L > OVERLAY || M > 0x10000) throw new RangeError(`sparse table: blocks of ${M} rows of ${L} exceed its 16-bit columns (at most 65536 rows of 32768)`);
  const numel = blocks * M * L;
  const nnz = active.length + overlay.length;
  const nF = blocks * M, nB = blocks * L;
  const fPtr = 0, fAct = nF + 1, bPtr = fAct + nF + 1, cols = bPtr + nB + 1, bPos = cols + nnz;
  const w = new Uint32Array(bPos + nnz);
  const flat = new Uint32Array(nnz);
  // merge the two ascending lists into forward (flat) order
  let a = 0, o = 0;
  for (let j = 0; j < nnz; j++) {
    const takeA = o >= overlay.length || (a < active.length && active[a]! < overlay[o]!);
    const f = takeA ? active[a++]! : overlay[o++]!;
    if (f >= numel) throw new RangeError(`sparse table: index ${f} outside the tensor's ${numel} entries`);
    flat[j] = f;
    const r = Math.floor(f / L);
    w[cols + j] = (f % L) | (takeA ? 0 : OVERLAY);
    w[fPtr + r + 1]!++;
    if (takeA) w[fAct + r + 1]!++;
    w[bPtr + Math.floor(r / M) * L + (f % L) + 1]!++;
  }
  for (let r = 0; r < nF; r++) (w[fPtr + r + 1]! += w[fPtr + r]!, w[fAct + r + 1]! += w[fAct + r]!);
  for (let r = 0; r < nB; r++) w[bPtr + r + 1]! += w[bPtr + r]!;
  // backward order: stable counting sort by backward key (within a key, ascending m as in forward order)
  const next = w.slice(bPtr, bPtr + nB);
  for (let j = 0; j < nnz; j++) {
    const f = flat[j]!;
    const r = Math.floor(f / L);
    const at = next[Math.floor(r / M) * L + (f % L)]!++;
    w[cols + at] = (w[cols + at]! | ((r % M) << 16)) >>> 0;
    w[bPos + at] = j;
  }
  return { words: w, flat, nnz, fPtr, fAct, bPtr, cols, bPos };
}

/** u32 words of a table of at most `nnz` entries (the memory plan's bound). */
export const sparseTableWords = (g: SparseGeometry, nnz: number): number => g.blocks * (2 * g.M + g.L) + 3 + 2 * nnz;

/** A table on the GPU with its Δ buffer [nnz] (see expertsQ4Delta). */
export interface SparseTableGpu { tab: GPUBuffer; delta: GPUBuffer; t: Omit<SparseTable, 'words' | 'flat'> }

const WG = 256;
const MAX_GROUPS = 65535;

/** The 4-bit W0 of one tensor: its buffer (codes from word 0, (scale, zero) words from szWord), row length L, group G. */
export interface Q4Base { buf: GPUBuffer; szWord: number; L: number; G?: number }

/** delta [nnz] = (masters or overlay values of each entry) − dequantized W0 at its index; one thread per forward row. */
export function expertsQ4Delta(enc: Encoder, s: SparseTableGpu, master: GPUBuffer, overlay: GPUBuffer | null, w0: Q4Base): void {
  const n = s.t.nnz;
  if (n === 0) return;
  const G = w0.G ?? DEFAULT_GROUP;
  const rows = s.t.fAct - s.t.fPtr - 1;
  const k = kernel(enc.gpu, { name: 'experts_q4.delta', code: deltaSrc, entryPoint: 'delta_rows', constants: { WG, QG: G } });
  const gx = Math.min(MAX_GROUPS, Math.ceil(rows / WG));
  const params = Uint32Array.from([rows, s.t.fPtr, s.t.fAct, s.t.cols, w0.L, w0.szWord, 0, 0]);
  // per row: its two rowptr and active-count words; per entry: col, value, a code word and a (scale, zero) word read; Δ written
  k.dispatch(enc, [s.tab, master, overlay ?? master, w0.buf, s.delta], [gx, Math.ceil(rows / (WG * gx))], params, { flops: 3 * n, bytes: 12 * rows + 20 * n });
}
