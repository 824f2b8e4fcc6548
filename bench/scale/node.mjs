// The flagship journey in Node, through the CLI (dist/cli/usaf.mjs): import into the 4-bit store → train 2 steps (tiny
// SEQ, top layer trained, frozen layers streamed) → export/merge → faithfulness read from the files. Each phase is one
// child process; its host memory is polled from /proc (mem.mjs), its wall time and the storage it wrote are recorded.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sampleTree } from './mem.mjs';
import { checkFaithful } from './check.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/cli/usaf.mjs');

/** Bytes of the files below `p` (a file or folder). */
export function duBytes(p) {
  if (!existsSync(p)) return 0;
  const s = statSync(p);
  if (!s.isDirectory()) return s.size;
  return readdirSync(p).reduce((n, f) => n + duBytes(join(p, f)), 0);
}

/** Runs the CLI with `args`; resolves {code, stdout, stderr, wall_s, mem}. */
function usaf(args, log, timeoutMs) {
  return new Promise((ok, fail) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const mem = sampleTree(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => { stdout += b; });
    child.stderr.on('data', (b) => { stderr += b; log(String(b).trimEnd()); });
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      ok({ code, stdout, stderr, wall_s: +((performance.now() - t0) / 1000).toFixed(1), mem: mem.stop() });
    });
  });
}

const lastJson = (text) => {
  const line = text.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  return line ? JSON.parse(line) : null;
};

async function hasCommand(name) {
  const r = await usaf([name, '--help'], () => {}, 60_000);
  return r.code === 0;
}

/**
 * src: the Hub checkpoint; work: a scratch folder; data: the training JSONL. Returns the run's JSON record.
 * settings: {seq, steps, layers}.
 */
export async function nodeJourney({ src, work, data, layers, seq = 16, steps = 2, timeoutMs = 3_600_000, log = console.error, progress = () => {}, reuse = false }) {
  const q4 = join(work, 'q4');
  const run = join(work, 'run');
  const merged = join(work, 'merged');
  const phases = {};
  const record = (name, r, wrote, extra = {}) => {
    phases[name] = {
      wall_s: r.wall_s, peak_host_bytes: r.mem.peak_rss_sum, peak_pss_bytes: r.mem.peak_pss_sum, peak_vmhwm_bytes: r.mem.peak_hwm_max,
      storage_bytes: wrote, exit: r.code, ...extra,
    };
    progress(phases);
    if (r.code !== 0) throw new Error(`usaf ${name} exited with ${r.code}:\n${r.stderr.split('\n').slice(-15).join('\n')}`);
  };

  // reuse: an import that finished in `work` before keeps its phase record (import.phase.json beside the store)
  const importRecord = join(work, 'import.phase.json');
  if (reuse && existsSync(importRecord) && existsSync(join(q4, 'model.safetensors.index.json'))) {
    phases.import = { ...JSON.parse(readFileSync(importRecord, 'utf8')), reused: true };
    log(`node: reusing the import in ${q4} (${importRecord})`);
  } else {
    log(`node: import ${src} → ${q4}`);
    const imp = await usaf(['import', '--model', src, '--out', q4, '--max-shard-gb', String(Math.max(0.05, duBytes(src) / 8 / 1e9))], log, timeoutMs);
    record('import', imp, duBytes(q4), { gpu_bytes: null, result: lastJson(imp.stdout) });
    writeFileSync(importRecord, JSON.stringify(phases.import, null, 2) + '\n');
  }

  // Without --base, train on a 4-bit store writes the delta alone (and names the merge command): the merge is its own phase.
  log(`node: train ${steps} steps, SEQ ${seq}, layer ${layers - 1} trained, frozen streamed`);
  const tr = await usaf(['train', '--model', q4, '--dataset', data, '--out', run, '--steps', String(steps), '--seq', String(seq),
    '--microbatch', '1', '--train-from', String(layers - 1), '--stream-frozen', '--eval-every', '0', '--eval-windows', '1',
    '--n-importance', '1', '--reselect-every', '0', '--lr-peak', '1e-2', '--checkpoint-every', String(steps)], log, timeoutMs);
  const summary = lastJson(tr.stdout);
  // GPU bytes: the most the engine held at once (transient work included); steady: what it held at the end, by kind
  const gpuSteady = summary ? Object.values(summary.gpu_bytes ?? {}).reduce((a, b) => a + b, 0) : null;
  const gpuBytes = summary?.gpu_peak_bytes ?? null;
  record('train', tr, duBytes(run), { gpu_bytes: gpuBytes, gpu_steady_bytes: gpuSteady, gpu_bytes_by_kind: summary?.gpu_bytes ?? null, losses: summary?.losses ?? null });

  const delta = join(run, 'usaf-delta.safetensors');
  let mergedDir;
  if (await hasCommand('merge')) {
    log('node: usaf merge');
    const mg = await usaf(['merge', '--base', src, '--delta', delta, '--out', merged], log, timeoutMs);
    record('merge', mg, duBytes(merged), { gpu_bytes: null });
    mergedDir = merged;
  } else {
    mergedDir = join(run, 'export'); // before `usaf merge` existed: train's own export
    phases.train.note = 'no `usaf merge` in this build: the checked model is train\'s export/';
  }

  log('node: checking the merge against the original');
  const t0 = performance.now();
  const check = existsSync(join(mergedDir, 'model.safetensors.index.json')) || existsSync(join(mergedDir, 'model.safetensors'))
    ? checkFaithful(src, mergedDir, delta)
    : { faithful: false, first_mismatch: `no merged model in ${mergedDir}` };
  phases.check = { wall_s: +((performance.now() - t0) / 1000).toFixed(1) };
  const appPhases = ['import', 'train', 'merge'].filter((p) => phases[p]);
  return {
    env: 'node', layers,
    peak_host_bytes: Math.max(...appPhases.map((p) => phases[p].peak_host_bytes)),
    gpu_bytes: gpuBytes,
    faithful: check.faithful,
    phases, check,
    storage_bytes: { original: duBytes(src), q4_store: duBytes(q4), run: duBytes(run), merged: duBytes(mergedDir) },
    summary_losses: readLosses(join(run, 'log.jsonl')),
  };
}

function readLosses(path) {
  if (!existsSync(path)) return null;
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => 'loss' in r).map((r) => r.loss);
}
