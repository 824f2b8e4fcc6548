// The flagship journey in the app (dist/app) in Debian's Chromium driven by playwright-core, WebGPU on SwiftShader:
// the checkpoint is imported from a URL (the same local static server as the app, which honours Range) into the 4-bit
// store → a dataset is added → 2 steps are trained (tiny SEQ, top layer, frozen layers streamed) → the fine-tuned
// model and the sparse delta are exported (without a folder picker: through the app's OPFS fallback and downloads,
// saved to disk here) → faithfulness read from the files. Host memory: every Chromium process, polled from /proc.

import { build } from 'esbuild';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { findProcess, sampleTree } from './mem.mjs';

/** A phase's RSS peaks split by kind of page and by process kind (mem.mjs). */
const splitOf = (p) => ({ peak_rss_anon_bytes: p.peak_rss_anon_sum, peak_rss_file_bytes: p.peak_rss_file_sum, peak_rss_shmem_bytes: p.peak_rss_shmem_sum, peak_rss_by_kind: p.peak_rss_by_kind, marks: p.marks, timeline: p.timeline });
import { checkFaithful } from './check.mjs';
import { duBytes } from './node.mjs';
import { serveStatic } from '../../scripts/static-server.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
const APP = join(ROOT, 'dist/app');

/** The e2e config's Chromium launch options (playwright.config.ts, bundled as scripts/e2e.mjs does). */
async function launchOptions(work) {
  const outfile = join(work, '.config.bundle.mjs');
  await build({ entryPoints: [join(ROOT, 'playwright.config.ts')], outfile, bundle: true, platform: 'node', format: 'esm', logLevel: 'warning' });
  return (await import(pathToFileURL(outfile).href)).default;
}

const UNIT = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
/** "1.23 GB" as the app formats bytes (binary units, 3 significant digits) → bytes. */
const parseBytes = (s) => {
  const m = /([\d.]+)\s*(B|KB|MB|GB|TB)/.exec(s ?? '');
  return m ? Math.round(Number(m[1]) * UNIT[m[2]]) : null;
};

/** Polls `done()` (which may throw) every second until it is true. */
async function until(page, timeoutMs, what, done) {
  const t0 = Date.now();
  while (!(await done())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what} did not finish in ${timeoutMs / 1000} s`);
    await page.waitForTimeout(1000);
  }
}

/**
 * Clicks `button` with downloads collected into `dir` until the export's result panel lists every file as saved; marks
 * (`mark`) each export phase and file the progress panel shows, and when the downloads start and end.
 */
async function exportInto(page, button, dir, timeoutMs, mark = () => {}) {
  mkdirSync(dir, { recursive: true });
  const saving = [];
  const on = (d) => saving.push(d.saveAs(join(dir, d.suggestedFilename())).then(() => d.suggestedFilename()));
  page.on('download', on);
  const result = page.locator('[data-testid=export-result]');
  const before = (await result.count()) ? await result.textContent() : null; // an earlier export's result
  await page.click(`button:has-text("${button}")`);
  let shown = null;
  await until(page, timeoutMs, `"${button}"`, async () => {
    const panel = page.locator('[data-testid=export-progress]');
    const now = (await panel.count()) ? `${button}: ${(await panel.locator('h3').textContent().catch(() => '')) ?? ''}${(/ · ([^·]+)$/.exec((await panel.textContent().catch(() => '')) ?? '')?.[1] ?? '').replace(/Cancel export.*$/, '')}`.trim() : null;
    if (now && now !== shown) mark((shown = now));
    const err = page.locator('[data-testid=export-error]');
    if (await err.count()) throw new Error(`export failed: ${await err.first().textContent()}`);
    return (await result.count()) > 0 && (await result.textContent()) !== before && !(await page.locator('[data-testid=export-progress]').count());
  });
  const names = await result.locator('ul.files li code').allTextContents();
  mark(`${button}: result shown, ${saving.length} of ${names.length} downloads started`);
  const t0 = Date.now();
  while (saving.length < names.length && Date.now() - t0 < timeoutMs) await page.waitForTimeout(500);
  const saved = await Promise.all(saving);
  mark(`${button}: downloads saved`);
  page.off('download', on);
  const missing = names.filter((n) => !saved.includes(n));
  if (missing.length) throw new Error(`export "${button}": not downloaded: ${missing.join(', ')}`);
  return { files: names, bytes: duBytes(dir), folder_text: (await result.textContent())?.replace(/\s+/g, ' ').slice(0, 300) };
}

/**
 * src: the Hub checkpoint (served under /scale-model/); work: scratch folder; data: the training JSONL.
 * Returns the run's JSON record.
 */
export async function chromiumJourney({ src, work, data, layers, seq = 16, steps = 2, timeoutMs = 3_600_000, log = console.error, progress = () => {} }) {
  rmSync(work, { recursive: true, force: true }); // a fresh profile: a store, runs or downloads left by an earlier run would mix in
  mkdirSync(work, { recursive: true });
  const config = await launchOptions(work);
  const server = await serveStatic([['/scale-model/', resolve(src)], ['/', APP]]);
  const base = `http://127.0.0.1:${server.address().port}/`;
  // A persistent profile on disk: the store (OPFS, IndexedDB) lives in files as in a user's browser (a plain newContext()
  // is off the record and keeps OPFS in memory, which would count the whole 4-bit store as host memory).
  const profile = join(work, 'profile');
  const context = await chromium.launchPersistentContext(profile, { ...config.launch, viewport: config.viewport, acceptDownloads: true });
  const browserPid = findProcess(process.pid, `--user-data-dir=${profile}`);
  if (!browserPid) throw new Error(`no Chromium process with the profile ${profile} found below ${process.pid}`);
  const mem = sampleTree(browserPid, { ms: 1000 });
  const phases = {};
  const errors = [];
  let t = performance.now();
  let page;
  const storage = () => page.evaluate(async () => (await navigator.storage.estimate()).usage ?? 0);
  let usageBefore = 0;
  const phase = async (name) => {
    mem.phase(name);
    t = performance.now();
    usageBefore = await storage();
  };
  const end = async (name, extra = {}) => {
    const usage = await storage();
    phases[name] = { wall_s: +((performance.now() - t) / 1000).toFixed(1), storage_bytes: usage - usageBefore, storage_usage_bytes: usage, profile_bytes: duBytes(profile), ...extra };
    const peaks = mem.peaks(name);
    if (peaks) Object.assign(phases[name], { peak_host_bytes: peaks.peak_rss_sum, peak_pss_bytes: peaks.peak_pss_sum, peak_vmhwm_bytes: peaks.peak_hwm_max, ...splitOf(peaks) });
    log(`chromium: ${name} done in ${phases[name].wall_s} s`);
    progress(phases);
  };
  try {
    // No folder picker: the export takes the app's fallback (OPFS, then a download per file from its disk-backed File).
    await context.addInitScript(() => { delete window.showDirectoryPicker; });
    page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console error: ${m.text()}`); });

    mem.phase('startup');
    await page.goto(base);
    await page.locator('[data-model-id="usaf-demo-moe"] [data-testid=model-status]', { hasText: 'ready' }).waitFor({ timeout: timeoutMs });
    await page.waitForFunction(() => !/Starting the engine|Tokenizing the demo data|Preparing the built-in demo model/.test(document.body.textContent ?? ''), null, { timeout: timeoutMs });

    await phase('import');
    log(`chromium: import ${base}scale-model/`);
    const name = `scale ${layers} layers`;
    await page.fill('#model-url', `${base}scale-model/`);
    await page.fill('#model-url-name', name);
    await page.click('button:has-text("Import from URL")');
    const card = page.locator('[data-testid=model-card]', { hasText: name });
    await until(page, timeoutMs, 'the import', async () => {
      const err = page.locator('p.error[role=alert]');
      if (await err.count()) throw new Error(`import failed: ${await err.first().textContent()}`);
      return (await card.count()) > 0;
    });
    const modelId = await card.getAttribute('data-model-id');
    await card.locator('input[name=model]').check();
    await end('import', { card: (await card.textContent())?.replace(/\s+/g, ' ').slice(0, 300) });

    await phase('dataset');
    await page.click('nav [data-screen=datasets]');
    await page.fill('#ds-name', 'scale-data');
    await page.setInputFiles('#dataset-files', data);
    const row = page.locator('[data-testid=dataset-row]', { hasText: 'scale-data' });
    await row.waitFor({ timeout: timeoutMs });
    await row.locator('input[name=train-ds]').check();
    await end('dataset', { tokens: await row.locator('[data-testid=dataset-tokens]').textContent() });

    await phase('train');
    log(`chromium: train ${steps} steps`);
    await page.goto(`${base}#p=1.st:${steps},mb:1,sq:${seq},tf:${layers - 1},ni:1,ee:${steps},re:0,lr:1e-2,sf:1`);
    await page.locator('[data-testid=preset-notice]', { hasText: 'Settings loaded from the link' }).waitFor();
    await page.click('nav [data-screen=run]');
    await page.fill('#run-eval-windows', '1');
    await page.click('button:has-text("Start training")');
    let gpuBytes = 0; // the run screen's "GPU memory": the engine's buffers at each step (steady state)
    let gpuPeakBytes = 0; // its "GPU peak": the most held at once (importance, selection scratch and streamed layers included)
    const t0 = Date.now();
    let lastPhase = '';
    for (;;) {
      const text = (await page.locator('[data-testid=run-stats]').textContent()) ?? '';
      const shown = ((await page.locator('[data-testid=run-phase]').textContent().catch(() => '')) ?? '').replace(/\s+/g, ' ').replace(/[\d.,]+ ?%|\d+ of \d+/g, '').trim().slice(0, 120);
      if (shown !== lastPhase) mem.mark((lastPhase = shown) || '(no set-up phase shown)');
      const g = parseBytes(/GPU memory\s*([\d.]+\s*[KMGT]?B)/.exec(text)?.[1]);
      if (g && g > gpuBytes) gpuBytes = g;
      const p = parseBytes(/GPU peak\s*([\d.]+\s*[KMGT]?B)/.exec(text)?.[1]);
      if (p && p > gpuPeakBytes) gpuPeakBytes = p;
      const err = page.locator('[data-testid=run-error], [data-testid=run-live-error]');
      if (await err.count()) throw new Error(`training failed: ${await err.first().textContent()}`);
      const first = page.locator('[data-testid=run-history] tbody tr').first();
      if ((await first.count()) && /done/.test((await first.textContent()) ?? '')) break;
      if (Date.now() - t0 > timeoutMs) throw new Error('training did not finish in time');
      await page.waitForTimeout(2000);
    }
    // the whole run's peak, kept delta included, to the byte: written beside the delta the run keeps (worker/engine.ts keepDelta)
    const kept = await page.evaluate(async () => {
      const runs = await (await navigator.storage.getDirectory()).getDirectoryHandle('runs');
      for await (const [, h] of runs.entries()) {
        if (h.kind !== 'directory') continue;
        try {
          return JSON.parse(await (await (await (await h.getDirectoryHandle('delta')).getFileHandle('kept.json')).getFile()).text());
        } catch { /* not this run */ }
      }
      return null;
    });
    // exact, and after everything the run did (the screen's figure is rounded and seen at the steps only)
    if (typeof kept?.gpuPeakBytes === 'number') gpuPeakBytes = kept.gpuPeakBytes;
    await end('train', { gpu_bytes: gpuPeakBytes, gpu_steady_bytes: gpuBytes, gpu_peak_kept: kept?.gpuPeakBytes ?? null, stats: (await page.locator('[data-testid=run-stats]').textContent())?.replace(/\s+/g, ' ').slice(0, 400) });

    await phase('export');
    log('chromium: export the fine-tuned model and the delta');
    await page.click('nav [data-screen=export]');
    await page.selectOption('#export-run', { index: 0 });
    await page.locator('[data-testid=export-origin]', { hasText: /scale-model|folder/ }).waitFor({ timeout: 60_000 }).catch(() => {});
    const origin = (await page.locator('[data-testid=export-origin]').textContent())?.replace(/\s+/g, ' ');
    const model = await exportInto(page, 'Export fine-tuned model', join(work, 'merged'), timeoutMs, (l) => mem.mark(l));
    const modelPeaks = mem.peaks('export'); // the fine-tuned model's part of the phase (the delta's follows)
    const deltaDir = join(work, 'delta');
    const delta = await exportInto(page, 'Export sparse delta', deltaDir, timeoutMs, (l) => mem.mark(l));
    await end('export', { origin, model, delta, downloads_bytes: model.bytes + delta.bytes, model_export_peaks: modelPeaks });

    const mstats = mem.stop();
    for (const [p, v] of Object.entries(mstats.phases)) if (phases[p]) Object.assign(phases[p], { peak_host_bytes: v.peak_rss_sum, peak_pss_bytes: v.peak_pss_sum, peak_vmhwm_bytes: v.peak_hwm_max, ...splitOf(v) });
    phases.startup = { peak_host_bytes: mstats.phases.startup?.peak_rss_sum, peak_pss_bytes: mstats.phases.startup?.peak_pss_sum };

    log('chromium: checking the merge against the original');
    const tc = performance.now();
    const check = checkFaithful(src, join(work, 'merged'), join(deltaDir, 'usaf-delta.safetensors'));
    phases.check = { wall_s: +((performance.now() - tc) / 1000).toFixed(1) };
    const appPhases = ['import', 'dataset', 'train', 'export'];
    return {
      env: 'chromium', layers, browser: await page.evaluate(() => navigator.userAgent), model_id: modelId,
      peak_host_bytes: Math.max(...appPhases.map((p) => phases[p].peak_host_bytes)),
      peak_host_note: 'sum of VmRSS over every Chromium process (shared pages counted once per process); peak_pss_bytes splits them',
      gpu_bytes: gpuPeakBytes,
      gpu_steady_bytes: gpuBytes,
      gpu_bytes_note: 'the most GPU memory the engine held at once in the run (its buffers tallied by createBuffer, transient work included: run screen "GPU peak" and kept.json); gpu_steady_bytes: the run screen\'s "GPU memory" (held between steps, 3 significant digits)',
      faithful: check.faithful,
      phases, check, page_errors: errors.slice(0, 10),
      storage_bytes: { original: duBytes(src), opfs_usage_after: phases.export.storage_usage_bytes, downloads: phases.export.downloads_bytes },
    };
  } finally {
    mem.stop();
    await context.close().catch(() => {});
    server.close();
  }
}
