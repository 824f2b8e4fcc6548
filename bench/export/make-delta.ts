// A v2 delta for a Hub checkpoint (bench only): ~`frac` of the entries of the last layer's experts changed, its router
// dense. Usage (bundled by merge.mjs): node make-delta.mjs MODEL_DIR OUT_FILE
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openCheckpoint } from '../../src/engine/io/checkpoint.ts';
import { encodeDeltaV2, type DiffEntry } from '../../src/engine/train/delta-v2.ts';
import { fingerprintOf } from '../../src/engine/train/fingerprint.ts';
import { nodeFolder } from '../../src/node/folder.ts';

const [dir, out, fracArg] = process.argv.slice(2);
const frac = Number(fracArg ?? 0.005);
const ckpt = await openCheckpoint(nodeFolder(dir!));
const config = readFileSync(join(dir!, 'config.json'));
let last = -1;
for (const n of ckpt.tensors.keys()) { const m = /^model\.layers\.(\d+)\./.exec(n); if (m) last = Math.max(last, Number(m[1])); }
let s = 12345;
const r = (): number => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; };
const entries: DiffEntry[] = [];
for (const [name, t] of ckpt.tensors) {
  if (!name.startsWith(`model.layers.${last}.mlp.`)) continue;
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (name.endsWith('mlp.gate.weight')) { entries.push({ name, dtype: t.dtype, shape: t.shape, indices: null, diff: Float32Array.from({ length: n }, () => (r() - 0.5) * 1e-2) }); continue; }
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (r() < frac) idx.push(i);
  entries.push({ name, dtype: t.dtype, shape: t.shape, indices: Uint32Array.from(idx), diff: Float32Array.from(idx, (_, k) => (k % 3 === 0 ? 1e-6 : k % 3 === 1 ? 0.05 : -0.3) * (r() + 0.1)) });
}
const fp = await fingerprintOf(ckpt, config);
const { chunks, bytes } = encodeDeltaV2(entries, fp, { bench: true });
const all = new Uint8Array(bytes);
let at = 0;
for (const c of chunks) { all.set(c, at); at += c.byteLength; }
writeFileSync(out!, all);
console.log(JSON.stringify({ out, bytes, tensors: entries.length, entries: entries.reduce((n, e) => n + (e.indices?.length ?? e.diff.length), 0) }));
await ckpt.close();
