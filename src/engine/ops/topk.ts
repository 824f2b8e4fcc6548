// Top-k selection of the k largest |x| of a big f32 tensor on the GPU: radix select of the threshold on the float bits
// (3 digit passes), then an ordered compaction. Same signature as ref/topk.ts. indices ascending; ties -> lowest index.

import type { Encoder } from '../gpu/encoder.ts';
import { kernel } from '../gpu/kernel.ts';
import histSrc from '../../../shaders/topk.wgsl?raw';
import selSrc from '../../../shaders/topk_select.wgsl?raw';
import countSrc from '../../../shaders/topk_count.wgsl?raw';
import compactSrc from '../../../shaders/topk_compact.wgsl?raw';
import gatherSrc from '../../../shaders/topk_gather.wgsl?raw';

/** u32 words of the workspace buffer topkSelect needs (histogram, state, per-chunk counts), whatever n. */
export const TOPK_WORKSPACE_WORDS = 2056 + 2 * 1024;

const WG = 256;
/**
 * Most workgroups of a histogram pass and chunks of the compaction. On a CPU adapter every workgroup costs as much as
 * thousands of elements (its 2048-bin clear and merge, its scans; SwiftShader, n = 4M: histogram 2.2 s with 977
 * workgroups, 0.2 s with 64; count + compact 3.5 s with 1024 chunks, 0.9 s with 64), so it gets few.
 */
const MAX_GROUPS = { gpu: 1024, cpu: 64 };
// digits of the 31-bit key (sign cleared): bits 30..20, 19..10, 9..0
const DIGITS: [shift: number, bits: number][] = [
  [20, 11],
  [10, 10],
  [0, 10],
];

export function topkParams(n: number, k: number, pass: number, maxChunks = MAX_GROUPS.gpu): Uint32Array {
  const nChunks = Math.max(1, Math.min(maxChunks, Math.ceil(n / (4 * WG))));   // >= 4 blocks of WG per chunk
  const [shift, bits] = DIGITS[Math.min(pass, 2)]!;
  return Uint32Array.from([n, k, shift, bits, pass, nChunks, Math.ceil(n / nChunks), 0]);
}

/**
 * indices [k] u32 = the indices of the k largest |x[i]| of x [n] f32, ascending (ties at the threshold: lowest indices).
 * workspace [TOPK_WORKSPACE_WORDS] u32 (cleared here). Requires 1 <= k <= n < 2^32. Non-finite x: NaN ranks above inf.
 */
export function topkSelect(enc: Encoder, indices: GPUBuffer, x: GPUBuffer, workspace: GPUBuffer, n: number, k: number): void {
  if (k < 1 || k > n) throw new Error(`topk: k=${k} outside 1..n=${n}`);
  const gpu = enc.gpu;
  const hist = kernel(gpu, { name: 'topk.histogram', code: histSrc, entryPoint: 'histogram', constants: { WG } });
  const sel = kernel(gpu, { name: 'topk.select', code: selSrc, entryPoint: 'select_digit', constants: { WG } });
  const count = kernel(gpu, { name: 'topk.count', code: countSrc, entryPoint: 'count', constants: { WG } });
  const compact = kernel(gpu, { name: 'topk.compact', code: compactSrc, entryPoint: 'compact', constants: { WG } });
  enc.clear(workspace, 0, TOPK_WORKSPACE_WORDS * 4);
  const most = gpu.info.cpu ? MAX_GROUPS.cpu : MAX_GROUPS.gpu;
  const histGroups = Math.max(1, Math.min(most, Math.ceil(n / (16 * WG))));   // >= 16 elements per thread
  for (let pass = 0; pass < DIGITS.length; pass++) {
    const params = topkParams(n, k, pass, most);
    hist.dispatch(enc, [x, workspace], [histGroups], params, { flops: n, bytes: 4 * n });
    sel.dispatch(enc, [workspace], [1], params, { flops: 0, bytes: 4 * TOPK_WORKSPACE_WORDS });
  }
  const params = topkParams(n, k, DIGITS.length, most);
  count.dispatch(enc, [x, workspace], [params[5]!], params, { flops: n, bytes: 4 * n });
  compact.dispatch(enc, [x, workspace, indices], [params[5]!], params, { flops: n, bytes: 4 * n + 4 * k });
}

/**
 * Candidates for a top-k over parts (train/chunked-topk.ts): outVal[dst + j] = x[pick[j]] (bits), outIdx[dst + j] =
 * srcIdx[pick[j]] when srcIdx is given, else base + pick[j], for j < n. x f32, pick/srcIdx/outIdx u32.
 */
export function topkGather(enc: Encoder, outVal: GPUBuffer, outIdx: GPUBuffer, x: GPUBuffer, pick: GPUBuffer, srcIdx: GPUBuffer | null, n: number, dst: number, base = 0): void {
  if (n === 0) return;
  const k = kernel(enc.gpu, { name: 'topk.gather', code: gatherSrc, entryPoint: 'gather', constants: { WG } });
  const cost = { flops: 0, bytes: 4 * n * (srcIdx ? 5 : 4) };
  k.dispatch(enc, [x, pick, srcIdx ?? pick, outVal, outIdx], [Math.max(1, Math.min(65535, Math.ceil(n / WG)))], Uint32Array.from([n, dst, base, srcIdx ? 1 : 0]), cost);
}
