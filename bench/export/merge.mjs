// The app's export merge in Debian's Chromium, measured apart from the rest of the app: a dedicated worker runs
// mergeModel (original behind the static server by URL, as the scale rehearsal imports it) into an OPFS folder through
// the folder sink; with "read", the range reads, CRC-32 and sync-handle writes alone. The merged files are then copied
// out of OPFS into OUT (to compare with `usaf merge`). Prints one JSON object (MB/s = 1e6 B/s).
// Usage: [WINDOW_MIB=32] node bench/export/merge.mjs MODEL_DIR DELTA_FILE [OUT_DIR] [read,fetch,merge]
// WINDOW_MIB: the merge reads through readAheadFolder with windows of that size (0: straight from the URL source).
import { build } from 'esbuild';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadavg, tmpdir } from 'node:os';
import { chromium } from 'playwright-core';
import { serveStatic } from '../../scripts/static-server.mjs';

const [modelDir, deltaFile, outDir, whatArg = 'read,merge'] = process.argv.slice(2);
if (!modelDir || !deltaFile) { console.error('usage: node bench/export/merge.mjs MODEL_DIR DELTA_FILE [OUT_DIR] [read,merge]'); process.exit(2); }
const work = join(tmpdir(), 'usaf-bench-export');
mkdirSync(work, { recursive: true });
await build({ entryPoints: [join(import.meta.dirname, 'worker.ts')], outfile: join(work, 'worker.js'), bundle: true, format: 'esm', platform: 'browser', logLevel: 'warning' });
writeFileSync(join(work, 'index.html'), '<!doctype html><title>export bench</title>');
// SW=1: a service worker with a fetch handler that answers nothing (as the app's Workbox one for a model's files)
writeFileSync(join(work, 'sw.js'), "self.addEventListener('install', () => self.skipWaiting()); self.addEventListener('activate', (e) => e.waitUntil(clients.claim())); self.addEventListener('fetch', () => {});");
const deltaDir = resolve(deltaFile, '..');
const server = await serveStatic([['/model/', resolve(modelDir)], ['/delta/', deltaDir], ['/', work]]);
const base = `http://127.0.0.1:${server.address().port}/`;
// A persistent profile on disk: OPFS in files as in a user's browser (an off-the-record context keeps it in memory).
const profile = join(work, 'profile');
rmSync(profile, { recursive: true, force: true });
const browser = await chromium.launchPersistentContext(profile, { executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox'] });
try {
  const page = await browser.newPage();
  await page.goto(base);
  if (process.env.SW === '1') {
    await page.evaluate(async () => { await navigator.serviceWorker.register('/sw.js'); await navigator.serviceWorker.ready; });
    await page.reload();
    if (!(await page.evaluate(() => !!navigator.serviceWorker.controller))) throw new Error('no service worker in control');
  }
  const files = readdirSync(modelDir).filter((f) => f.endsWith('.safetensors'));
  const load0 = loadavg()[0];
  const r = await page.evaluate(async (job) => {
    const w = new Worker('/worker.js', { type: 'module' });
    return await new Promise((res) => { w.onmessage = (e) => res(e.data); w.onerror = (e) => res({ error: e.message }); w.postMessage(job); });
  }, { model: `${base}model/`, delta: `${base}delta/${deltaFile.split('/').pop()}`, files, what: whatArg.split(','), window: Number(process.env.WINDOW_MIB ?? 0) * 2 ** 20 });
  if (r.error) throw new Error(r.error);
  const mbs = (x) => x && { ...x, mb_s: +(x.bytes / 1e6 / x.s).toFixed(1) };
  const res = r.ok;
  if (outDir && res.merge) {
    mkdirSync(outDir, { recursive: true });
    // copy the merged files out of OPFS through the page (File → bytes in 32 MiB slices → Node)
    const names = await page.evaluate(async () => {
      const d = await (await navigator.storage.getDirectory()).getDirectoryHandle('bench-merge');
      const n = [];
      for await (const [k] of d.entries()) n.push(k);
      return n;
    });
    const { openSync, writeSync, closeSync } = await import('node:fs');
    for (const name of names) {
      const fd = openSync(join(outDir, name), 'w');
      for (let at = 0; ; at += 32 << 20) {
        const b64 = await page.evaluate(async ([name, at]) => {
          const d = await (await navigator.storage.getDirectory()).getDirectoryHandle('bench-merge');
          const f = await (await d.getFileHandle(name)).getFile();
          if (at >= f.size) return null;
          const u = new Uint8Array(await f.slice(at, at + (32 << 20)).arrayBuffer());
          let s = '';
          for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000));
          return btoa(s);
        }, [name, at]);
        if (b64 === null) break;
        writeSync(fd, Buffer.from(b64, 'base64'));
      }
      closeSync(fd);
    }
  }
  console.log(JSON.stringify({
    chromium: browser.browser()?.version() ?? null, read: mbs(res.read), crc: mbs(res.crc), write_sync: mbs(res.write), merge: mbs(res.merge), merge_parts: res.mergeParts,
    ...Object.fromEntries(Object.entries(res).filter(([k]) => k.startsWith('fetch_')).map(([k, v]) => [k, mbs(v)])),
    load_avg_1min: { before: +load0.toFixed(1), after: +loadavg()[0].toFixed(1) },
  }));
} finally {
  await browser.close();
  server.close();
}
