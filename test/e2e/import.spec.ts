// Importing into the app: a model folder (checked, quantized into the 4-bit store, shown with its facts, deleted and its
// files freed), a refusal when the storage left is too small, a URL import (Range requests) cancelled and resumed to the
// bytes of an uninterrupted import, and datasets:
// pre-tokenized records whose labels are shifted by one (fixed, and the user is told), malformed JSONL (the error
// names the line), and a folder of source files filtered by extension.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { gotoScreen, test, waitForDemo } from './harness.ts';

const TMP = 'test-results/e2e/inputs';

function writeInputs(): void {
  mkdirSync(`${TMP}/src/.cache`, { recursive: true });
  // Records as the seed's README recipe writes them: labels = input_ids shifted left by one.
  const records = [[5, 17, 300, 41, 9, 0], [88, 2049, 7, 7, 1000, 0], [3, 4, 5, 6, 0]].map((ids) =>
    JSON.stringify({ input_ids: ids, labels: [...ids.slice(1), -100] }));
  writeFileSync(`${TMP}/seed-shifted.jsonl`, `${records.join('\n')}\n`);
  writeFileSync(`${TMP}/broken.jsonl`, '{"text": "const a = 1;"}\n{"text": "let b = 2;"}\n{"text": "oops"\n');
  writeFileSync(`${TMP}/src/main.js`, 'export function add(a, b) {\n  return a + b;\n}\n');
  writeFileSync(`${TMP}/src/util.js`, 'export const twice = (x) => 2 * x;\n');
  writeFileSync(`${TMP}/src/notes.md`, '# not code\n');
  writeFileSync(`${TMP}/src/.cache/junk.js`, 'var junk = 1;\n');
}

/** Paths and sizes of the files below an OPFS folder ('store/models/<id>'), read in the page; null when it is missing. */
async function opfsFiles(page: Page, path: string): Promise<Record<string, number> | null> {
  return page.evaluate(async (p) => {
    let dir = await navigator.storage.getDirectory();
    try {
      for (const part of p.split('/')) dir = await dir.getDirectoryHandle(part);
    } catch {
      return null;
    }
    const out: Record<string, number> = {};
    const walk = async (d: FileSystemDirectoryHandle, prefix: string): Promise<void> => {
      for await (const h of (d as unknown as { values(): AsyncIterable<FileSystemHandle> }).values()) {
        if (h.kind === 'file') out[prefix + h.name] = (await (h as FileSystemFileHandle).getFile()).size;
        else await walk(h as FileSystemDirectoryHandle, `${prefix}${h.name}/`);
      }
    };
    await walk(dir, '');
    return out;
  }, path);
}

/** True when two stored models' files are identical byte for byte (compared in the page). */
async function sameStoredBytes(page: Page, a: string, b: string): Promise<string> {
  return page.evaluate(async ([x, y]) => {
    const root = await (await (await navigator.storage.getDirectory()).getDirectoryHandle('store')).getDirectoryHandle('models');
    const dx = await root.getDirectoryHandle(x!);
    const dy = await root.getDirectoryHandle(y!);
    const names: string[] = [];
    for await (const h of (dx as unknown as { values(): AsyncIterable<FileSystemHandle> }).values()) names.push(h.name);
    for (const n of names) {
      const [fx, fy] = await Promise.all([dx, dy].map(async (d) => new Uint8Array(await (await (await d.getFileHandle(n)).getFile()).arrayBuffer())));
      if (fx!.byteLength !== fy!.byteLength || fx!.some((v, i) => v !== fy![i])) return `${n} differs`;
    }
    return `${names.length} files identical`;
  }, [a, b]);
}

const modelsFigure = async (page: Page): Promise<string> => /models ([\d.]+ [KMG]?B)/.exec((await page.locator('[data-testid=storage-text]').textContent()) ?? '')?.[1] ?? '';

test('a model folder is checked, quantized into the 4-bit store, shown, and deleted (its files freed)', async (env) => {
  const { page } = await env.open();
  page.on('dialog', (d) => void d.accept());
  await page.goto(env.baseUrl);
  await waitForDemo(page);
  const demoOnly = await modelsFigure(page);
  await page.setInputFiles('#model-folder', 'test/fixtures/qwen3_moe');
  const card = page.locator('[data-testid=model-card][data-model-id^="qwen3-moe-"]');
  await card.waitFor({ timeout: 60_000 });
  const id = (await card.getAttribute('data-model-id'))!;
  const text = (await card.textContent()) ?? '';
  assert.match(text, /Qwen3-MoE/);
  assert.match(text, /no tokenizer: pre-tokenized data only/);
  assert.match(text, /folder "qwen3_moe"/);
  assert.match(text, /4-bit experts/);
  assert.match(await card.locator('[data-testid=model-stored-as]').textContent() ?? '', /routed experts in 4 bits \(HQQ, groups of 128\)/);
  const files = await opfsFiles(page, `store/models/${id}`);
  assert.ok(files && files['config.json'] && files['model.safetensors.index.json'], `stored files: ${JSON.stringify(files)}`);
  assert.ok(!Object.keys(files).some((f) => f.endsWith('.partial')));
  await env.screenshot(page, '09-model-imported');
  // The imported model is the chosen one: its plan says runs use its 4-bit experts (QUANTIZE_EXPERTS implied).
  await gotoScreen(page, 'preset');
  await page.locator('[data-testid=memory-plan]', { hasText: 'qwen3_moe is stored with its experts in 4 bits (groups of 128)' }).waitFor({ timeout: 60_000 });
  await gotoScreen(page, 'models');
  await card.getByRole('button', { name: /^Delete / }).click();
  await card.waitFor({ state: 'detached' });
  assert.equal(await page.locator('[data-testid=model-card]').count(), 1);
  assert.equal(await opfsFiles(page, `store/models/${id}`), null, 'the deleted model\'s files are gone');
  await page.locator('[data-testid=storage-text]', { hasText: `models ${demoOnly}` }).waitFor();
});

test('an import that does not fit the storage left is refused, naming needed and available bytes', async (env) => {
  const { page } = await env.open();
  await page.goto(env.baseUrl);
  await waitForDemo(page);
  const worker = page.workers().find((w) => /worker/.test(w.url()));
  assert.ok(worker, 'the engine worker');
  // The browser's figure, as a nearly full disk would give it (the worker asks navigator.storage.estimate()).
  await worker.evaluate(() => {
    (navigator.storage as { estimate: () => Promise<StorageEstimate> }).estimate = async () => ({ usage: 4_000_000, quota: 5_000_000 });
  });
  await page.fill('#model-url', `${env.baseUrl}models/usaf-demo-moe/`);
  await page.fill('#model-url-name', 'too big');
  await page.click('button:has-text("Import from URL")');
  const alert = page.locator('[role=alert]', { hasText: 'Import refused' });
  await alert.waitFor({ timeout: 60_000 });
  assert.match((await alert.textContent()) ?? '',
    /Not enough storage to import "too big": it needs 1\d\.\d MB \([\d,]+ bytes, experts in 4 bits\) and this site has 1\.0 MB \(1,000,000 bytes\) available/);
  assert.equal(await page.locator('[data-testid=model-card]').count(), 1);
  const store = (await opfsFiles(page, 'store/models')) ?? {};
  assert.deepEqual(Object.keys(store).filter((f) => f.startsWith('too-big-')), [], 'nothing was written');
  await env.screenshot(page, '12-import-refused');
});

test('datasets: shifted labels are fixed and reported, malformed JSONL names its line, folders filter by extension', async (env) => {
  writeInputs();
  const { page } = await env.open();
  await page.goto(env.baseUrl);
  await waitForDemo(page);
  await gotoScreen(page, 'datasets');

  await page.setInputFiles('#dataset-files', join(TMP, 'seed-shifted.jsonl'));
  const row = page.locator('[data-testid=dataset-row]', { hasText: 'seed-shifted.jsonl' });
  await row.waitFor({ timeout: 60_000 });
  assert.match((await row.textContent()) ?? '', /Labels were shifted by one and have been fixed/);
  assert.equal(await row.locator('[data-testid=dataset-tokens]').textContent(), '17');
  await page.locator('[role=status]', { hasText: /shifted back to the Hugging Face convention/ }).waitFor();
  await env.screenshot(page, '10-dataset-shifted-labels');

  await page.setInputFiles('#dataset-files', join(TMP, 'broken.jsonl'));
  const err = page.locator('[data-testid=dataset-error]');
  await err.waitFor({ timeout: 60_000 });
  assert.match((await err.textContent()) ?? '', /broken\.jsonl line 3: not valid JSON/);

  await page.fill('#ds-ext', 'js');
  await page.setInputFiles('#dataset-folder', join(TMP, 'src'));
  const folderRow = page.locator('[data-testid=dataset-row]', { has: page.locator('td[data-label=Name]', { hasText: /^src/ }) });
  await folderRow.waitFor({ timeout: 60_000 });
  assert.equal(await folderRow.locator('[data-testid=dataset-documents]').textContent(), '2');
  assert.match((await folderRow.textContent()) ?? '', /2 file\(s\) skipped/);
  await env.screenshot(page, '11-datasets-added');
});

test('a URL import (Range requests) shows progress, can be cancelled, and resumes to the bytes of an uninterrupted import', async (env) => {
  const { context, page } = await env.open();
  let ranged = 0;
  context.on('request', (r) => { if (/\/slow\/models\/.*safetensors$/.test(r.url()) && r.headers().range) ranged++; });
  await page.goto(env.baseUrl);
  await waitForDemo(page);
  // The app's own server, through its slow path: the same demo files, 300 ms per range request.
  await page.fill('#model-url', `${env.baseUrl}slow/models/usaf-demo-moe/`);
  await page.fill('#model-url-name', 'demo copy');
  await page.click('button:has-text("Import from URL")');
  const bar = page.getByRole('progressbar', { name: 'Model import' });
  // Cancelled past 40 %: some shards are stored by then.
  await page.waitForFunction(() => {
    const b = document.querySelector('[role=progressbar]');
    return Number(b?.getAttribute('aria-valuenow')) > 0.4 * Number(b?.getAttribute('aria-valuemax'));
  }, null, { timeout: 150_000 });
  const during = (await bar.getAttribute('aria-valuetext')) ?? '';
  assert.match(during, /MB of 1\d\.\d MB · \d+ of \d+ tensors · [\d.]+ MB read · /);
  await env.screenshot(page, '12-import-progress');
  await page.click('button:has-text("Cancel import")');
  await page.locator('[role=alert]', { hasText: 'Import cancelled' }).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('[data-testid=model-card]').count(), 1, 'a cancelled import is not listed');
  assert.ok(ranged > 0, 'the shards were read with Range requests');
  const partial = Object.keys((await opfsFiles(page, 'store/models')) ?? {}).filter((f) => f.startsWith('demo-copy-') && f.endsWith('.safetensors'));
  assert.ok(partial.length > 0, 'the shards stored before the cancel are kept');

  await page.click('button:has-text("Import from URL")');
  await page.waitForFunction(() => /resumed/.test(document.querySelector('[role=progressbar]')?.getAttribute('aria-valuetext') ?? ''), null, { timeout: 60_000 });
  const card = page.locator('[data-testid=model-card]', { hasText: 'demo copy' });
  await card.waitFor({ timeout: 240_000 });
  assert.match((await card.textContent()) ?? '', /1\d\.\d MB in \d+ files/);
  const id = (await card.getAttribute('data-model-id'))!;
  // the demo model was imported from the same files at first launch, uninterrupted
  assert.match(await sameStoredBytes(page, 'usaf-demo-moe', id), /^\d+ files identical$/);
}, { timeoutMs: 480_000 });

test('a model copied by an earlier version (Hub files) stays listed and usable, and converts into the 4-bit store keeping the copy', async (env) => {
  const { page } = await env.open();
  await page.goto(env.baseUrl);
  await waitForDemo(page);
  // What an earlier version left: the demo's Hub files in models/<id>/ and its record usaf-model.json, written last.
  await page.evaluate(async (base) => {
    const names = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors.index.json',
      ...[1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`)];
    const dir = await (await (await navigator.storage.getDirectory()).getDirectoryHandle('models', { create: true }))
      .getDirectoryHandle('legacy-demo', { create: true });
    const files: { path: string; bytes: number }[] = [];
    for (const n of names) {
      const data = await (await fetch(`${base}models/usaf-demo-moe/${n}`)).arrayBuffer();
      const w = await (await dir.getFileHandle(n, { create: true })).createWritable();
      await w.write(data);
      await w.close();
      files.push({ path: n, bytes: data.byteLength });
    }
    const manifest = await new Promise<Record<string, unknown>>((ok, fail) => {
      const open = indexedDB.open('usaf-store');
      open.onerror = () => fail(open.error);
      open.onsuccess = () => {
        const get = open.result.transaction('models').objectStore('models').get('usaf-demo-moe');
        get.onsuccess = () => ok(get.result as Record<string, unknown>);
        get.onerror = () => fail(get.error);
      };
    });
    const { storage: _s, groupSize: _g, ...old } = manifest;
    const record = { ...old, id: 'legacy-demo', name: 'legacy demo', builtin: false, files, bytes: files.reduce((a, f) => a + f.bytes, 0), source: 'folder "usaf-demo-moe"' };
    const w = await (await dir.getFileHandle('usaf-model.json', { create: true })).createWritable();
    await w.write(JSON.stringify(record));
    await w.close();
  }, env.baseUrl);
  await page.reload();
  await waitForDemo(page);
  const legacy = page.locator('[data-testid=model-card][data-model-id="legacy-demo"]');
  await legacy.waitFor();
  assert.match((await legacy.textContent()) ?? '', /full-precision copy \(earlier version\).*31\.\d MB in 9 files/s);
  await legacy.locator('[data-testid=model-migrate] button', { hasText: 'Convert to 4-bit' }).click();
  const converted = page.locator('[data-testid=model-card][data-model-id="legacy-demo-4bit"]');
  await converted.waitFor({ timeout: 120_000 });
  assert.match((await converted.textContent()) ?? '', /legacy demo \(4-bit\).*4-bit experts.*1\d\.\d MB in \d+ files/s);
  assert.equal(await legacy.count(), 1, 'the earlier copy is kept');
  assert.match(await sameStoredBytes(page, 'usaf-demo-moe', 'legacy-demo-4bit'), /^\d+ files identical$/);
  await env.screenshot(page, '13-model-converted');
}, { timeoutMs: 300_000 });
