// Browser end-to-end tests (what `npm run test:e2e` runs after `vite build`): serves dist/app from a small static
// server on 127.0.0.1, bundles test/e2e/*.spec.ts with esbuild, runs every test in Debian's Chromium through
// playwright-core, and ends with "N passed, M failed" (exit status 1 on any failure).
//
// Usage: node scripts/e2e.mjs [name filter]    Screenshots: test-results/e2e/*.png

import { build } from 'esbuild';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { serveStatic } from './static-server.mjs';

const ROOT = resolve(import.meta.dirname, '..');
const APP = join(ROOT, 'dist/app');
const filter = process.argv[2] ?? '';

// ---------------------------------------------------------------------------------------------
// A static server like any static host: GET/HEAD, single byte ranges, 404 for what is not there (no SPA fallback).
// Test aids: paths under /slow/ serve the same files, byte ranges 300 ms late (a slow download, to cancel an import);
// paths under /deploy/sub/ serve the same files (the app uploaded into a sub-folder).

function serve(dir) {
  return serveStatic([['/', dir]], (req, res, server) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname.startsWith('/deploy/sub/')) {
      req.url = url.pathname.slice('/deploy/sub'.length) + url.search;
      server.emit('request', req, res);
      return true;
    }
    if (url.pathname.startsWith('/slow/')) {
      req.url = url.pathname.slice(5) + url.search;
      if (req.headers.range) setTimeout(() => server.emit('request', req, res), 300);
      else server.emit('request', req, res);
      return true;
    }
    return false;
  });
}

// ---------------------------------------------------------------------------------------------
// Bundle the specs (TypeScript) with the harness and the config into one module.

async function loadTests() {
  const { default: config } = await import(pathToFileURL(await bundle('playwright.config.ts', 'config')).href);
  const specs = readdirSync(join(ROOT, config.testDir)).filter((f) => f.endsWith('.spec.ts')).sort();
  const entry = [
    `export { tests, makeEnv, foreignRequests } from './${config.testDir}/harness.ts';`,
    ...specs.map((f) => `import './${config.testDir}/${f}';`),
  ].join('\n');
  const out = await bundle(null, 'tests', entry);
  return { config, ...(await import(pathToFileURL(out).href)) };
}

async function bundle(file, name, contents) {
  const outDir = join(ROOT, 'test-results/e2e');
  mkdirSync(outDir, { recursive: true });
  const outfile = join(outDir, `.${name}.bundle.mjs`);
  await build({
    ...(contents ? { stdin: { contents, resolveDir: ROOT, loader: 'ts', sourcefile: 'e2e-entry.ts' } } : { entryPoints: [join(ROOT, file)] }),
    outfile, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning',
    external: ['playwright-core'],
  });
  return outfile;
}

// ---------------------------------------------------------------------------------------------
// Run

const withTimeout = (p, ms, what) => Promise.race([
  p,
  new Promise((_, fail) => setTimeout(() => fail(new Error(`${what} timed out after ${ms / 1000} s`)), ms).unref()),
]);

if (!existsSync(join(APP, 'index.html'))) {
  console.error('dist/app/index.html is missing: run `vite build` first (npm run test:e2e does).');
  process.exit(1);
}
const { config, tests, makeEnv, foreignRequests } = await loadTests();
const server = await serve(APP);
const baseUrl = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch(config.launch);
console.log(`e2e: ${browser.version()} on ${baseUrl}`);

let passed = 0;
let failed = 0;
for (const t of tests.filter((x) => x.name.includes(filter))) {
  const sessions = [];
  const env = makeEnv(browser, baseUrl, sessions);
  const t0 = Date.now();
  let error = null;
  try {
    await withTimeout(t.run(env), t.timeoutMs ?? config.timeoutMs, t.name);
    const foreign = sessions.flatMap((s) => foreignRequests(s.requests, baseUrl));
    if (foreign.length) throw new Error(`requests left the app's origin: ${[...new Set(foreign)].slice(0, 5).join(', ')}`);
    const errors = sessions.flatMap((s) => s.errors);
    if (errors.length) throw new Error(`the page reported errors:\n    ${errors.slice(0, 5).join('\n    ')}`);
  } catch (e) {
    error = e;
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (error) {
    failed++;
    console.log(`✗ ${t.name} (${secs} s)\n    ${String(error.stack ?? error).split('\n').slice(0, 8).join('\n    ')}`);
    for (const [i, s] of sessions.entries()) {
      await s.page.screenshot({ path: `${config.outputDir}/failed-${t.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)}-${i}.png`, fullPage: true }).catch(() => {});
    }
  } else {
    passed++;
    console.log(`✓ ${t.name} (${secs} s)`);
  }
  for (const s of sessions) await s.context.close().catch(() => {});
}

await browser.close();
server.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed || passed === 0 ? 1 : 0);
