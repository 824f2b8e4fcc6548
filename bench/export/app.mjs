// The real app's "Export fine-tuned model" measured (not the scale rehearsal's numbers): the small journey of
// bench/scale/chromium.mjs (import by URL from the app's own origin, dataset, 2 steps) then the model export with
// time stamps of the progress panel, the CPU time of every Chromium process over the writing, whether a service worker
// controls the page, and a CPU profile of the page and (over CDP Target.sendMessageToTarget) of the workers.
// Usage: node bench/export/app.mjs MODEL_DIR DATA_JSONL LAYERS [OUT_JSON]
import { build } from 'esbuild';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { serveStatic } from '../../scripts/static-server.mjs';
import { findProcess, sampleTree } from '../scale/mem.mjs';

const ROOT = resolve(import.meta.dirname, '../..');
const [src, data, layersArg, outJson = '/tmp/app-export.json'] = process.argv.slice(2);
const layers = Number(layersArg ?? 2);
const work = process.env.WORK ?? '/tmp/usaf-app-export';
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const outfile = join(work, '.config.bundle.mjs');
await build({ entryPoints: [join(ROOT, 'playwright.config.ts')], outfile, bundle: true, platform: 'node', format: 'esm', logLevel: 'warning' });
const config = (await import(pathToFileURL(outfile).href)).default;
const server = await serveStatic([['/scale-model/', resolve(src)], ['/', join(ROOT, 'dist/app')]]);
const base = `http://127.0.0.1:${server.address().port}/`;
const profile = join(work, 'profile');
const context = await chromium.launchPersistentContext(profile, { ...config.launch, viewport: config.viewport, acceptDownloads: true });
const t00 = Date.now();
const log = (...a) => console.error(`[${((Date.now() - t00) / 1000).toFixed(1)}]`, ...a);
const browserPid = findProcess(process.pid, `--user-data-dir=${profile}`);
// SAMPLER=1: the scale rehearsal's host-memory polling (bench/scale/chromium.mjs: RSS every 1 s, PSS every 5 s) meanwhile
const mem = process.env.SAMPLER === '1' ? sampleTree(browserPid, { ms: 1000, pssMs: 5000 }) : null;
const tick = Number((await import('node:child_process')).execSync('getconf CLK_TCK').toString());
function cpuByProc() {
  const out = {};
  const kids = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(f[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch { /* gone */ }
  }
  const todo = [browserPid];
  while (todo.length) {
    const p = todo.pop();
    todo.push(...(kids.get(p) ?? []));
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      const type = cmd.find((a) => a.startsWith('--type='))?.slice(7) ?? 'browser';
      const sub = cmd.find((a) => a.startsWith('--utility-sub-type='))?.slice(19) ?? '';
      out[`${p} ${type}${sub ? ' ' + sub : ''}`] = (Number(f[11]) + Number(f[12])) / tick;
      // threads
      for (const t of readdirSync(`/proc/${p}/task`)) {
        const ts = readFileSync(`/proc/${p}/task/${t}/stat`, 'utf8');
        const name = ts.slice(ts.indexOf('(') + 1, ts.lastIndexOf(')'));
        const g = ts.slice(ts.lastIndexOf(')') + 2).split(' ');
        out[`${p} ${type}${sub ? ' ' + sub : ''} / ${name}`] = (out[`${p} ${type}${sub ? ' ' + sub : ''} / ${name}`] ?? 0) + (Number(g[11]) + Number(g[12])) / tick;
      }
    } catch { /* gone */ }
  }
  return out;
}
const until = async (page, what, done, ms = 3_600_000) => {
  const t0 = Date.now();
  while (!(await done())) { if (Date.now() - t0 > ms) throw new Error(`${what} timed out`); await page.waitForTimeout(1000); }
};
const res = {};
try {
  await context.addInitScript(() => { delete window.showDirectoryPicker; });
  const page = await context.newPage();
  page.on('pageerror', (e) => log('page error', e.message));
  await page.goto(base);
  await page.locator('[data-model-id="usaf-demo-moe"] [data-testid=model-status]', { hasText: 'ready' }).waitFor({ timeout: 600_000 });
  await page.waitForFunction(() => !/Starting the engine|Tokenizing the demo data|Preparing the built-in demo model/.test(document.body.textContent ?? ''), null, { timeout: 600_000 });
  log('app ready');
  const name = `scale ${layers} layers`;
  await page.fill('#model-url', `${base}scale-model/`);
  await page.fill('#model-url-name', name);
  await page.click('button:has-text("Import from URL")');
  const card = page.locator('[data-testid=model-card]', { hasText: name });
  await until(page, 'import', async () => {
    const err = page.locator('p.error[role=alert]');
    if (await err.count()) throw new Error(`import failed: ${await err.first().textContent()}`);
    return (await card.count()) > 0;
  });
  await card.locator('input[name=model]').check();
  log('imported');
  await page.click('nav [data-screen=datasets]');
  await page.fill('#ds-name', 'scale-data');
  await page.setInputFiles('#dataset-files', data);
  const row = page.locator('[data-testid=dataset-row]', { hasText: 'scale-data' });
  await row.waitFor({ timeout: 600_000 });
  await row.locator('input[name=train-ds]').check();
  await page.goto(`${base}#p=1.st:2,mb:1,sq:16,tf:${layers - 1},ni:1,ee:2,re:0,lr:1e-2,sf:1`);
  await page.locator('[data-testid=preset-notice]', { hasText: 'Settings loaded from the link' }).waitFor();
  await page.click('nav [data-screen=run]');
  await page.fill('#run-eval-windows', '1');
  await page.click('button:has-text("Start training")');
  await until(page, 'training', async () => {
    const err = page.locator('[data-testid=run-error], [data-testid=run-live-error]');
    if (await err.count()) throw new Error(`training failed: ${await err.first().textContent()}`);
    const first = page.locator('[data-testid=run-history] tbody tr').first();
    return (await first.count()) && /done/.test((await first.textContent()) ?? '');
  });
  log('trained');
  res.sw = await page.evaluate(async () => ({ controller: navigator.serviceWorker.controller?.scriptURL ?? null, regs: (await navigator.serviceWorker.getRegistrations()).map((r) => r.active?.scriptURL), origin: location.origin }));
  log('service worker', JSON.stringify(res.sw));
  await page.click('nav [data-screen=export]');
  await page.selectOption('#export-run', { index: 0 });
  await page.locator('[data-testid=export-origin]', { hasText: /scale-model|folder/ }).waitFor({ timeout: 60_000 }).catch(() => {});
  res.origin = (await page.locator('[data-testid=export-origin]').textContent())?.replace(/\s+/g, ' ');
  // CDP: the page's profiler, and each worker's through Target.sendMessageToTarget
  const cdp = await context.newCDPSession(page);
  const PROF = process.env.PROF === '1';
  const workers = new Map(); // sessionId -> {url, pending}
  let mid = 1000;
  const pending = new Map();
  cdp.on('Target.receivedMessageFromTarget', ({ sessionId, message }) => {
    const m = JSON.parse(message);
    if (m.id && pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); }
  });
  cdp.on('Target.attachedToTarget', ({ sessionId, targetInfo }) => { workers.set(sessionId, targetInfo); });
  const wsend = (sessionId, method, params = {}) => new Promise((r) => { const id = ++mid; pending.set(id, r); cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) }); });
  if (PROF) {
    await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
    await new Promise((r) => setTimeout(r, 500));
    log('attached', [...workers.values()].map((w) => `${w.type} ${w.url}`).join(', '));
    await cdp.send('Profiler.enable'); await cdp.send('Profiler.setSamplingInterval', { interval: 1000 }); await cdp.send('Profiler.start');
    for (const s of workers.keys()) { await wsend(s, 'Profiler.enable'); await wsend(s, 'Profiler.setSamplingInterval', { interval: 1000 }); log('worker profiler start', JSON.stringify(await wsend(s, 'Profiler.start')).slice(0, 100)); }
  }
  const marks = [];
  const saving = [];
  const dir = join(work, 'merged');
  mkdirSync(dir, { recursive: true });
  page.on('download', (d) => saving.push(d.saveAs(join(dir, d.suggestedFilename()))));
  const t0 = Date.now();
  let cpu0 = null, shown = null, tw = 0;
  await page.click('button:has-text("Export fine-tuned model")');
  await until(page, 'export', async () => {
    const panel = page.locator('[data-testid=export-progress]');
    const now = (await panel.count()) ? ((await panel.textContent().catch(() => '')) ?? '').replace(/\s+/g, ' ').replace(/[\d.]+ ?(%|[KMG]?B)/g, '').slice(0, 160) : null;
    if (now && now !== shown) { shown = now; marks.push({ t: (Date.now() - t0) / 1000, now }); log('export:', now); }
    if (!cpu0 && /writing/.test(now ?? '')) { cpu0 = cpuByProc(); tw = Date.now(); }
    const err = page.locator('[data-testid=export-error]');
    if (await err.count()) throw new Error(`export failed: ${await err.first().textContent()}`);
    return (await page.locator('[data-testid=export-result]').count()) > 0 && !(await panel.count());
  }, 1_800_000);
  const cpu1 = cpuByProc();
  const wall = (Date.now() - tw) / 1000;
  res.write_wall_s = wall;
  res.cpu_s_during_writing = Object.fromEntries(Object.entries(cpu1).map(([k, v]) => [k, +(v - (cpu0?.[k] ?? 0)).toFixed(2)]).filter(([, v]) => v > 0.05).sort((a, b) => b[1] - a[1]));
  res.marks = marks;
  if (PROF) {
    const p = await cdp.send('Profiler.stop');
    writeFileSync('/tmp/app-export-page.cpuprofile', JSON.stringify(p.profile));
    let i = 0;
    for (const [s, info] of workers) {
      const r = await wsend(s, 'Profiler.stop');
      if (r.result?.profile) writeFileSync(`/tmp/app-export-worker${i++}.cpuprofile`, JSON.stringify(r.result.profile));
      log('worker', info.url, r.error ? JSON.stringify(r.error) : 'profile saved');
    }
  }
  const names = await page.locator('[data-testid=export-result] ul.files li code').allTextContents();
  while (saving.length < names.length) await page.waitForTimeout(500);
  await Promise.all(saving);
  res.downloads_s = (Date.now() - t0) / 1000;
  res.merged_bytes = readdirSync(dir).reduce((a, f) => a + (f.endsWith('.safetensors') ? readFileSync(join(dir, f)).length : 0), 0);
  res.merged_mb_s = +(res.merged_bytes / 1e6 / wall).toFixed(1);
  console.log(JSON.stringify(res, null, 1));
  writeFileSync(outJson, JSON.stringify(res, null, 1));
} finally {
  mem?.stop();
  await context.close().catch(() => {});
  server.close();
}
