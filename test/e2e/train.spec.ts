// Training in the browser, end to end, on the demo model (tiny: SEQ 16, one sequence per step, 4 steps, the top 2
// layers, one evaluation window, a checkpoint after every step, a reselection at step 3 — WebGPU runs on SwiftShader
// here): the loss chart grows; pause holds the steps; a reload mid-run with the network off (the app comes from the
// service worker, and the resumed step trains offline), a lost GPU device and a stop are each resumed from the last
// checkpoint, the step numbers going on; the run log, the sparse delta (v2) and the fine-tuned model — the delta merged
// onto the demo's original, through the folder API and through downloads — equal `usaf merge`'s output byte for byte.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Download, Page } from 'playwright-core';
import { gotoScreen, reloadOffline, test, waitForDemo } from './harness.ts';
import { BASE, checkMerged, equal, header } from './merged.ts';

/**
 * STEPS 4, MICROBATCH 1, SEQ 16, TRAIN_FROM 6, N_IMPORTANCE 1, EVAL_EVERY 1 (checkpoints too), a reselection before
 * step 3 (RESELECT_EVERY 3), and a peak LR high enough for a few steps to move bf16 weights.
 */
const PRESET = '#p=1.st:4,mb:1,sq:16,tf:6,ni:1,ee:1,re:3,lr:1e-2';
const STEP_MS = 240_000;

// ---------------------------------------------------------------------------------------------
// The page

const lossPoints = (page: Page) => page.locator('figure', { has: page.locator('.chart-title', { hasText: 'Training loss' }) }).locator('circle');

async function waitForPoints(page: Page, n: number): Promise<void> {
  await page.waitForFunction((want) => {
    const fig = [...document.querySelectorAll('figure')].find((f) => f.querySelector('.chart-title')?.textContent === 'Training loss');
    return (fig?.querySelectorAll('circle').length ?? 0) >= want;
  }, n, { timeout: STEP_MS });
}

const historyRow = (page: Page) => page.locator('[data-testid=run-history] tbody tr').first();
const stats = async (page: Page): Promise<string> => (await page.locator('[data-testid=run-stats]').textContent()) ?? '';
const control = (page: Page, name: string) => page.locator('.controls button', { hasText: name });

/** Clicks `button` and collects the downloads until the `last` one arrives; returns name → bytes. */
async function downloads(page: Page, button: string, last: (name: string) => boolean): Promise<Map<string, Uint8Array>> {
  const got: Download[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const on = (d: Download) => {
    got.push(d);
    if (last(d.suggestedFilename())) done();
  };
  page.on('download', on);
  await page.click(`button:has-text("${button}")`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`"${button}": got only ${got.map((d) => d.suggestedFilename()).join(', ') || 'nothing'}`)), STEP_MS);
  });
  await Promise.race([finished, late]).finally(() => clearTimeout(timer));
  page.off('download', on);
  const out = new Map<string, Uint8Array>();
  for (const d of got) out.set(d.suggestedFilename(), new Uint8Array(readFileSync((await d.path())!)));
  return out;
}

// ---------------------------------------------------------------------------------------------

test('training: the loss chart grows; pause; an offline reload, a lost GPU device and a stop resume from the last checkpoint; reselection; export', async (env) => {
  const { context, page } = await env.open();
  await page.goto(env.baseUrl + PRESET);
  await page.locator('[data-testid=preset-notice]', { hasText: 'Settings loaded from the link' }).waitFor();
  await gotoScreen(page, 'models');
  await waitForDemo(page);
  await gotoScreen(page, 'run');
  await page.fill('#run-eval-windows', '1');
  await page.click('button:has-text("Start training")');

  // Step 1: a point on the loss chart, then its checkpoint. Paused, no step follows; resumed, it goes on.
  await waitForPoints(page, 1);
  assert.match(await stats(page), /Step1 \/ 4/);
  // Elapsed, ETA, the GPU memory in use and the active fraction (FRAC of the trained layers) from the first step on.
  assert.match(await stats(page), /Elapsed\d.*ETA\d.*GPU memory[\d.]+ [KMG]B.*GPU peak[\d.]+ [KMG]B.*Active fraction0\.50 %/);
  await control(page, 'Pause').click();
  await page.locator('[data-testid=run-checkpoint]', { hasText: 'step 1' }).waitFor({ timeout: STEP_MS });
  await page.locator('[data-testid=run-status]', { hasText: /^paused$/ }).waitFor({ timeout: STEP_MS });
  await page.waitForTimeout(3000);
  assert.equal(await lossPoints(page).count(), 1);
  await env.screenshot(page, 'train-01-run-paused');
  await control(page, 'Resume').click();
  await page.locator('[data-testid=run-stats]', { hasText: 'Statusrunning' }).waitFor();

  // Reload mid-run (during step 2) with the network off: the app loads from the service worker, the run is interrupted;
  // resumed, it shows its history and goes on from step 2, offline.
  await page.locator('footer', { hasText: 'Ready to work offline' }).waitFor({ timeout: 60_000 });
  await reloadOffline(context, page);
  await page.locator('[role=status]', { hasText: 'You are offline' }).waitFor();
  // the app reopens Run on the interrupted run by itself (issue J): wait for it, or a click on Models can race it
  await page.locator('nav [data-screen=run][aria-current=page]').waitFor({ timeout: 30_000 });
  await page.locator('[data-testid=run-status]', { hasText: 'interrupted' }).waitFor({ timeout: 30_000 });
  await gotoScreen(page, 'models');
  await waitForDemo(page);
  await gotoScreen(page, 'run');
  await historyRow(page).filter({ hasText: 'interrupted' }).waitFor({ timeout: 30_000 });
  await historyRow(page).locator('button', { hasText: 'Resume' }).click();
  await waitForPoints(page, 1); // step 1, from the checkpoint's log
  await page.locator('[data-testid=run-checkpoint]', { hasText: 'step 1' }).waitFor();
  await waitForPoints(page, 2);
  assert.match(await stats(page), /Step2 \/ 4/);
  await page.locator('[data-testid=run-checkpoint]', { hasText: 'step 2' }).waitFor({ timeout: STEP_MS });
  await env.screenshot(page, 'train-02-offline-step2');
  await context.setOffline(false);

  // The GPU device is lost during step 3: said in words, resumable from step 2.
  const worker = page.workers().find((w) => /worker/.test(w.url()));
  assert.ok(worker, 'the engine worker');
  await worker.evaluate(() => (globalThis as unknown as { usafTest: { loseDevice(): Promise<void> } }).usafTest.loseDevice());
  const lostText = page.locator('[data-testid=run-live-error]', { hasText: 'can resume from step 2' });
  await lostText.waitFor({ timeout: 60_000 });
  assert.match((await lostText.textContent()) ?? '', /The GPU device was lost/);
  await historyRow(page).filter({ hasText: 'failed' }).waitFor({ timeout: 30_000 });
  await env.screenshot(page, 'train-02-device-lost');

  // Resumed on a new device: step 3, then Stop: the run ends after it, stopped, with its checkpoint at step 3.
  await historyRow(page).locator('button', { hasText: 'Resume' }).click();
  await waitForPoints(page, 3);
  // Step 3 began with a reselection: its turnover and the active fraction are shown.
  const reselections = page.locator('table', { has: page.locator('caption', { hasText: 'Reselections' }) }).locator('tbody tr');
  await reselections.first().waitFor();
  assert.match((await reselections.first().textContent()) ?? '', /^3\s*0\.5\d*\s*%\s*\d+(\.\d+)?\s*%$/);
  assert.doesNotMatch(await stats(page), /Last turnover–/);
  await control(page, 'Stop').click();
  await historyRow(page).filter({ hasText: 'stopped' }).waitFor({ timeout: STEP_MS });
  assert.match(await stats(page), /Last checkpointstep 3/);
  assert.match(await stats(page), /Statusstopped/);
  assert.match((await historyRow(page).textContent()) ?? '', /3 \/ 4/);

  // Resumed once more, it finishes.
  await historyRow(page).locator('button', { hasText: 'Resume' }).click();
  await waitForPoints(page, 4);
  await historyRow(page).filter({ hasText: 'done' }).waitFor({ timeout: STEP_MS });
  assert.equal(await lossPoints(page).count(), 4);
  assert.match(await stats(page), /Step4 \/ 4/);
  assert.match(await stats(page), /Last checkpointstep 4/);
  assert.match((await historyRow(page).textContent()) ?? '', /4 \/ 4/);
  await env.screenshot(page, 'train-03-run-done');

  // The run log holds each step and evaluation once: the resumed sessions went on from their checkpoints.
  await gotoScreen(page, 'export');
  const logs = await downloads(page, 'Download run log', (n) => n.endsWith('.log.jsonl'));
  const records = new TextDecoder().decode([...logs.values()][0]).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  assert.deepEqual(records.filter((r) => 'loss' in r).map((r) => r.step), [1, 2, 3, 4]);
  assert.deepEqual(records.filter((r) => 'eval_ppl' in r).map((r) => r.step), [0, 1, 2, 3, 4]);

  // The sparse delta alone, through the browser's storage and downloads (the path of browsers without the directory
  // picker): version 2, entries of the trained layers only, and the command that merges it onto the demo's original.
  await page.evaluate(() => { (window as unknown as { showDirectoryPicker?: unknown }).showDirectoryPicker = undefined; });
  const delta = await downloads(page, 'Export sparse delta', (n) => n === 'usaf-delta.json');
  const deltaFile = delta.get('usaf-delta.safetensors')!;
  const dh = header(deltaFile);
  assert.equal(dh.metadata.format, 'usaf-delta');
  assert.equal(dh.metadata.version, '2');
  const described = JSON.parse(dh.metadata.tensors!) as Record<string, { kind: 'sparse' | 'dense' }>;
  assert.ok(Object.keys(described).length > 0);
  assert.deepEqual(Object.keys(described).filter((n) => !/^model\.layers\.[67]\.mlp\./.test(n)), []);
  const info = JSON.parse(new TextDecoder().decode(delta.get('usaf-delta.json'))) as { step: number };
  assert.equal(info.step, 4);
  const command = await page.locator('[data-testid=merge-command]').inputValue();
  assert.equal(command, `usaf merge --base ${env.baseUrl}models/usaf-demo-moe/ --delta usaf-delta.safetensors --out usaf-demo-moe-finetuned`);

  // What `usaf merge` writes for the demo's original and this delta: the reference for both of the app's exports.
  const tmp = mkdtempSync(join(tmpdir(), 'usaf-e2e-merge-'));
  writeFileSync(join(tmp, 'usaf-delta.safetensors'), deltaFile);
  execFileSync(process.execPath, ['scripts/build-cli.mjs'], { stdio: 'inherit' });
  execFileSync(process.execPath, ['dist/cli/usaf.mjs', 'merge', '--base', BASE, '--delta', join(tmp, 'usaf-delta.safetensors'), '--out', join(tmp, 'out')], { stdio: 'inherit' });
  const cli = new Map(readdirSync(join(tmp, 'out')).map((f) => [f, new Uint8Array(readFileSync(join(tmp, 'out', f)))]));
  rmSync(tmp, { recursive: true, force: true });
  checkMerged(cli, deltaFile);

  // The fine-tuned model through the folder API (the test hands the app a folder of its private storage instead of the
  // picker, which a headless browser cannot show): the files it wrote equal usaf merge's, by SHA-256.
  await page.evaluate(() => {
    (window as unknown as { usafTestExportFolder: () => Promise<FileSystemDirectoryHandle> }).usafTestExportFolder = async () =>
      (await navigator.storage.getDirectory()).getDirectoryHandle('e2e-picked', { create: true });
  });
  await page.click('button:has-text("Export fine-tuned model")');
  await page.locator('[data-testid=export-result]', { hasText: 'written into the folder “e2e-picked”' }).waitFor({ timeout: STEP_MS });
  await env.screenshot(page, 'train-04-export');
  const picked = await page.evaluate(async () => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('e2e-picked');
    const out: Record<string, string> = {};
    for await (const [name, h] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemFileHandle]> }).entries()) {
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await (await h.getFile()).arrayBuffer()));
      out[name] = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
    }
    return out;
  });
  assert.deepEqual(Object.keys(picked).sort(), [...cli.keys()].sort(), 'the picked folder holds the merged model alone');
  for (const [name, bytes] of cli) assert.equal(picked[name], createHash('sha256').update(bytes).digest('hex'), `${name} (folder API) is usaf merge's`);

  // The same through the browser's storage and downloads: byte for byte usaf merge's.
  await page.evaluate(() => { delete (window as unknown as { usafTestExportFolder?: unknown }).usafTestExportFolder; });
  const hub = await downloads(page, 'Export fine-tuned model', (n) => n === 'model.safetensors.index.json');
  assert.deepEqual([...hub.keys()].sort(), [...cli.keys()].sort());
  for (const [name, bytes] of cli) assert.ok(equal(hub.get(name)!, bytes), `${name} (downloads) is usaf merge's`);
}, { timeoutMs: 600_000 });
