// A run's trained entries over the model it trained (docs/delta-format.md, version 2: d = trained − base_used at the
// trained entries), without exporting: tensors loaded as they are get the merge rule itself (train/merge.ts mergeTensor:
// round_to_dtype(f32(original + d)), the merged model's bytes); 4-bit routed experts get f32(dequantized + d), the values
// the run trained, in f32 on the GPU for the layers the delta touches.
//
// Legend: E experts, IE expert width, H hidden. gu = [gate of every expert | up of every expert] ([2, E, IE, H]), down
// [E, H, IE]: the layouts dequantizeExperts writes and the f32 expert GEMMs read.

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, writeBuffer } from '../gpu/buffers.ts';
import { Encoder } from '../gpu/encoder.ts';
import { memorySource, type Bytes } from '../io/byte-source.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { FileSet } from '../io/folder.ts';
import type { ModelSpec, TensorEntry } from '../model/spec.ts';
import { layerTensors } from '../model/tensors.ts';
import { dequantizeExperts } from '../quant/experts-q4.ts';
import { DeltaError } from '../train/delta.ts';
import { openDeltaAny, type OpenedDelta } from '../train/delta-v2.ts';
import { fingerprintDigest, readStoredOriginal } from '../train/fingerprint.ts';
import { checkDeltaBase, mergeTensor } from '../train/merge.ts';
import type { ExpertWeights, ModelWeights } from '../train/weights.ts';

export interface Overlay {
  delta: OpenedDelta;
  /** The 4-bit group size the run's experts were trained over (settings.quantizeExperts), or null. */
  q4Group: number | null;
}

/**
 * Opens a v2 delta and checks it belongs to the model in `folder`: a Hub folder by the fingerprint (tensor list, config,
 * the trained tensors' CRCs, train/merge.ts checkDeltaBase); a stored 4-bit model by the original's fingerprint recorded
 * at import, when it has one. A run on unquantized experts cannot be shown over a 4-bit store (its base is the original).
 */
export async function openOverlay(folder: FileSet, bytes: Bytes, stored: { groupSize: number } | null): Promise<Overlay> {
  const delta = await openDeltaAny(bytes);
  if (delta.version !== 2) throw new DeltaError('a version 1 delta holds new values over another base: merge it with `usaf merge` and generate on the merged model');
  const q = delta.settings.quantizeExperts as { groupSize?: unknown } | null | undefined;
  const q4Group = q && typeof q.groupSize === 'number' ? q.groupSize : null;
  if (stored) {
    if (q4Group === null) throw new DeltaError(`the run trained unquantized experts of the original model, not the 4-bit model ${folder.name}: generate on the original folder`);
    if (q4Group !== stored.groupSize) throw new DeltaError(`the run trained 4-bit experts of group size ${q4Group}, ${folder.name} stores group size ${stored.groupSize}`);
    const rec = await readStoredOriginal(folder);
    if (rec && fingerprintDigest(rec.fingerprint) !== fingerprintDigest(delta.original!)) {
      throw new DeltaError(`the delta was made for another model than the one ${folder.name} was imported from`);
    }
  } else {
    await checkDeltaBase(folder, memorySource(bytes, 'delta'));
  }
  return { delta, q4Group };
}

/** Every routed-expert tensor of the spec by its Hub name (per expert or fused, the spec's layout), with its layer. */
function expertEntries(spec: ModelSpec): Map<string, { L: number; e: TensorEntry }> {
  const out = new Map<string, { L: number; e: TensorEntry }>();
  for (let L = 0; L < spec.numLayers; L++) for (const e of layerTensors(spec, L)) if (e.role.startsWith('expert.')) out.set(e.name, { L, e });
  return out;
}

/**
 * `ckpt` with the delta's tensors merged in as they read (mergeTensor: the merged model's bytes), except routed experts
 * when they load in 4 bits (overlayExperts does those). Shapes, dtypes and sizes are the original's.
 */
export function overlayCheckpoint(ckpt: Checkpoint, spec: ModelSpec, o: Overlay): Checkpoint {
  const experts = o.q4Group !== null ? expertEntries(spec) : new Map();
  const merged = new Set([...o.delta.parts.keys()].filter((n) => !experts.has(n)));
  for (const n of merged) if (!ckpt.tensors.has(n)) throw new DeltaError(`the delta trains "${n}", which the model does not have`);
  const read = async (name: string): Promise<Bytes> => {
    const raw = await ckpt.readTensor(name);
    if (!merged.has(name)) return raw;
    const { indices, values } = await o.delta.read(name);
    return mergeTensor(name, ckpt.tensors.get(name)!.dtype, raw, indices, values, 'diff');
  };
  return {
    tensors: ckpt.tensors,
    files: ckpt.files,
    readTensor: read,
    readTensorRange: async (name, off, len) => (merged.has(name) ? (await read(name)).slice(off, off + len) : ckpt.readTensorRange(name, off, len)),
    close: () => ckpt.close(),
  };
}

/** Where a Hub expert tensor's elements live in gu / down: runs [hubStart, buffer, bufferStart, length]. */
function segments(spec: ModelSpec, e: TensorEntry): [number, 'gu' | 'down', number, number][] {
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const one = IE * spec.hidden;
  const x = e.expert ?? 0;
  switch (e.role) {
    case 'expert.gate': return [[0, 'gu', x * one, one]];
    case 'expert.up': return [[0, 'gu', (E + x) * one, one]];
    case 'expert.down': return [[0, 'down', x * one, one]];
    case 'expert.down_fused': return [[0, 'down', 0, E * one]];
    case 'expert.gate_up_fused': return Array.from({ length: E }, (_, y) => [[2 * y * one, 'gu', y * one, one], [(2 * y + 1) * one, 'gu', (E + y) * one, one]] as const).flat() as [number, 'gu' | 'down', number, number][];
    default: throw new Error(`${e.role} is not a routed-expert role`);
  }
}

/**
 * The 4-bit routed experts of every layer the delta trains replaced (in `w`) by f32 experts: dequantized on the GPU as
 * the run's base was, then f32(dequantized + d) at the trained entries. The 4-bit buffers of those layers are freed.
 */
export async function overlayExperts(gpu: GpuContext, spec: ModelSpec, w: ModelWeights, o: Overlay): Promise<void> {
  if (o.q4Group === null) return;
  const experts = expertEntries(spec);
  const byLayer = new Map<number, TensorEntry[]>();
  for (const n of o.delta.parts.keys()) {
    const x = experts.get(n);
    if (x) byLayer.set(x.L, [...(byLayer.get(x.L) ?? []), x.e]);
  }
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const one = IE * spec.hidden;
  for (const [L, entries] of byLayer) {
    const lw = w.layers[L]!;
    const ex = lw.experts;
    if (!ex || ex.gate.dtype !== 'q4') throw new Error(`layer ${L}: expected 4-bit experts to overlay the run onto`);
    const buf = { gu: createBuffer(gpu, { label: `layer${L}.experts.gu.f32`, size: 2 * E * one * 4, kind: 'weights' }), down: createBuffer(gpu, { label: `layer${L}.experts.down.f32`, size: E * one * 4, kind: 'weights' }) };
    const enc = new Encoder(gpu, 'overlay');
    dequantizeExperts(enc, buf.gu, buf.down, ex, spec);
    enc.submit();
    const host = { gu: await readF32(gpu, buf.gu), down: await readF32(gpu, buf.down) };
    for (const e of entries) {
      const segs = segments(spec, e);
      const hub = new Float32Array(e.shape.reduce((a, b) => a * b, 1));
      for (const [h0, b, b0, n] of segs) hub.set(host[b].subarray(b0, b0 + n), h0);
      const { indices, values } = await o.delta.read(e.name);
      const bytes = mergeTensor(e.name, 'F32', new Uint8Array(hub.buffer) as Bytes, indices, values, 'diff');
      const m = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      for (const [h0, b, b0, n] of segs) host[b].set(m.subarray(h0, h0 + n), b0);
    }
    writeBuffer(gpu, buf.gu, 0, host.gu);
    writeBuffer(gpu, buf.down, 0, host.down);
    for (const b of new Set([ex.gate.buf, ex.up.buf, ex.down.buf])) b.destroy();
    const f32: ExpertWeights = {
      gate: { buf: buf.gu, dtype: 'f32', shape: [E, IE, spec.hidden], offset: 0 },
      up: { buf: buf.gu, dtype: 'f32', shape: [E, IE, spec.hidden], offset: E * one },
      down: { buf: buf.down, dtype: 'f32', shape: [E, spec.hidden, IE], offset: 0 },
    };
    lw.experts = f32;
  }
}
