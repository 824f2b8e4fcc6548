// A finished run's result, faithful to the original model (docs/delta-format.md): the v2 delta (d = trained − base_used
// at the trained entries) and the original with it merged. Shared by `usaf train` and the app.

import type { GpuContext } from '../gpu/device.ts';
import { memorySource, type Bytes } from '../io/byte-source.ts';
import { openCheckpoint, type Checkpoint } from '../io/checkpoint.ts';
import { decodeF32, type Dtype } from '../io/dtype.ts';
import type { FileSet } from '../io/folder.ts';
import type { FileSink } from '../io/sink.ts';
import type { ModelSpec } from '../model/spec.ts';
import { expertsQ4At } from '../quant/experts-q4.ts';
import { storedQ4Info } from '../quant/stored-q4.ts';
import { crc32, DELTA_FILE, DeltaError, isRouterName } from './delta.ts';
import { encodeDeltaV2, type DiffEntry } from './delta-v2.ts';
import { encodeAs, writeHub } from './export.ts';
import { fingerprintOf, readConfig, readStoredOriginal, type ModelFingerprint } from './fingerprint.ts';
import { MERGEABLE, mergeModel, mergeTensor, type MergeOptions } from './merge.ts';
import { readWeight, type ExpertWeights } from './weights.ts';
import { lowerBound } from './sorted-sets.ts';

/** What a delta needs of a Trainer (structural: its file layout does not matter here). */
export interface TrainedRun {
  readonly gpu: GpuContext;
  readonly spec: ModelSpec;
  /** Trained layers: the base their experts train from, and every entry ever active (sorted) per index space. */
  readonly layers: readonly {
    layer: number;
    base: { kind: 'f32' } | { kind: 'q4'; experts: ExpertWeights };
    G: { touched: Uint32Array };
    D: { touched: Uint32Array };
  }[];
  /**
   * Full current values of the trained tensors (4-bit layers: the dequantized base where never trained); with
   * skipQ4Experts, a 4-bit layer's experts are left out (their values come from touchedValues).
   */
  changedTensors(onto?: undefined, opts?: { skipQ4Experts?: boolean }): Promise<Map<string, Float32Array>>;
  /** A trained layer's current weights at its touched entries of index space G or D, in touched's order. */
  touchedValues(l: TrainedRun['layers'][number], space: 'G' | 'D'): Promise<Float32Array>;
}

// ---------------------------------------------------------------------------------------------
// Differences

/** The f32 next to x toward +∞ (dir 1) or −∞ (dir −1). */
function stepF32(x: number, dir: 1 | -1): number {
  const f = new Float32Array([x]), u = new Uint32Array(f.buffer);
  if (x === 0) { u[0] = dir > 0 ? 1 : 0x80000001; return f[0]!; }
  u[0] += (x > 0) === (dir > 0) ? 1 : -1;
  return f[0]!;
}

/**
 * d with round_dtype(f32(b + d)) = round_dtype(t) at every entry: d = f32(t − b), moved by a few f32 steps where that
 * rounding of the sum misses (b is the original there, so the merge gives exactly the trained values' rounding).
 */
function fitDiffs(name: string, dtype: Dtype, b: Float32Array, t: Float32Array): Float32Array {
  const d = new Float32Array(t.length), m = new Float32Array(t.length);
  for (let k = 0; k < t.length; k++) { d[k] = Math.fround(t[k]! - b[k]!); m[k] = Math.fround(b[k]! + d[k]!); }
  const eb = dtype === 'BF16' || dtype === 'F16' ? 2 : dtype === 'F32' ? 4 : 8;
  const want = encodeAs(dtype, t), got = encodeAs(dtype, m);
  const same = (k: number, bytes: Uint8Array, at = k): boolean => {
    for (let j = 0; j < eb; j++) if (bytes[at * eb + j] !== want[k * eb + j]) return false;
    return true;
  };
  for (let k = 0; k < t.length; k++) {
    if (same(k, got)) continue;
    let fixed = false;
    for (const dir of [1, -1] as const) {
      let c = d[k]!;
      for (let s = 0; s < 4 && !fixed; s++) {
        c = stepF32(c, dir);
        if (same(k, encodeAs(dtype, new Float32Array([Math.fround(b[k]! + c)])), 0)) { d[k] = c; fixed = true; }
      }
      if (fixed) break;
    }
    if (!fixed) throw new DeltaError(`"${name}" entry ${k}: no f32 difference from ${b[k]} rounds to the trained ${t[k]}`);
  }
  return d;
}

/**
 * The part [lo, lo + n) of a layer's index space (G = [gate | up] [2, E, IE·H], D = down [E, H·IE]) that one expert
 * tensor (role, expert x) holds, and where its entry s lies in that tensor (fused gate_up [E, 2·IE, H]: expert k's gate
 * rows, then its up rows). Null for a role that is not an expert's.
 */
export function expertSpan(role: string, x: number, E: number, per: number): { lo: number; n: number; at: (s: number) => number } | null {
  const plain = (lo: number, n: number) => ({ lo, n, at: (s: number) => s - lo });
  switch (role) {
    case 'expert.gate': return plain(x * per, per);
    case 'expert.up': return plain((E + x) * per, per);
    case 'expert.down': return plain(x * per, per);
    case 'expert.down_fused': return plain(0, E * per);
    case 'expert.gate_up_fused': return {
      lo: 0, n: 2 * E * per,
      at: (s) => {
        const up = s >= E * per ? 1 : 0, j = s - up * E * per, k = Math.floor(j / per);
        return (2 * k + up) * per + (j - k * per);
      },
    };
    default: return null;
  }
}

/**
 * The run's differences, per trained tensor under its Hub name, with the original's dtype and shape (`original`). 4-bit
 * layers: d = f32(trained − dequantized 4-bit base) at every entry ever trained (nonzero ones stored). Everything else
 * (unquantized experts, routers, shared experts): the base is the loaded value (the original's), d fitted so the merge
 * rounds to exactly what the trained value rounds to; stored where the trained value differs (routers: every entry).
 */
export async function runDiffs(run: TrainedRun, loaded: Checkpoint, original: ModelFingerprint): Promise<DiffEntry[]> {
  const spec = run.spec;
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const per = IE * spec.hidden;
  const printOf = new Map(original.tensors.map((t) => [t.name, t]));
  // 4-bit layers: only the touched entries' values are read back (a Qwen3-30B-A3B layer's experts are 2.4 GB in f32)
  const current = await run.changedTensors(undefined, { skipQ4Experts: true });
  const out: DiffEntry[] = [];
  for (const l of run.layers) {
    if (l.base.kind !== 'q4') continue;
    // the 4-bit base at the touched entries only, as dequant.wgsl computes it (the whole layer is 0.3 GB at Qwen3-30B-A3B)
    const base = { G: await expertsQ4At(run.gpu, l.base.experts, spec, 'G', l.G.touched), D: await expertsQ4At(run.gpu, l.base.experts, spec, 'D', l.D.touched) };
    const trained = { G: await run.touchedValues(l, 'G'), D: await run.touchedValues(l, 'D') };
    for (const e of spec.layers[l.layer]!.tensors) {
      const span = expertSpan(e.role, e.expert ?? 0, E, per);
      if (!span) continue;
      const space = e.role === 'expert.down' || e.role === 'expert.down_fused' ? 'D' : 'G';
      const p = printOf.get(e.name);
      if (!p) throw new DeltaError(`trained tensor "${e.name}" is missing from the original`);
      const b = base[space], touched = l[space].touched, t = trained[space];
      const first = lowerBound(touched, span.lo), last = lowerBound(touched, span.lo + span.n);
      let indices = new Uint32Array(last - first), diff = new Float32Array(last - first), n = 0;
      for (let j = first; j < last; j++) {
        const s = touched[j]!, i = span.at(s);
        const d = Math.fround(t[j]! - b[j]!);
        if (d !== 0) { indices[n] = i; diff[n++] = d; }
      }
      indices = indices.subarray(0, n); diff = diff.subarray(0, n);
      if (e.role === 'expert.gate_up_fused') { // gate and up entries interleave in the fused tensor
        const order = Uint32Array.from({ length: n }, (_, k) => k).sort((u, v) => indices[u]! - indices[v]!);
        indices = Uint32Array.from(order, (k) => indices[k]!); diff = Float32Array.from(order, (k) => diff[k]!);
      }
      if (n) out.push({ name: e.name, dtype: p.dtype, shape: p.shape, indices, diff });
    }
  }
  for (const [name, t] of current) {
    const p = printOf.get(name);
    const info = loaded.tensors.get(name);
    if (!p || !info) throw new DeltaError(`trained tensor "${name}" is missing from the ${p ? 'loaded checkpoint' : 'original'}`);
    const r = await readWeight(loaded, info, spec.quantization);
    const b = decodeF32(r.dtype, r.bytes);
    if (isRouterName(name)) {
      out.push({ name, dtype: p.dtype, shape: p.shape, indices: null, diff: fitDiffs(name, p.dtype, b, t) }); // routers: dense
      continue;
    }
    const tb = new Uint32Array(t.buffer, t.byteOffset, t.length), bb = new Uint32Array(b.buffer, b.byteOffset, b.length);
    const idx: number[] = [];
    for (let i = 0; i < t.length; i++) if (tb[i] !== bb[i]) idx.push(i);
    if (!idx.length) continue;
    const indices = Uint32Array.from(idx);
    const diff = fitDiffs(name, p.dtype, Float32Array.from(idx, (i) => b[i]!), Float32Array.from(idx, (i) => t[i]!));
    if (2 * idx.length >= t.length) {
      const dense = new Float32Array(t.length);
      indices.forEach((i, k) => { dense[i] = diff[k]!; });
      out.push({ name, dtype: p.dtype, shape: p.shape, indices: null, diff: dense });
    } else out.push({ name, dtype: p.dtype, shape: p.shape, indices, diff });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The run's export

export interface ExportRunOptions {
  /** What the run loaded (the original Hub model, or a stored 4-bit model) and its folder. */
  loaded: Checkpoint;
  loadedFolder: FileSet;
  /**
   * The original Hub folder, for a run on a stored 4-bit model (checked against the fingerprint the store recorded at
   * import). Without it such a run writes the delta alone. Ignored when the run loaded the original itself.
   */
  original?: FileSet | null;
  /** The run's settings, recorded in the delta. */
  settings: Record<string, unknown>;
  /** Gets DELTA_FILE at its root. */
  deltaSink: FileSink;
  /** Gets the merged Hub checkpoint at its root; null: the delta alone. */
  mergeSink: FileSink | null;
  extra?: Record<string, string>;
  merge?: MergeOptions;
}

export interface ExportRunResult {
  /** The delta's path in deltaSink, size, tensors and stored entries. */
  delta: { path: string; bytes: number; tensors: number; entries: number };
  /** The merged checkpoint's shards in mergeSink, or null when none was written (no original at hand). */
  merged: { shards: string[]; bytes: number } | null;
  /** When merged is null: where the store says its original is (as given to the import), or null. */
  originalSource?: string | null;
  /** When merged is null because the original cannot take the trained values (FP8, integer tensors): why. */
  unmergeable?: string;
}

/** The v2 delta of a run whose original's fingerprint is known: its bytes, as chunks. */
export async function makeRunDelta(run: TrainedRun, loaded: Checkpoint, original: ModelFingerprint, settings: Record<string, unknown>, extra?: Record<string, string>): Promise<{ chunks: Bytes[]; bytes: number; entries: DiffEntry[] }> {
  const entries = await runDiffs(run, loaded, original);
  const { chunks, bytes } = encodeDeltaV2(entries, original, settings, extra);
  return { chunks, bytes, entries };
}

const stored = (n: number, e: DiffEntry): number => n + e.diff.length;

/**
 * Exports a finished run: from the original it loaded, the merged model (one streaming pass that also fingerprints the
 * original) and then the delta; from a stored 4-bit model, the delta against the original's recorded fingerprint, then
 * the merge onto `original` when given (mergeModel, which checks it).
 */
export async function exportRun(run: TrainedRun, o: ExportRunOptions): Promise<ExportRunResult> {
  const write = async (chunks: Bytes[], entries: DiffEntry[], bytes: number) => {
    await o.deltaSink.write(DELTA_FILE, chunks);
    await o.deltaSink.commit?.();
    return { path: DELTA_FILE, bytes, tensors: entries.length, entries: entries.reduce(stored, 0) };
  };
  if (storedQ4Info(o.loaded)) {
    const recorded = await readStoredOriginal(o.loadedFolder);
    let fp = recorded?.fingerprint ?? null;
    if (!fp && o.original) {
      const ck = await openCheckpoint(o.original);
      try {
        fp = await fingerprintOf(ck, await readConfig(o.original)); // a store from before fingerprints: trust the given original
      } finally {
        await ck.close();
      }
    }
    if (!fp) {
      throw new DeltaError(`${o.loadedFolder.name} was imported before stores recorded their original's fingerprint: ` +
        'give the original Hub model (usaf train --base) or import it again');
    }
    const d = await makeRunDelta(run, o.loaded, fp, o.settings, o.extra);
    const delta = await write(d.chunks, d.entries, d.bytes);
    if (!o.original || !o.mergeSink) return { delta, merged: null, originalSource: recorded?.source ?? null };
    const bytes = new Uint8Array(d.bytes);
    let at = 0;
    for (const c of d.chunks) { bytes.set(c, at); at += c.byteLength; }
    return { delta, merged: await mergeModel(o.original, memorySource(bytes, DELTA_FILE), o.mergeSink, o.merge) };
  }
  // The run loaded the original: diffs against it (names, dtypes and shapes from its headers; CRCs filled in below).
  const headerPrint: ModelFingerprint = {
    tensors: [...o.loaded.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape], crc: '00000000' })),
    config: null,
  };
  const entries = await runDiffs(run, o.loaded, headerPrint);
  const byName = new Map(entries.map((e) => [e.name, e]));
  const crcs = new Map<string, number>();
  let merged: ExportRunResult['merged'] = null;
  // trained values cannot be written into FP8 or integer tensors: then the delta alone (nothing of the run is lost)
  const unmergeable = entries.find((e) => !MERGEABLE.has(e.dtype));
  if (o.mergeSink && !unmergeable) {
    const mo = o.merge ?? {};
    const r = await writeHub(o.mergeSink, o.loaded, o.loadedFolder, (t) => {
      const e = byName.get(t.name);
      if (!e) return null;
      return async () => {
        const original = await o.loaded.readTensor(t.name);
        crcs.set(t.name, crc32(original));
        return mergeTensor(t.name, t.dtype, original, e.indices, e.diff, 'diff');
      };
    }, {
      maxShardBytes: mo.maxShardBytes, chunkBytes: mo.chunkBytes, signal: mo.signal,
      checkCopied: (t, crc) => { crcs.set(t.name, crc); },
      onProgress: mo.onProgress && ((p) => mo.onProgress!({ file: p.file, tensorsDone: p.tensors, tensors: p.totalTensors, bytesDone: p.bytes, bytes: p.totalBytes })),
    });
    merged = { shards: r.shards, bytes: r.totalSize };
  }
  const config = await readConfig(o.loadedFolder);
  const fp = await fingerprintOf(o.loaded, config, crcs); // reads nothing when the merge pass hashed every tensor
  const { chunks, bytes } = encodeDeltaV2(entries, fp, o.settings, o.extra);
  const delta = await write(chunks, entries, bytes);
  if (o.mergeSink && unmergeable) return { delta, merged, unmergeable: `"${unmergeable.name}" is ${unmergeable.dtype} in the original and cannot take trained values` };
  return { delta, merged };
}
