// FP8 E4M3 block-scaled weights (DeepSeek-V3 checkpoints) to f32 on import: W[r, c] = fp8(q[r, c]) · scaleInv[r/128, c/128],
// with `<name>_scale_inv` (F32 [ceil(rows/128), ceil(cols/128)]) stored beside the F8_E4M3 `<name>`. Pure, no I/O.

import { f8e4m3ToF32 } from './dtype.ts';

/** Block edge of DeepSeek-V3's `weight_block_size` [128, 128]. */
export const FP8_BLOCK = 128;

/** Name of the scale tensor that goes with an FP8 weight (`….weight` → `….weight_scale_inv`). */
export function fp8ScaleName(weightName: string): string {
  return `${weightName}_scale_inv`;
}

/** [ceil(rows/block), ceil(cols/block)]: the scale grid of a [rows, cols] weight. */
export function fp8ScaleShape(rows: number, cols: number, block = FP8_BLOCK): [number, number] {
  return [Math.ceil(rows / block), Math.ceil(cols / block)];
}

let table: Float32Array | null = null;

/** Every E4M3 byte's value (0x7f / 0xff are NaN). */
function e4m3Table(): Float32Array {
  if (!table) {
    table = new Float32Array(256);
    for (let b = 0; b < 256; b++) table[b] = f8e4m3ToF32(b);
  }
  return table;
}

/**
 * out [rows, cols] f32 = e4m3(q [rows, cols]) · scaleInv [ceil(rows/block), ceil(cols/block)] of the element's block.
 * A 1-D weight is rows = 1. Throws when the sizes disagree.
 */
export function dequantFp8Blocks(out: Float32Array, q: Uint8Array, scaleInv: ArrayLike<number>, rows: number, cols: number, block = FP8_BLOCK): void {
  const [sr, sc] = fp8ScaleShape(rows, cols, block);
  if (q.length !== rows * cols) throw new RangeError(`fp8: ${q.length} bytes for a [${rows}, ${cols}] weight`);
  if (out.length !== rows * cols) throw new RangeError(`fp8: output holds ${out.length} values, needs ${rows * cols}`);
  if (scaleInv.length !== sr * sc) throw new RangeError(`fp8: ${scaleInv.length} block scales for a [${rows}, ${cols}] weight, expected [${sr}, ${sc}]`);
  const t = e4m3Table();
  for (let r = 0; r < rows; r++) {
    const srow = Math.floor(r / block) * sc;
    const base = r * cols;
    for (let c0 = 0; c0 < cols; c0 += block) {
      const s = scaleInv[srow + c0 / block]!;
      const end = Math.min(cols, c0 + block);
      for (let c = c0; c < end; c++) out[base + c] = t[q[base + c]!]! * s;
    }
  }
}

/** dequantFp8Blocks into a new array; `shape` is the weight's ([rows, cols], or [n] for a vector). */
export function dequantFp8(q: Uint8Array, scaleInv: ArrayLike<number>, shape: readonly number[], block = FP8_BLOCK): Float32Array {
  if (shape.length > 2) throw new RangeError(`fp8: block-scaled weights are 1-D or 2-D, got [${shape.join(', ')}]`);
  const [rows, cols] = shape.length === 2 ? [shape[0]!, shape[1]!] : [1, shape[0] ?? 1];
  const out = new Float32Array(rows * cols);
  dequantFp8Blocks(out, q, scaleInv, rows, cols, block);
  return out;
}
