// Loads a checkpoint's tensors onto the GPU as the spec names them: big matrices bf16 (packed two per u32),
// norms, biases and routers f32; routed experts of a layer concatenated per role ([E, IE, H] gate/up, [E, H, IE] down).
// FP8 (E4M3 + `*_scale_inv` block scales) weights are dequantized on the way in. Also: linear layers on a GpuTensor.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, PENDING_BYTES, uploadPaced, uploadPieces, writeBuffer } from '../gpu/buffers.ts';
import type { SparseTableGpu } from '../ops/experts_q4.ts';
import type { Encoder } from '../gpu/encoder.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { decodeF32, packBf16Pairs, encodeBf16, type Dtype } from '../io/dtype.ts';
import { dequantFp8, fp8ScaleName } from '../io/fp8.ts';
import { matmulBackwardBias, matmulBackwardInput, matmulBackwardWeight, matmulForward } from '../ops/matmul.ts';
import type { ModelSpec, TensorEntry, TensorRole } from '../model/spec.ts';
import { globalTensors, layerTensors } from '../model/tensors.ts';
import { loadExpertsQ4, uploadExpertsQ4Pieces, type StoredQ4Part } from '../quant/experts-q4.ts';
import { q4ExpertNames, storedQ4Info } from '../quant/stored-q4.ts';
import { ExpertSlots } from '../quant/expert-slots.ts';

export type WDtype = 'f32' | 'bf16';

/** A weight on the GPU. `offset` is in elements; bf16 elements are packed two per u32 (element i at word i>>1). */
export interface GpuTensor {
  buf: GPUBuffer;
  dtype: WDtype;
  shape: number[];
  offset: number;
}

/** A routed-expert weight: as a GpuTensor, or 4-bit (quant/experts-q4.ts; `offset` in elements, whole rows). */
export interface ExpertTensor {
  buf: GPUBuffer;
  dtype: WDtype | 'q4';
  shape: number[];
  offset: number;
  /** q4 only: group size and the word of `buf` where the (scale, zero) table starts. */
  q4?: { G: number; sz: number };
}

export interface ExpertWeights {
  gate: ExpertTensor; // [E, IE, H]
  up: ExpertTensor; // [E, IE, H]
  down: ExpertTensor; // [E, H, IE]
  /**
   * Hosted experts (LoadOptions.hostExperts, quant/expert-slots.ts): the buffers are a GPU slot shared with another
   * layer; call this before recording anything that reads them on `enc` (it records the copy in when needed).
   */
  resident?(enc: Encoder): void;
}

export interface LayerWeights {
  index: number;
  /** Single tensors by role (attention, norms, router, shared and dense MLP). */
  t: Partial<Record<TensorRole, GpuTensor>>;
  experts: ExpertWeights | null;
  /** Trained 4-bit layers: `experts` (f32) holds one chunk of experts at a time, loaded by the trainer (train/q4-base.ts Q4Base.load). */
  expertChunks?: ExpertChunks;
  /** Not on the GPU (LoadOptions.streamFrozenBelow): loadLayer brings it in when needed. */
  streamed?: boolean;
}

/**
 * A layer's routed experts present one chunk at a time: after load(enc, c), `experts` holds experts e0..e1-1 of
 * ranges[c] (expert e at slot e - e0; gate at the gate offset, up at the up offset). Recorded, not run, by load.
 */
export interface ExpertChunks {
  ranges: [e0: number, e1: number][];
  load(enc: Encoder, chunk: number): void;
  /**
   * When set, forward and backward load no chunk: the GEMMs read the 4-bit W0 (`w`) and add the trained entries as a
   * sparse correction (ops/experts_q4.ts, tables of train/q4-base.ts). `delta`: record the Δ of the current values first
   * (forward; the backward of the same pass reuses it).
   */
  fused?(enc: Encoder, delta: boolean): FusedExperts;
}

/** A trained 4-bit layer's experts without f32 weights: the 4-bit base and the sparse tables of G and D (with Δ). */
export interface FusedExperts { w: ExpertWeights; G: SparseTableGpu; D: SparseTableGpu }

export interface ModelWeights {
  /**
   * [V, H]; null when streamed (frozen layers streamed and untied embeddings: only the layer-major frozen pass reads it,
   * and frozen-pass.ts loads it for that pass with loadEmbed).
   */
  embed: GpuTensor | null;
  finalNorm: GpuTensor; // [H]
  lmHead: GpuTensor; // [V, H] (the embedding when tied)
  layers: LayerWeights[];
  /** The GPU slots of the layers whose 4-bit experts are hosted (LoadOptions.hostExperts). */
  slots?: ExpertSlots;
}

/** Roles kept in f32 on the GPU: small vectors and the router (which trains). */
export const F32_ROLES: ReadonlySet<TensorRole> = new Set<TensorRole>([
  'input_norm', 'post_attn_norm', 'final_norm', 'attn.q_norm', 'attn.k_norm', 'attn.q_a_norm', 'attn.kv_a_norm',
  'attn.q_bias', 'attn.k_bias', 'attn.v_bias', 'attn.o_bias', 'attn.q_a_bias', 'attn.kv_a_bias',
  'router', 'router.bias_correction', 'shared.expert_gate',
]);

export interface LoadOptions {
  /** Layers whose routed experts are kept in f32 (trained layers). */
  f32ExpertLayers?: Set<number>;
  /** Layers whose shared experts (DeepSeek, Qwen2-MoE) are kept in f32, for training them in place. */
  f32SharedLayers?: Set<number>;
  /**
   * Every layer's routed experts in 4 bits (HQQ, groups of groupSize), quantized on the GPU on the way in; this wins over
   * f32ExpertLayers (the trainer rebuilds trained layers' f32 weights from the 4-bit base when it needs them).
   */
  quantizeExperts?: { groupSize: number };
  // A stored 4-bit checkpoint (quant/stored-q4.ts) is detected by itself: its experts are uploaded as stored, as if
  // quantizeExperts had been given with its group size (giving another group size is an error).
  onTensor?: (name: string, done: number, total: number) => void;
  /**
   * Layers below this one (the frozen layers, TRAIN_FROM) are not uploaded: their LayerWeights stay empty (`streamed`)
   * and frozen-pass.ts loads each one with loadLayer when it runs them. When > 0 with untied embeddings, neither is the
   * embedding (embedStreamed): only the frozen pass reads it, and it loads it with loadEmbed.
   */
  streamFrozenBelow?: number;
  /** Makes layer L's routed experts instead of reading them (the synthetic bench: random 4-bit tensors built on the GPU). */
  makeExperts?: (L: number) => ExpertWeights;
  /**
   * A tensor stored as it is used (bf16 or f32) and larger than this is read and uploaded this many bytes at a time
   * (a multiple of 4; default PENDING_BYTES), never whole on the host.
   */
  uploadPiece?: number;
  /**
   * Layers whose 4-bit routed experts stay in host-visible upload buffers, copied into one of two GPU slots when used
   * (quant/expert-slots.ts): the trained layers, when their 4-bit experts do not fit the GPU (plan/memory.ts hostExperts).
   * Needs 4-bit experts (quantizeExperts or a stored 4-bit checkpoint).
   */
  hostExperts?: Set<number>;
}

/** Bytes of a tensor converted to the GPU representation of `dtype`. */
export function toGpuBytes(dtype: Dtype, bytes: Uint8Array, want: WDtype): Uint32Array | Float32Array {
  if (want === 'f32') return decodeF32(dtype, bytes);
  if (dtype === 'BF16') return packBf16Pairs(bytes);
  return packBf16Pairs(encodeBf16(decodeF32(dtype, bytes)));
}

function elements(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function byteSize(n: number, dtype: WDtype): number {
  return dtype === 'f32' ? n * 4 : Math.ceil(n / 2) * 4;
}

/**
 * A checkpoint tensor's bytes with the spec's shape checked. An F8_E4M3 weight with a `<name>_scale_inv` beside it comes
 * back dequantized to F32 (W = fp8 · scale_inv per 128×128 block); one without its scale is an error in an fp8 checkpoint.
 */
export async function readWeight(ckpt: Checkpoint, e: { name: string; shape: number[] }, quantization: string | null = null): Promise<{ dtype: Dtype; bytes: Uint8Array }> {
  const info = ckpt.tensors.get(e.name);
  if (!info) throw new Error(`checkpoint has no tensor "${e.name}"`);
  if (info.shape.join(',') !== e.shape.join(',')) throw new Error(`tensor "${e.name}" has shape [${info.shape}], expected [${e.shape}]`);
  const bytes = await ckpt.readTensor(e.name);
  if (info.dtype !== 'F8_E4M3') return { dtype: info.dtype, bytes };
  const scaleInfo = ckpt.tensors.get(fp8ScaleName(e.name));
  if (!scaleInfo) {
    if (quantization === 'fp8') throw new Error(`fp8 weight "${e.name}" has no "${fp8ScaleName(e.name)}" block scales`);
    return { dtype: info.dtype, bytes };
  }
  const scale = decodeF32(scaleInfo.dtype, await ckpt.readTensor(fp8ScaleName(e.name)));
  const w = dequantFp8(bytes, scale, e.shape);
  return { dtype: 'F32', bytes: new Uint8Array(w.buffer, w.byteOffset, w.byteLength) };
}

export async function loadWeights(gpu: GpuContext, spec: ModelSpec, ckpt: Checkpoint, opts: LoadOptions = {}): Promise<ModelWeights> {
  let done = 0;
  const read = checkpointReader(ckpt, spec, (e) => opts.onTensor?.(e.name, ++done, ckpt.tensors.size));
  const stored = storedQ4Info(ckpt);
  if (stored && opts.quantizeExperts && opts.quantizeExperts.groupSize !== stored.groupSize) {
    throw new Error(`the checkpoint stores experts in 4 bits with group size ${stored.groupSize}; it cannot be loaded with group size ${opts.quantizeExperts.groupSize}`);
  }
  const globals = new Map(globalTensors(spec).map((e) => [e.role, e]));
  const embed = embedStreamed(spec, opts) ? null : await uploadSingle(gpu, globals.get('embed')!, read, opts);
  const finalNorm = await uploadSingle(gpu, globals.get('final_norm')!, read, opts);
  const lmHead = spec.tieEmbeddings ? embed! : await uploadSingle(gpu, globals.get('lm_head')!, read, opts);

  const slots = hostSlots(gpu, spec, opts, stored?.groupSize);
  const layers: LayerWeights[] = [];
  for (let L = 0; L < spec.numLayers; L++) {
    if (L < (opts.streamFrozenBelow ?? 0)) layers.push({ index: L, t: {}, experts: null, streamed: true });
    else layers.push(await loadLayer(gpu, spec, L, ckpt, opts, read, (name) => opts.onTensor?.(name, ++done, ckpt.tensors.size)));
    const lw = layers[L]!;
    // hosted: loaded as usual, then moved into host-visible buffers (the GPU keeps one layer's extra copy at a time)
    if (slots && lw.experts && opts.hostExperts!.has(L)) lw.experts = await slots.adopt(L, lw.experts);
  }
  return { embed, finalNorm, lmHead, layers, ...(slots ? { slots } : {}) };
}

/** The slots of LoadOptions.hostExperts (one per hosted MoE layer, at most two); undefined when none is hosted. */
function hostSlots(gpu: GpuContext, spec: ModelSpec, opts: LoadOptions, storedGroup: number | undefined): ExpertSlots | undefined {
  const hosted = [...(opts.hostExperts ?? [])].filter((L) => spec.layers[L]?.mlp === 'moe' && L >= (opts.streamFrozenBelow ?? 0));
  if (!hosted.length) return undefined;
  const G = storedGroup ?? opts.quantizeExperts?.groupSize;
  if (G === undefined || opts.makeExperts) throw new Error('hostExperts: the experts must be 4-bit, from a checkpoint (quantizeExperts or a stored 4-bit checkpoint)');
  return new ExpertSlots(gpu, spec, G, Math.min(2, hosted.length));
}

/** The embedding stays off the GPU (ModelWeights.embed null): frozen layers streamed and the LM head not the embedding. */
export function embedStreamed(spec: ModelSpec, opts: Pick<LoadOptions, 'streamFrozenBelow'>): boolean {
  return (opts.streamFrozenBelow ?? 0) > 0 && !spec.tieEmbeddings;
}

/** The embedding on the GPU as loadWeights would upload it (for a streamed one; the caller destroys its buffer). */
export function loadEmbed(gpu: GpuContext, spec: ModelSpec, ckpt: Checkpoint, opts: LoadOptions, read: Reader = checkpointReader(ckpt, spec)): Promise<GpuTensor> {
  return uploadSingle(gpu, globalTensors(spec).find((e) => e.role === 'embed')!, read, opts);
}

/**
 * Rows `ids` (ascending, distinct, each < vocab) of the embedding, as loadEmbed uploads them, in a table
 * [ids.length, H] (runs of consecutive ids read at once): what a streamed frozen pass needs of a 0.6 GB table for a few
 * windows. Null when the checkpoint stores the embedding in another dtype than the GPU's (loadEmbed converts it whole).
 */
export async function loadEmbedRows(gpu: GpuContext, spec: ModelSpec, ckpt: Checkpoint, opts: LoadOptions, ids: Uint32Array, read: Reader = checkpointReader(ckpt, spec)): Promise<GpuTensor | null> {
  const e = globalTensors(spec).find((x) => x.role === 'embed')!;
  const want: WDtype = F32_ROLES.has(e.role) ? 'f32' : 'bf16';
  const stored = read.stored?.(e);
  if (!stored || stored.dtype !== (want === 'bf16' ? 'BF16' : 'F32') || spec.hidden % 2 || ids.length === 0) return null;
  const rowBytes = spec.hidden * (want === 'bf16' ? 2 : 4);
  const rows = new Uint8Array(ids.length * rowBytes);
  for (let i = 0; i < ids.length;) {
    let j = i + 1;
    while (j < ids.length && ids[j] === ids[j - 1]! + 1) j++;
    rows.set(await stored.read(ids[i]! * rowBytes, (j - i) * rowBytes), i * rowBytes);
    i = j;
  }
  stored.done();
  const buf = createBuffer(gpu, { label: `${e.name} rows`, size: rows.byteLength, kind: 'weights' });
  await uploadPaced(gpu, buf, 0, rows);
  return { buf, dtype: want, shape: [ids.length, spec.hidden], offset: 0 };
}

/** A checkpoint tensor the spec expects, converted as readWeight does. */
export async function readEntry(ckpt: Checkpoint, spec: ModelSpec, e: TensorEntry): Promise<{ dtype: Dtype; bytes: Uint8Array }> {
  if (!ckpt.tensors.has(e.name)) throw new Error(`checkpoint has no tensor "${e.name}" (expected by the ${spec.arch} spec)`);
  return readWeight(ckpt, e, spec.quantization);
}

async function uploadSingle(gpu: GpuContext, e: TensorEntry, read: Reader, opts: LoadOptions, L = -1): Promise<GpuTensor> {
  const want: WDtype = F32_ROLES.has(e.role) || (e.role.startsWith('shared.') && opts.f32SharedLayers?.has(L)) ? 'f32' : 'bf16';
  const stored = read.stored?.(e);
  const piece = opts.uploadPiece ?? PENDING_BYTES;
  if (piece % 4) throw new Error(`uploadPiece must be a multiple of 4, got ${piece}`);
  if (stored && stored.byteLength > piece && (want === 'bf16' ? stored.dtype === 'BF16' : stored.dtype === 'F32')) {
    // uploaded as stored, a piece at a time: the host never holds the whole tensor (an LM head: 0.6–1.2 GB)
    const buf = createBuffer(gpu, { label: e.name, size: byteSize(elements(e.shape), want), kind: 'weights' });
    // a bf16 tensor with an odd count: its last pair's high half is 0, as packBf16Pairs
    await uploadPieces(gpu, buf, stored.byteLength, async (o, n) => (n % 4 ? padTo4(await stored.read(o, n)) : stored.read(o, n)), piece);
    stored.done();
    return { buf, dtype: want, shape: e.shape, offset: 0 };
  }
  const { dtype, bytes } = await read(e);
  const data = toGpuBytes(dtype, bytes, want);
  const buf = createBuffer(gpu, { label: e.name, size: byteSize(elements(e.shape), want), kind: 'weights' });
  await uploadPaced(gpu, buf, 0, data);
  return { buf, dtype: want, shape: e.shape, offset: 0 };
}

/**
 * Layer L's weights on the GPU as loadWeights puts them there (each in buffers of its own; destroyLayer frees them).
 * A stored 4-bit checkpoint's experts are uploaded as stored.
 */
export async function loadLayer(
  gpu: GpuContext,
  spec: ModelSpec,
  L: number,
  ckpt: Checkpoint,
  opts: LoadOptions,
  read: Reader = checkpointReader(ckpt, spec),
  onRaw: (name: string) => void = () => {},
): Promise<LayerWeights> {
  const t: LayerWeights['t'] = {};
  const expertEntries: TensorEntry[] = [];
  for (const e of layerTensors(spec, L)) {
    if (e.role.startsWith('expert.')) expertEntries.push(e);
    else t[e.role] = await uploadSingle(gpu, e, read, opts, L);
  }
  const stored = storedQ4Info(ckpt);
  const q4 = opts.quantizeExperts;
  const experts = !expertEntries.length
    ? null
    : opts.makeExperts
      ? opts.makeExperts(L)
      : stored
      ? await loadStoredExperts(gpu, spec, L, ckpt, stored.groupSize, onRaw, opts.uploadPiece)
      : q4
      ? await loadExpertsQ4(gpu, spec, L, expertEntries, read, q4.groupSize)
      : await loadExperts(gpu, spec, L, expertEntries, read, opts.f32ExpertLayers?.has(L) ? 'f32' : 'bf16');
  return { index: L, t, experts };
}

async function loadStoredExperts(gpu: GpuContext, spec: ModelSpec, L: number, ckpt: Checkpoint, G: number, onRaw: (name: string) => void, piece?: number): Promise<ExpertWeights> {
  const names = q4ExpertNames(spec, L);
  const part = (name: string): StoredQ4Part => {
    const t = ckpt.tensors.get(name);
    if (!t) throw new Error(`stored 4-bit checkpoint has no tensor "${name}"`);
    if (t.dtype !== 'U32') throw new Error(`stored 4-bit tensor "${name}" is ${t.dtype}, expected U32`);
    return { byteLength: t.byteLength, read: (o, n) => ckpt.readTensorRange(name, o, n) };
  };
  // read and uploaded a piece at a time (a streamed frozen layer's experts must not sit whole on the host)
  const ex = await uploadExpertsQ4Pieces(gpu, spec, L, G, { gateUp: part(names.gateUp), down: part(names.down) }, piece);
  onRaw(names.gateUp);
  onRaw(names.down);
  return ex;
}

/** Frees every buffer of a layer loaded by loadLayer. */
export function destroyLayer(lw: LayerWeights): void {
  for (const b of layerBuffers(lw)) b.destroy();
}

/** The buffers of a layer loadLayer made (each once). */
export function layerBuffers(lw: LayerWeights): Set<GPUBuffer> {
  const bufs = new Set<GPUBuffer>(Object.values(lw.t).map((x) => x!.buf));
  if (lw.experts) for (const x of [lw.experts.gate, lw.experts.up, lw.experts.down]) bufs.add(x.buf);
  return bufs;
}

/** A tensor's bytes as the spec expects them (readEntry); `stored`, when the reader has it, reads it as stored, in ranges. */
export type Reader = ((e: TensorEntry) => Promise<{ dtype: Dtype; bytes: Uint8Array }>) & { stored?: (e: TensorEntry) => StoredTensor | null };

/** A checkpoint tensor as stored (no conversion): read in ranges; `done` once it has been read (progress, counts). */
export interface StoredTensor {
  dtype: Dtype;
  byteLength: number;
  read(byteOffset: number, byteLength: number): Promise<Uint8Array>;
  done(): void;
}

/** readEntry over `ckpt`, with ranged reads of tensors stored as they are used (not fp8); `onRead` after each tensor. */
export function checkpointReader(ckpt: Checkpoint, spec: ModelSpec, onRead: (e: TensorEntry) => void = () => {}): Reader {
  const read: Reader = async (e) => {
    const r = await readEntry(ckpt, spec, e);
    onRead(e);
    return r;
  };
  read.stored = (e) => {
    const info = ckpt.tensors.get(e.name);
    // anything readEntry would refuse or convert goes through it
    if (!info || info.dtype === 'F8_E4M3' || info.shape.join(',') !== e.shape.join(',')) return null;
    return { dtype: info.dtype, byteLength: info.byteLength, read: (o, n) => ckpt.readTensorRange(e.name, o, n), done: () => onRead(e) };
  };
  return read;
}

function padTo4(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(b.byteLength / 4) * 4);
  out.set(b);
  return out;
}

async function loadExperts(gpu: GpuContext, spec: ModelSpec, L: number, entries: TensorEntry[], read: Reader, want: WDtype): Promise<ExpertWeights> {
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const H = spec.hidden;
  const per = IE * H;
  if (want === 'bf16' && per % 2) throw new Error(`layer ${L}: expert size ${per} is odd; bf16 packing needs an even element count`);
  const mk = (name: string, shape: number[]): GpuTensor => ({
    buf: createBuffer(gpu, { label: `layer${L}.${name}`, size: byteSize(E * per, want), kind: 'weights' }),
    dtype: want,
    shape,
    offset: 0,
  });
  const gate = mk('experts.gate', [E, IE, H]);
  const up = mk('experts.up', [E, IE, H]);
  const down = mk('experts.down', [E, H, IE]);
  const put = (dst: GpuTensor, elemOffset: number, data: ArrayBufferView) => writeBuffer(gpu, dst.buf, byteSize(elemOffset, want), data);
  for (const e of entries) {
    const { dtype, bytes } = await read(e);
    if (e.role === 'expert.gate_up_fused') {
      // [E, 2*IE, H]: per expert, gate rows first, then up rows.
      const all = toGpuBytes(dtype, bytes, want);
      const wordsPer = want === 'f32' ? per : per / 2;
      for (let x = 0; x < E; x++) {
        const base = x * 2 * wordsPer;
        put(gate, x * per, (all as Uint32Array).subarray(base, base + wordsPer));
        put(up, x * per, (all as Uint32Array).subarray(base + wordsPer, base + 2 * wordsPer));
      }
    } else if (e.role === 'expert.down_fused') {
      put(down, 0, toGpuBytes(dtype, bytes, want));
    } else {
      const dst = e.role === 'expert.gate' ? gate : e.role === 'expert.up' ? up : down;
      put(dst, e.expert! * per, toGpuBytes(dtype, bytes, want));
    }
  }
  return { gate, up, down };
}

// ---------------------------------------------------------------------------------------------
// Linear layers on a GpuTensor W [N, K] (PyTorch [out, in]); `rows` picks a row range [start, start + count) of W
// (e.g. the latent and rope parts of MLA's kv_a_proj), whose bias and gradient rows are the same range.

export type Rows = [start: number, count: number];

function rowsOf(w: GpuTensor, rows?: Rows): { N: number; K: number; r0: number } {
  const K = w.shape[w.shape.length - 1]!;
  return rows ? { N: rows[1], K, r0: rows[0] } : { N: w.shape[0]!, K, r0: 0 };
}

/** y [M, N] (=|+=) x [M, K] · W^T (+ bias [N]) */
export function linear(enc: Encoder, y: GPUBuffer, x: GPUBuffer, w: GpuTensor, bias: GpuTensor | undefined, M: number, accumulate = false, rows?: Rows): void {
  const { N, K, r0 } = rowsOf(w, rows);
  matmulForward(enc, y, x, w.buf, bias?.buf ?? null, { M, N, K, wDtype: w.dtype, wOffset: w.offset + r0 * K, biasOffset: (bias?.offset ?? 0) + r0, accumulate });
}

/** dx [M, K] (=|+=) dy [M, N] · W */
export function linearBackInput(enc: Encoder, dx: GPUBuffer, dy: GPUBuffer, w: GpuTensor, M: number, accumulate: boolean, rows?: Rows): void {
  const { N, K, r0 } = rowsOf(w, rows);
  matmulBackwardInput(enc, dx, dy, w.buf, { M, N, K, wDtype: w.dtype, wOffset: w.offset + r0 * K, accumulate });
}

/** dW [N, K] += dy [M, N]^T · x [M, K]   (dW f32 of W's full shape; nothing when dw is absent) */
export function linearBackWeight(enc: Encoder, dw: GPUBuffer | undefined, dy: GPUBuffer, x: GPUBuffer, w: GpuTensor, M: number, rows?: Rows): void {
  if (!dw) return;
  const { N, K, r0 } = rowsOf(w, rows);
  matmulBackwardWeight(enc, dw, dy, x, { M, N, K, dwOffset: r0 * K });
}

/** dbias [N] += column sums of dy [M, N]   (nothing when db is absent) */
export function linearBackBias(enc: Encoder, db: GPUBuffer | undefined, dy: GPUBuffer, w: GpuTensor, M: number, rows?: Rows): void {
  if (!db) return;
  const { N, K, r0 } = rowsOf(w, rows);
  matmulBackwardBias(enc, db, dy, { M, N, K, dwOffset: r0 });
}
