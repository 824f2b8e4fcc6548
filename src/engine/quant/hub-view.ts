// A stored 4-bit checkpoint seen under Hub names: each layer's two `.q4` buffers become the spec's expert tensors
// (per expert or fused, the source's layout) in BF16, dequantized on the CPU when read; every other tensor is unchanged.
// The app's export still reads it (src/worker); the faithful export merges onto the original instead (train/export-run.ts).

import type { Bytes } from '../io/byte-source.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { encodeBf16 } from '../io/dtype.ts';
import type { TensorInfo } from '../io/safetensors.ts';
import type { ModelSpec, TensorEntry } from '../model/spec.ts';
import { layerTensors } from '../model/tensors.ts';
import { nibble, q4ExpertLayouts, q4Value, unpackScaleZero, type Q4BufferLayout } from './format.ts';
import { isQ4Name, q4ExpertNames, storedQ4Info } from './stored-q4.ts';

/**
 * `n` rows of a 4-bit buffer (layout `lay`) as f32, exactly as dequant.wgsl computes them: (q − z) · s in f32. `q` holds
 * the rows' code words, `sz` their (scale, zero) words.
 */
export function dequantWords(q: Uint32Array, sz: Uint32Array, lay: Q4BufferLayout, n: number): Float32Array {
  const K = lay.K, gpr = lay.groupsPerRow;
  const out = new Float32Array(n * K);
  for (let r = 0; r < n; r++) {
    for (let g = 0; g < gpr; g++) {
      const { s, z } = unpackScaleZero(sz[r * gpr + g]!);
      const end = Math.min(K, (g + 1) * lay.G);
      for (let k = g * lay.G; k < end; k++) out[r * K + k] = q4Value(nibble(q, r * K + k), s, z);
    }
  }
  return out;
}

/** Rows [r0, r0 + n) of the stored 4-bit buffer `name` (layout `lay`) as f32 (dequantWords). */
async function dequantRows(ckpt: Checkpoint, name: string, lay: Q4BufferLayout, r0: number, n: number): Promise<Float32Array> {
  const codes = await ckpt.readTensorRange(name, (r0 * lay.K) / 2, (n * lay.K) / 2);
  const table = await ckpt.readTensorRange(name, (lay.szWord + r0 * lay.groupsPerRow) * 4, n * lay.groupsPerRow * 4);
  return dequantWords(new Uint32Array(codes.buffer, codes.byteOffset, codes.byteLength / 4), new Uint32Array(table.buffer, table.byteOffset, table.byteLength / 4), lay, n);
}

/** `ckpt` unchanged when it is not a stored 4-bit checkpoint; else its Hub-named view (spec: the stored layout). */
export function hubView(ckpt: Checkpoint, spec: ModelSpec): Checkpoint {
  const info = storedQ4Info(ckpt);
  if (!info) return ckpt;
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const H = spec.hidden;
  const lay = q4ExpertLayouts(spec, info.groupSize);
  const tensors = new Map<string, TensorInfo>();
  const virtual = new Map<string, { e: TensorEntry; gu: string; dn: string }>();
  for (const [name, t] of ckpt.tensors) if (!isQ4Name(name)) tensors.set(name, t);
  for (let L = 0; L < spec.numLayers; L++) {
    if (spec.layers[L]!.mlp !== 'moe') continue;
    const names = q4ExpertNames(spec, L);
    const at = ckpt.tensors.get(names.gateUp);
    if (!at) throw new Error(`stored 4-bit checkpoint has no tensor "${names.gateUp}"`);
    let k = 0;
    for (const e of layerTensors(spec, L)) {
      if (!e.role.startsWith('expert.')) continue;
      const byteLength = 2 * e.shape.reduce((a, b) => a * b, 1);
      // sorts where the layer's buffers were (begin + k stays inside the gate|up buffer's range)
      const begin = at.begin + k++;
      tensors.set(e.name, { name: e.name, dtype: 'BF16', shape: e.shape, begin, end: begin + byteLength, byteLength, file: at.file });
      virtual.set(e.name, { e, gu: names.gateUp, dn: names.down });
    }
  }
  const values = async (v: { e: TensorEntry; gu: string; dn: string }): Promise<Float32Array> => {
    const { e } = v;
    const x = e.expert ?? 0;
    switch (e.role) {
      case 'expert.gate': return dequantRows(ckpt, v.gu, lay.gateUp, x * IE, IE);
      case 'expert.up': return dequantRows(ckpt, v.gu, lay.gateUp, (E + x) * IE, IE);
      case 'expert.down': return dequantRows(ckpt, v.dn, lay.down, x * H, H);
      case 'expert.down_fused': return dequantRows(ckpt, v.dn, lay.down, 0, E * H);
      case 'expert.gate_up_fused': {
        const out = new Float32Array(2 * E * IE * H);
        for (let y = 0; y < E; y++) {
          out.set(await dequantRows(ckpt, v.gu, lay.gateUp, y * IE, IE), 2 * y * IE * H);
          out.set(await dequantRows(ckpt, v.gu, lay.gateUp, (E + y) * IE, IE), (2 * y + 1) * IE * H);
        }
        return out;
      }
      default: throw new Error(`hubView: ${e.role} is not an expert role`);
    }
  };
  const read = async (name: string): Promise<Bytes> => {
    const v = virtual.get(name);
    return v ? encodeBf16(await values(v)) as Bytes : ckpt.readTensor(name);
  };
  return {
    tensors,
    files: ckpt.files,
    readTensor: read,
    readTensorRange: async (name, off, len) => {
      if (!virtual.has(name)) return ckpt.readTensorRange(name, off, len);
      const all = await read(name);
      if (off < 0 || len < 0 || off + len > all.byteLength) throw new RangeError(`"${name}": range ${off}+${len} outside its ${all.byteLength} bytes`);
      return all.subarray(off, off + len);
    },
    close: () => ckpt.close(),
  };
}
