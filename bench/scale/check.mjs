// Faithfulness of a merged checkpoint, read from the files alone (independent of the engine's merge code): for every
// tensor of the original Hub folder, the merged folder's bytes equal the original's outside the delta's entries, and at
// them equal bf16_round_nearest_even(f32(original + d)) (delta v2: `N::diff` differences, `N::indices` sparse or none
// for dense); a v1 delta (`N::values` / dense `N`: new values) is checked as bf16_rne(value). Reads tensor by tensor in
// chunks (host memory: a chunk of each file plus one tensor's delta entries). Also: config/tokenizer files identical.

import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';

const CHUNK = 8 << 20; // bytes per read

function readAt(fd, offset, length) {
  const b = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, b, got, length - got, offset + got);
    if (n === 0) throw new Error(`short read at ${offset + got}`);
    got += n;
  }
  return b;
}

/** safetensors header of an open file: {dataStart, tensors: {name: {dtype, shape, data_offsets}}, metadata}. */
export function readHeader(fd) {
  const n = Number(readAt(fd, 0, 8).readBigUInt64LE(0));
  const json = JSON.parse(readAt(fd, 8, n).toString('utf8'));
  const { __metadata__: metadata = {}, ...tensors } = json;
  return { dataStart: 8 + n, tensors, metadata };
}

/** A Hub folder (sharded with an index, or one model.safetensors): name → {fd, dtype, shape, start, end}. */
export function openHub(dir) {
  const idx = join(dir, 'model.safetensors.index.json');
  const files = existsSync(idx) ? [...new Set(Object.values(JSON.parse(readFileSync(idx, 'utf8')).weight_map))] : ['model.safetensors'];
  const tensors = new Map();
  const fds = [];
  for (const f of files) {
    const fd = openSync(join(dir, f), 'r');
    fds.push(fd);
    const h = readHeader(fd);
    for (const [name, t] of Object.entries(h.tensors)) {
      tensors.set(name, { fd, file: f, dtype: t.dtype, shape: t.shape, start: h.dataStart + t.data_offsets[0], end: h.dataStart + t.data_offsets[1] });
    }
  }
  return { tensors, close: () => fds.forEach((fd) => closeSync(fd)) };
}

/** The delta's per-tensor entries: name → {indices: Uint32Array|null, d: Float32Array, mode: 'diff'|'value'}. */
export function readDelta(path) {
  const fd = openSync(path, 'r');
  try {
    const h = readHeader(fd);
    const version = h.metadata.version;
    if (h.metadata.format !== 'usaf-delta') throw new Error(`${path}: format ${h.metadata.format}, not usaf-delta`);
    if (version !== '1' && version !== '2') throw new Error(`${path}: delta version ${version} unknown to this checker`);
    const load = (name, Type) => {
      const t = h.tensors[name];
      if (!t) return null;
      const b = readAt(fd, h.dataStart + t.data_offsets[0], t.data_offsets[1] - t.data_offsets[0]);
      return new Type(b.buffer, b.byteOffset, b.byteLength / 4).slice();
    };
    const names = new Set(Object.keys(h.tensors).map((n) => n.split('::')[0]));
    const out = new Map();
    for (const name of names) {
      const indices = load(`${name}::indices`, Uint32Array);
      const d = version === '2' ? load(`${name}::diff`, Float32Array) : indices ? load(`${name}::values`, Float32Array) : load(name, Float32Array);
      if (!d) throw new Error(`${path}: "${name}" has no ${version === '2' ? 'diff' : 'values'}`);
      out.set(name, { indices, d, mode: version === '2' ? 'diff' : 'value' });
    }
    return { version, entries: out, metadata: h.metadata };
  } finally {
    closeSync(fd);
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bf16ToF32 = (h) => { u32[0] = h << 16; return f32[0]; };
/** f32 value → bf16 bits, round to nearest, ties to even (NaN kept quiet). */
export function bf16Rne(x) {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff)) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * Compares `mergedDir` with `originalDir` under `deltaPath`. Returns {faithful, tensors, trained_tensors,
 * trained_entries, outside_mismatches, trained_mismatches, first_mismatch, files, missing, extra}.
 */
export function checkFaithful(originalDir, mergedDir, deltaPath) {
  const orig = openHub(originalDir);
  const merged = openHub(mergedDir);
  const delta = readDelta(deltaPath);
  const r = {
    delta_version: delta.version, tensors: orig.tensors.size, trained_tensors: 0, trained_entries: 0,
    outside_mismatches: 0, trained_mismatches: 0, trained_unchanged: 0, first_mismatch: null, missing: [], extra: [], files: {},
  };
  const note = (what) => { if (!r.first_mismatch) r.first_mismatch = what; };
  try {
    for (const name of merged.tensors.keys()) if (!orig.tensors.has(name)) r.extra.push(name);
    for (const name of delta.entries.keys()) if (!orig.tensors.has(name)) r.extra.push(`(delta) ${name}`);
    for (const [name, o] of orig.tensors) {
      const m = merged.tensors.get(name);
      if (!m) { r.missing.push(name); continue; }
      if (m.dtype !== o.dtype || m.shape.join() !== o.shape.join()) { note(`${name}: ${m.dtype} [${m.shape}] vs ${o.dtype} [${o.shape}]`); r.outside_mismatches++; continue; }
      const e = delta.entries.get(name);
      if (e && o.dtype !== 'BF16') throw new Error(`${name}: this checker merges into BF16 only, not ${o.dtype}`);
      const size = o.end - o.start;
      // the trained entries of this tensor, ascending (dense: all)
      const idx = e ? (e.indices ?? null) : new Uint32Array(0);
      if (e) { r.trained_tensors++; r.trained_entries += e.d.length; }
      let k = 0; // next trained entry
      for (let off = 0; off < size; off += CHUNK) {
        const len = Math.min(CHUNK, size - off);
        const a = readAt(o.fd, o.start + off, len);
        const b = readAt(m.fd, m.start + off, len);
        if (!e) {
          if (!a.equals(b)) { r.outside_mismatches++; note(`${name}: differs outside any trained entry (byte ${off + a.findIndex((x, i) => x !== b[i])})`); }
          continue;
        }
        const ua = new Uint16Array(a.buffer, a.byteOffset, len / 2);
        const ub = new Uint16Array(b.buffer, b.byteOffset, len / 2);
        const first = off / 2;
        for (let i = 0; i < ua.length; i++) {
          const at = first + i;
          const trained = idx === null || (k < idx.length && idx[k] === at);
          if (!trained) {
            if (ua[i] !== ub[i]) { r.outside_mismatches++; note(`${name}[${at}]: ${ub[i]} vs original ${ua[i]} (not trained)`); }
            continue;
          }
          const dk = idx === null ? at : k++;
          const want = e.mode === 'diff' ? bf16Rne(Math.fround(bf16ToF32(ua[i]) + e.d[dk])) : bf16Rne(e.d[dk]);
          if (ub[i] !== want) { r.trained_mismatches++; note(`${name}[${at}]: ${ub[i]}, expected ${want} (original ${ua[i]}, delta ${e.d[dk]})`); }
          if (ub[i] === ua[i]) r.trained_unchanged++;
        }
      }
      if (idx !== null && k !== idx.length) { r.trained_mismatches += idx.length - k; note(`${name}: ${idx.length - k} delta indices not met in order`); }
    }
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) {
      const p = join(originalDir, f);
      if (!existsSync(p)) continue;
      const q = join(mergedDir, f);
      r.files[f] = existsSync(q) && statSync(q).size === statSync(p).size && readFileSync(q).equals(readFileSync(p));
    }
  } finally {
    orig.close();
    merged.close();
  }
  r.faithful = r.outside_mismatches === 0 && r.trained_mismatches === 0 && r.missing.length === 0 && r.extra.length === 0
    && Object.values(r.files).every(Boolean) && r.trained_entries > 0;
  return r;
}

if (process.argv[1] === import.meta.filename) {
  const [o, m, d] = process.argv.slice(2);
  if (!d) {
    console.error('usage: node bench/scale/check.mjs ORIGINAL_DIR MERGED_DIR DELTA_FILE');
    process.exit(2);
  }
  const r = checkFaithful(o, m, d);
  console.log(JSON.stringify(r, null, 2));
  process.exit(r.faithful ? 0 : 1);
}
