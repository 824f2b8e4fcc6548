// `npm run scale`: the flagship journey (Qwen3-30B-A3B's tensor names, shapes and config; bf16; sharded) rehearsed with
// 2 and 4 layers, in Node (the CLI) and in Chromium (the app): import into the 4-bit store → train 2 steps → export/merge
// → faithfulness read from the files. One JSON object per run into bench/results/scale/<width>-<env>-<layers>L.json and
// the acceptance over them into <width>-summary.json. Not part of `npm test`.
//
// Env: SCALE_SMALL=1 (8 experts, vocab 8,192, every other width real: for developing, labelled "small" in the results),
//      SCALE_LAYERS (default "2,4"), SCALE_ENVS (default "node,chromium"), SCALE_SEQ (16), SCALE_TMP (scratch; default
//      $TMPDIR/usaf-scale; the checkpoints are generated there, never committed, and removed after each layer count
//      unless SCALE_KEEP=1), SCALE_TIMEOUT_S (per phase, default 3600), SCALE_REUSE=1 (keep a checkpoint generated
//      there before, and a Node import finished there before with its phase record: node.mjs).

import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { generateCheckpoint, writeDataset } from './gen.mjs';
import { nodeJourney } from './node.mjs';
import { chromiumJourney } from './chromium.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
const OUT = join(ROOT, 'bench/results/scale');
const small = process.env.SCALE_SMALL === '1';
const width = small ? 'small' : 'full';
const layerCounts = (process.env.SCALE_LAYERS ?? '2,4').split(',').map(Number).filter((n) => n > 0); // SCALE_LAYERS= : the summary alone
const envs = (process.env.SCALE_ENVS ?? 'node,chromium').split(',');
const seq = Number(process.env.SCALE_SEQ ?? 16);
const tmp = process.env.SCALE_TMP ?? join(tmpdir(), 'usaf-scale');
const timeoutMs = Number(process.env.SCALE_TIMEOUT_S ?? 3600) * 1000;
const reuse = process.env.SCALE_REUSE === '1'; // keep a checkpoint generated earlier in SCALE_TMP (and an import done there: node.mjs)
const log = (s) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

mkdirSync(OUT, { recursive: true });
const started = Date.now();
const commit = (await import('node:child_process')).execSync('git rev-parse --short HEAD', { cwd: ROOT }).toString().trim();
const runs = [];
for (const layers of layerCounts) {
  const dir = join(tmp, `${width}-${layers}L`);
  const src = join(dir, 'original');
  const data = join(dir, 'train.jsonl');
  let gen = reuse ? generated(src, data) : null;
  let genSec = null;
  if (gen) log(`reusing the ${width}-width checkpoint with ${layers} layers in ${src} (SCALE_REUSE=1)`);
  else {
    rmSync(dir, { recursive: true, force: true });
    log(`generating the ${width}-width checkpoint with ${layers} layers in ${src}`);
    const t0 = performance.now();
    gen = generateCheckpoint(src, { layers, small });
    genSec = +((performance.now() - t0) / 1000).toFixed(1);
    writeDataset(data, gen.config);
  }
  for (const env of envs) {
    const work = join(dir, env);
    const t1 = performance.now();
    let r;
    try {
      const go = env === 'node' ? nodeJourney : env === 'chromium' ? chromiumJourney : null;
      if (!go) throw new Error(`unknown env "${env}" (node or chromium)`);
      // the phases done so far, on disk as they finish (a run cut short leaves what it measured)
      const partial = join(OUT, `${width}-${env}-${layers}L.partial.json`);
      const progress = (phases) => writeFileSync(partial, JSON.stringify({ width, env, layers, incomplete: true, commit, phases, date: new Date().toISOString() }, null, 2) + '\n');
      r = await go({ src, work, data, layers, seq, timeoutMs, log, progress, reuse });
      rmSync(partial, { force: true });
    } catch (e) {
      log(`${env} ${layers} layers FAILED: ${e.stack ?? e}`);
      r = { env, layers, peak_host_bytes: null, gpu_bytes: null, faithful: false, error: String(e.message ?? e).slice(0, 2000) };
    }
    r = {
      width, ...r,
      checkpoint: { layers, experts: gen.config.num_experts, hidden: gen.config.hidden_size, moe_intermediate: gen.config.moe_intermediate_size,
        vocab: gen.config.vocab_size, shards: gen.files.length, bytes: gen.bytes, tensors: gen.tensors, generate_s: genSec },
      settings: { steps: 2, seq, microbatch: 1, train_from: layers - 1, stream_frozen: true, quantized_experts: '4-bit store (usaf import / the app\'s import)' },
      wall_s: +((performance.now() - t1) / 1000).toFixed(1),
      machine: { cpus: (await import('node:os')).cpus().length, mem_bytes: (await import('node:os')).totalmem(), webgpu: 'SwiftShader (CPU)' },
      commit, date: new Date().toISOString(),
    };
    runs.push(r);
    writeFileSync(join(OUT, `${width}-${env}-${layers}L.json`), JSON.stringify(r, null, 2) + '\n');
    log(`${env} ${layers} layers: peak host ${(r.peak_host_bytes / 1e9).toFixed(2)} GB, GPU ${(r.gpu_bytes / 1e9).toFixed(2)} GB, faithful ${r.faithful}, ${r.wall_s} s`);
  }
  if (process.env.SCALE_KEEP !== '1') rmSync(dir, { recursive: true, force: true });
}

/** A checkpoint gen.mjs wrote earlier in `src` (with its dataset), described as generateCheckpoint does; null if absent. */
function generated(src, data) {
  try {
    const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
    const index = JSON.parse(readFileSync(join(src, 'model.safetensors.index.json'), 'utf8'));
    readFileSync(data);
    return { config, files: [...new Set(Object.values(index.weight_map))], bytes: index.metadata.total_size, tensors: Object.keys(index.weight_map).length };
  } catch {
    return null;
  }
}

// Acceptance over every run of this width on record (this invocation's and earlier ones'): host memory does not grow with
// layers (most vs fewest layers within 15 %), host minus GPU below 3 GB, every merge faithful.
const recorded = readdirSync(OUT).filter((f) => f.startsWith(`${width}-`) && /-\d+L\.json$/.test(f))
  .map((f) => JSON.parse(readFileSync(join(OUT, f), 'utf8')));
const acceptance = {};
for (const env of [...new Set(recorded.map((r) => r.env))].sort()) {
  const rs = recorded.filter((r) => r.env === env).sort((a, b) => a.layers - b.layers);
  const ok = rs.filter((r) => r.peak_host_bytes);
  const lo = ok[0];
  const hi = ok[ok.length - 1];
  const growth = lo && hi && lo !== hi ? hi.peak_host_bytes / lo.peak_host_bytes - 1 : null;
  acceptance[env] = {
    runs: rs.map((r) => ({ layers: r.layers, peak_host_bytes: r.peak_host_bytes, gpu_bytes: r.gpu_bytes, host_minus_gpu_bytes: r.peak_host_bytes && r.gpu_bytes !== null ? r.peak_host_bytes - r.gpu_bytes : null, faithful: r.faithful, error: r.error ?? null })),
    host_growth_with_layers: growth === null ? null : +growth.toFixed(4),
    host_flat: growth === null ? null : growth <= 0.15,
    host_minus_gpu_below_3GB: rs.length > 0 && rs.every((r) => r.peak_host_bytes && r.gpu_bytes !== null && r.peak_host_bytes - r.gpu_bytes < 3e9),
    faithful: rs.length > 0 && rs.every((r) => r.faithful),
  };
  acceptance[env].pass = acceptance[env].host_flat === true && acceptance[env].host_minus_gpu_below_3GB && acceptance[env].faithful;
}
const summary = { width, runs_on_record: recorded.map((r) => `${r.env} ${r.layers}L (${r.date})`), last_invocation: { layers: layerCounts, envs, seq, wall_s: Math.round((Date.now() - started) / 1000) }, acceptance, date: new Date().toISOString() };
writeFileSync(join(OUT, `${width}-summary.json`), JSON.stringify(summary, null, 2) + '\n');
console.log(JSON.stringify(summary, null, 2));
process.exit(Object.values(acceptance).every((a) => a.pass) ? 0 : 1);
