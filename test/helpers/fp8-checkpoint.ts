// FP8 test data: nearest-E4M3 quantization with power-of-two 128×128 block scales (so every dequantized value is bf16-exact),
// and an in-memory FP8 copy of a checkpoint (each `*_proj.weight` as F8_E4M3 + `_scale_inv`) beside its bf16 dequantized twin.
import { openCheckpoint, type Checkpoint } from '../../src/engine/io/checkpoint.ts';
import { decodeF32, encodeBf16, f8e4m3ToF32 } from '../../src/engine/io/dtype.ts';
import { fileMapFolder } from '../../src/engine/io/folder.ts';
import { encodeSafetensors, type TensorData } from '../../src/engine/io/safetensors-write.ts';

/** The finite non-negative E4M3 codes (0x00..0x7e), ascending in value. */
const POS = Array.from({ length: 0x7f }, (_, b) => [b, f8e4m3ToF32(b)] as const);

/** The E4M3 byte nearest to x (|x| ≤ 448; ties to the lower magnitude). */
export function encodeE4m3(x: number): number {
  const a = Math.abs(x);
  let lo = 0, hi = POS.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (POS[mid]![1] <= a) lo = mid;
    else hi = mid;
  }
  const b = a - POS[lo]![1] <= POS[hi]![1] - a ? POS[lo]![0] : POS[hi]![0];
  return x < 0 && b !== 0 ? b | 0x80 : b;
}

/** w [rows, cols] -> fp8 codes and the per-block scale_inv [ceil(rows/128), ceil(cols/128)] (powers of two). */
export function quantizeBlocks(w: ArrayLike<number>, rows: number, cols: number, block = 128): { q: Uint8Array; scaleInv: Float32Array } {
  const sr = Math.ceil(rows / block), sc = Math.ceil(cols / block);
  const scaleInv = new Float32Array(sr * sc);
  const q = new Uint8Array(rows * cols);
  for (let br = 0; br < sr; br++) {
    for (let bc = 0; bc < sc; bc++) {
      let amax = 0;
      for (let r = br * block; r < Math.min(rows, (br + 1) * block); r++) for (let c = bc * block; c < Math.min(cols, (bc + 1) * block); c++) amax = Math.max(amax, Math.abs(w[r * cols + c]!));
      const s = amax === 0 ? 1 : 2 ** Math.ceil(Math.log2(amax / 448));
      scaleInv[br * sc + bc] = s;
      for (let r = br * block; r < Math.min(rows, (br + 1) * block); r++) for (let c = bc * block; c < Math.min(cols, (bc + 1) * block); c++) q[r * cols + c] = encodeE4m3(w[r * cols + c]! / s);
    }
  }
  return { q, scaleInv };
}

export interface Fp8Twins {
  /** `*_proj.weight` as F8_E4M3 + `*_proj.weight_scale_inv`, every other tensor as stored. */
  fp8: Checkpoint;
  /** The same tensors with the fp8 ones dequantized (exactly) to bf16. */
  bf16: Checkpoint;
  /** Names of the quantized weights. */
  quantized: string[];
}

function asBytes(a: ArrayBufferView): Uint8Array<ArrayBuffer> {
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength) as ArrayBuffer);
}

async function memoryCheckpoint(tensors: TensorData[]): Promise<Checkpoint> {
  return openCheckpoint(fileMapFolder(new Map([['model.safetensors', new Blob(encodeSafetensors(tensors))]])));
}

/** FP8 and bf16 twins of `ckpt` (its 2-D `*_proj.weight` tensors quantized). */
export async function fp8Twins(ckpt: Checkpoint): Promise<Fp8Twins> {
  const fp8: TensorData[] = [];
  const bf16: TensorData[] = [];
  const quantized: string[] = [];
  for (const [name, info] of ckpt.tensors) {
    const data = asBytes(await ckpt.readTensor(name));
    if (!name.endsWith('_proj.weight') || info.shape.length !== 2) {
      fp8.push({ name, dtype: info.dtype, shape: info.shape, data });
      bf16.push({ name, dtype: info.dtype, shape: info.shape, data });
      continue;
    }
    const [rows, cols] = info.shape as [number, number];
    const { q, scaleInv } = quantizeBlocks(decodeF32(info.dtype, data), rows, cols);
    fp8.push({ name, dtype: 'F8_E4M3', shape: info.shape, data: asBytes(q) });
    fp8.push({ name: `${name}_scale_inv`, dtype: 'F32', shape: [Math.ceil(rows / 128), Math.ceil(cols / 128)], data: asBytes(scaleInv) });
    const deq = new Float32Array(rows * cols);
    for (let i = 0; i < deq.length; i++) deq[i] = f8e4m3ToF32(q[i]!) * scaleInv[Math.floor(Math.floor(i / cols) / 128) * Math.ceil(cols / 128) + Math.floor((i % cols) / 128)]!;
    bf16.push({ name, dtype: 'BF16', shape: info.shape, data: encodeBf16(deq) });
    quantized.push(name);
  }
  return { fp8: await memoryCheckpoint(fp8), bf16: await memoryCheckpoint(bf16), quantized };
}
