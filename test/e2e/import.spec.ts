// Importing into the app: a model folder (checked, copied into OPFS, shown with its facts, deleted), and datasets:
// pre-tokenized records whose labels are shifted by one (fixed, and the user is told), malformed JSONL (the error
// names the line), and a folder of source files filtered by extension.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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

test('a model folder is checked, copied into storage, shown and deleted', async (env) => {
  const { page } = await env.open();
  page.on('dialog', (d) => void d.accept());
  await page.goto(env.baseUrl);
  await waitForDemo(page);
  await page.setInputFiles('#model-folder', 'test/fixtures/qwen3_moe');
  const card = page.locator('[data-testid=model-card][data-model-id^="qwen3-moe-"]');
  await card.waitFor({ timeout: 60_000 });
  const text = (await card.textContent()) ?? '';
  assert.match(text, /Qwen3-MoE/);
  assert.match(text, /no tokenizer: pre-tokenized data only/);
  assert.match(text, /folder "qwen3_moe"/);
  await env.screenshot(page, '09-model-imported');
  await card.getByRole('button', { name: /^Delete / }).click();
  await card.waitFor({ state: 'detached' });
  assert.equal(await page.locator('[data-testid=model-card]').count(), 1);
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
  const folderRow = page.locator('[data-testid=dataset-row]', { hasText: /^src/ });
  await folderRow.waitFor({ timeout: 60_000 });
  assert.equal(await folderRow.locator('[data-testid=dataset-documents]').textContent(), '2');
  assert.match((await folderRow.textContent()) ?? '', /2 file\(s\) skipped/);
  await env.screenshot(page, '11-datasets-added');
});

test('a URL import shows progress, can be cancelled, and resumes without copying the stored bytes again', async (env) => {
  const { page } = await env.open();
  await page.goto(env.baseUrl);
  await waitForDemo(page);
  // The app's own server, through its slow path: the same demo files, 300 ms per request.
  await page.fill('#model-url', `${env.baseUrl}slow/models/usaf-demo-moe/`);
  await page.fill('#model-url-name', 'demo copy');
  await page.click('button:has-text("Import from URL")');
  const bar = page.getByRole('progressbar', { name: 'Model import' });
  await page.waitForFunction(() => Number(document.querySelector('[role=progressbar]')?.getAttribute('aria-valuenow')) >= 20, null, { timeout: 60_000 });
  const during = (await bar.getAttribute('aria-valuetext')) ?? '';
  assert.match(during, /MB of 31\.\d MB · \d+ of 459 tensors · /);
  await env.screenshot(page, '12-import-progress');
  await page.click('button:has-text("Cancel import")');
  await page.locator('[role=alert]', { hasText: 'Import cancelled' }).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('[data-testid=model-card]').count(), 1, 'a cancelled import is not listed');

  await page.click('button:has-text("Import from URL")');
  await page.waitForFunction(() => /resumed/.test(document.querySelector('[role=progressbar]')?.getAttribute('aria-valuetext') ?? ''), null, { timeout: 60_000 });
  const card = page.locator('[data-testid=model-card]', { hasText: 'demo copy' });
  await card.waitFor({ timeout: 120_000 });
  assert.match((await card.textContent()) ?? '', /31\.\d MB in 9 files/);
});
