// Routed experts of a layer in 4 bits on the GPU (FORMAT.md): quantized on the way in, one expert at a time through one
// bounded staging buffer, so the full-precision layer never exists on the GPU. The same buffers are read back for the
// stored 4-bit checkpoint (import-q4.ts) and uploaded from it as they are. Also their dequantization.
//
// A layer holds two buffers: gate|up = [2·E·IE rows of H] (gate rows first, then up) and down = [E·H rows of IE]; each
// is the code words, then (from a 256-byte boundary, so both halves can be bound separately) the (scale, zero) words.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, PENDING_BYTES, readBuffer, readF32, uploadPieces, writeBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import type { Dtype } from '../io/dtype.ts';
import type { ModelSpec, TensorEntry } from '../model/spec.ts';
import { quantize, quantizeRandom } from '../ops/quantize.ts';
import { dequantize, dequantizeAt } from '../ops/dequant.ts';
import { q4ExpertLayouts, type Q4BufferLayout } from './format.ts';
import type { ExpertTensor, ExpertWeights } from '../train/weights.ts';
import { toGpuBytes } from '../train/weights.ts';


const codes = (buf: GPUBuffer, L: Q4BufferLayout): GPUBufferBinding => ({ buffer: buf, offset: 0, size: L.qWords * 4 });
const table = (buf: GPUBuffer, L: Q4BufferLayout): GPUBufferBinding => ({ buffer: buf, offset: L.szWord * 4, size: L.groups * 4 });

type Reader = (e: TensorEntry) => Promise<{ dtype: Dtype; bytes: Uint8Array }>;


/**
 * Reads the layer's expert tensors (per expert or fused) and quantizes them on the GPU (HQQ). GPU memory besides the
 * result: one staging buffer of one expert's gate+up (or down) rows in their source precision (bf16 stays bf16).
 */
export async function loadExpertsQ4(gpu: GpuContext, spec: ModelSpec, L: number, entries: TensorEntry[], read: Reader, G: number): Promise<ExpertWeights> {
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const H = spec.hidden;
  const lay = q4ExpertLayouts(spec, G);
  const gu = createBuffer(gpu, { label: `layer${L}.experts.gate_up.q4`, size: lay.gateUp.bytes, kind: 'weights' });
  const dn = createBuffer(gpu, { label: `layer${L}.experts.down.q4`, size: lay.down.bytes, kind: 'weights' });
  const stage = createBuffer(gpu, { label: `layer${L}.experts.staging`, size: 2 * IE * H * 4, kind: 'workspace' });
  // rows [count, K] of `data` from element `from` on -> rows row0.. of the target
  let pending = 0;
  const put = async (data: Uint32Array | Float32Array, bf16: boolean, parts: { from: number; rows: number; row0: number; down: boolean }[]) => {
    // what writeBuffer copies waits in the driver's staging memory until the GPU has run the kernels before it: a slow
    // GPU (a CPU adapter) would otherwise let a whole layer's source (1.2 GB for Qwen3-30B-A3B) pile up in host memory
    if (pending >= PENDING_BYTES) {
      await gpu.device.queue.onSubmittedWorkDone();
      pending = 0;
    }
    pending += data.byteLength;
    writeBuffer(gpu, stage, 0, data);
    const enc = new Encoder(gpu, 'experts.quantize');
    for (const p of parts) {
      const [buf, l, K] = p.down ? [dn, lay.down, IE] : [gu, lay.gateUp, H];
      quantize(enc, codes(buf, l), table(buf, l), stage, { rows: p.rows, K, G, rowOffset: p.row0, wOffset: p.from, bf16 });
    }
    enc.submit();
  };
  for (const e of entries) {
    const { dtype, bytes } = await read(e);
    const bf16 = dtype === 'BF16';
    const all = toGpuBytes(dtype, bytes, bf16 ? 'bf16' : 'f32');
    const words = (elems: number) => (bf16 ? elems / 2 : elems);
    const slice = (x: number, per: number) => all.subarray(words(x * per), words((x + 1) * per));
    if (e.role === 'expert.gate_up_fused') {
      // [E, 2·IE, H]: per expert, gate rows then up rows.
      for (let x = 0; x < E; x++) {
        await put(slice(x, 2 * IE * H), bf16, [{ from: 0, rows: IE, row0: x * IE, down: false }, { from: IE * H, rows: IE, row0: (E + x) * IE, down: false }]);
      }
    } else if (e.role === 'expert.down_fused') {
      for (let x = 0; x < E; x++) await put(slice(x, H * IE), bf16, [{ from: 0, rows: H, row0: x * H, down: true }]);
    } else {
      const x = e.expert!;
      const row0 = e.role === 'expert.gate' ? x * IE : e.role === 'expert.up' ? (E + x) * IE : x * H;
      await put(all, bf16, [{ from: 0, rows: e.role === 'expert.down' ? H : IE, row0, down: e.role === 'expert.down' }]);
    }
  }
  await gpu.device.queue.onSubmittedWorkDone();
  stage.destroy();
  return q4Tensors(gu, dn, spec, G);
}

const q4Tensors = (gu: GPUBuffer, dn: GPUBuffer, spec: ModelSpec, G: number): ExpertWeights => {
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const H = spec.hidden;
  const lay = q4ExpertLayouts(spec, G);
  const t = (buf: GPUBuffer, shape: number[], offset: number, l: Q4BufferLayout): ExpertTensor => ({ buf, dtype: 'q4', shape, offset, q4: { G, sz: l.szWord } });
  return { gate: t(gu, [E, IE, H], 0, lay.gateUp), up: t(gu, [E, IE, H], E * IE * H, lay.gateUp), down: t(dn, [E, H, IE], 0, lay.down) };
};

/** Layer L's routed experts as random 4-bit tensors made on the GPU (quantize_random.wgsl): benchmarks of big shapes. */
export function randomExpertsQ4(gpu: GpuContext, spec: ModelSpec, L: number, G: number): ExpertWeights {
  const lay = q4ExpertLayouts(spec, G);
  const enc = new Encoder(gpu, 'experts.random');
  const mk = (name: string, l: Q4BufferLayout, seed: number): GPUBuffer => {
    const buf = createBuffer(gpu, { label: `layer${L}.experts.${name}.q4`, size: l.bytes, kind: 'weights' });
    quantizeRandom(enc, codes(buf, l), table(buf, l), { qWords: l.qWords, groups: l.groups, seed });
    return buf;
  };
  const ex = q4Tensors(mk('gate_up', lay.gateUp, 2 * L), mk('down', lay.down, 2 * L + 1), spec, G);
  enc.submit();
  return ex;
}

/** The two buffers' bytes exactly as the GPU holds them (codes, zero padding, table): what the stored format keeps. */
export async function readExpertsQ4(gpu: GpuContext, ex: ExpertWeights): Promise<{ gateUp: Uint8Array; down: Uint8Array }> {
  if (ex.gate.dtype !== 'q4' || ex.down.dtype !== 'q4') throw new Error('readExpertsQ4: the experts are not 4-bit');
  if (ex.resident) {
    const enc = new Encoder(gpu, 'experts.q4.read');
    ex.resident(enc);
    enc.submit();
  }
  return { gateUp: new Uint8Array(await readBuffer(gpu, ex.gate.buf)), down: new Uint8Array(await readBuffer(gpu, ex.down.buf)) };
}

/**
 * The 4-bit weights W0 at entries `idx` of a layer's index space G ([gate | up] = [2·E·IE rows of H]: the gate|up buffer's
 * rows) or D ([E·H rows of IE]: the down buffer's), as the dequantization computes them; GPU and host memory: idx only.
 */
export async function expertsQ4At(gpu: GpuContext, ex: ExpertWeights, spec: ModelSpec, space: 'G' | 'D', idx: Uint32Array): Promise<Float32Array> {
  if (ex.gate.dtype !== 'q4' || ex.down.dtype !== 'q4') throw new Error('expertsQ4At: the experts are not 4-bit');
  if (!idx.length) return new Float32Array(0);
  const G = ex.gate.q4!.G;
  const lay = q4ExpertLayouts(spec, G);
  const [L, buf] = space === 'G' ? [lay.gateUp, ex.gate.buf] : [lay.down, ex.down.buf];
  const ib = createBuffer(gpu, { label: `experts.q4.at.${space}.idx`, size: idx.byteLength, kind: 'workspace' });
  const ob = createBuffer(gpu, { label: `experts.q4.at.${space}.values`, size: idx.byteLength, kind: 'workspace' });
  try {
    writeBuffer(gpu, ib, 0, idx);
    const enc = new Encoder(gpu, 'experts.q4.at');
    ex.resident?.(enc);
    dequantizeAt(enc, ob, codes(buf, L), table(buf, L), ib, idx.length, { rows: L.rows, K: L.K, G });
    enc.submit();
    return await readF32(gpu, ob, 0, idx.length);
  } finally {
    ib.destroy();
    ob.destroy();
  }
}

/** Stored bytes of one 4-bit buffer, read a range at a time. */
export interface StoredQ4Part { byteLength: number; read(offset: number, length: number): Promise<Uint8Array> }

/**
 * A layer's 4-bit experts from the stored format (readExpertsQ4's bytes), read and uploaded `piece` bytes at a time with
 * a wait for the GPU between pieces: the host never holds a whole buffer (0.2 GB at Qwen3-30B-A3B, 0.86 GB at 235B),
 * nor do the driver's copies pile up; sizes checked first.
 */
export async function uploadExpertsQ4Pieces(gpu: GpuContext, spec: ModelSpec, L: number, G: number, parts: { gateUp: StoredQ4Part; down: StoredQ4Part }, piece = PENDING_BYTES): Promise<ExpertWeights> {
  if (piece <= 0 || piece % 4) throw new Error(`upload piece must be a positive multiple of 4, got ${piece}`);
  const lay = q4ExpertLayouts(spec, G);
  const mk = async (name: string, part: StoredQ4Part, want: number): Promise<GPUBuffer> => {
    const buf = createBuffer(gpu, { label: `layer${L}.experts.${name}.q4`, size: want, kind: 'weights' });
    await uploadPieces(gpu, buf, want, (o, n) => part.read(o, n), piece);
    return buf;
  };
  for (const [name, part, want] of [['gate_up', parts.gateUp, lay.gateUp.bytes], ['down', parts.down, lay.down.bytes]] as const) {
    if (part.byteLength !== want) throw new Error(`layer ${L}: stored 4-bit ${name} has ${part.byteLength} bytes, group size ${G} needs ${want}`);
  }
  const gu = await mk('gate_up', parts.gateUp, lay.gateUp.bytes);
  return q4Tensors(gu, await mk('down', parts.down, lay.down.bytes), spec, G);
}

/**
 * Dequantizes a layer's 4-bit experts into f32: gu [2·E·IE·H] = gate then up (the trainer's G index space), down
 * [E·H·IE] (D). The f32 values are exactly the ones the fused kernels compute in registers. With `chunk`, only experts
 * e0..e1-1: their gate rows at gu[0..], up rows at gu[upAt..], down rows at down[0..] (expert e at slot e - e0).
 */
export function dequantizeExperts(enc: Encoder, gu: GPUBuffer, down: GPUBuffer, ex: ExpertWeights, spec: ModelSpec, chunk?: { experts: [number, number]; upAt: number }): void {
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const H = spec.hidden;
  const G = ex.gate.q4!.G;
  const lay = q4ExpertLayouts(spec, G);
  const [e0, e1] = chunk?.experts ?? [0, E];
  const n = e1 - e0;
  if (!(0 <= e0 && e0 < e1 && e1 <= E)) throw new RangeError(`dequantizeExperts: experts ${e0}..${e1} outside 0..${E}`);
  ex.resident?.(enc);
  const cg = codes(ex.gate.buf, lay.gateUp), tg = table(ex.gate.buf, lay.gateUp);
  dequantize(enc, gu, cg, tg, { rows: n * IE, K: H, G, rowOffset: e0 * IE });
  dequantize(enc, gu, cg, tg, { rows: n * IE, K: H, G, rowOffset: (E + e0) * IE, outOffset: chunk?.upAt ?? E * IE * H });
  dequantize(enc, down, codes(ex.down.buf, lay.down), table(ex.down.buf, lay.down), { rows: n * H, K: IE, G, rowOffset: e0 * H });
}
