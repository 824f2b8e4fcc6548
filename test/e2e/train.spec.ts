// Training in the browser, end to end, on the demo model (tiny: SEQ 16, one sequence per step, 4 steps, the top 2
// layers, one evaluation window, a checkpoint after every step, a reselection at step 3 — WebGPU runs on SwiftShader
// here): the loss chart grows; pause holds the steps; a reload mid-run with the network off (the app comes from the
// service worker, and the resumed step trains offline), a lost GPU device and a stop are each resumed from the last
// checkpoint, the step numbers going on; the fine-tuned model (Hub layout), its sparse delta and the run log are
// downloaded and checked byte for byte.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Download, Page } from 'playwright-core';
import { gotoScreen, reloadOffline, test, waitForDemo } from './harness.ts';

const BASE = 'public/models/usaf-demo-moe';
/**
 * STEPS 4, MICROBATCH 1, SEQ 16, TRAIN_FROM 6, N_IMPORTANCE 1, EVAL_EVERY 1 (checkpoints too), a reselection before
 * step 3 (RESELECT_EVERY 3), and a peak LR high enough for a few steps to move bf16 weights.
 */
const PRESET = '#p=1.st:4,mb:1,sq:16,tf:6,ni:1,ee:1,re:3,lr:1e-2';
const STEP_MS = 240_000;

// ---------------------------------------------------------------------------------------------
// safetensors

interface Header {
  size: number;
  dataStart: number;
  tensors: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  metadata: Record<string, string>;
}

function header(bytes: Uint8Array): Header {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  assert.ok(n > 0 && 8 + n <= bytes.byteLength, `header length ${n} does not fit the ${bytes.byteLength}-byte file`);
  const json = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  const { __metadata__: metadata = {}, ...tensors } = json;
  return { size: n, dataStart: 8 + n, tensors: tensors as Header['tensors'], metadata: metadata as Record<string, string> };
}

function tensorBytes(file: Uint8Array, h: Header, name: string): Uint8Array {
  const t = h.tensors[name];
  assert.ok(t, `no tensor ${name}`);
  return file.subarray(h.dataStart + t.data_offsets[0], h.dataStart + t.data_offsets[1]);
}

/** A tensor's bytes in the base demo model (sharded, as the Hub stores it). */
function baseTensor(name: string): Uint8Array {
  const index = JSON.parse(readFileSync(`${BASE}/model.safetensors.index.json`, 'utf8')) as { weight_map: Record<string, string> };
  const file = new Uint8Array(readFileSync(`${BASE}/${index.weight_map[name]}`));
  return tensorBytes(file, header(file), name);
}

const equal = (a: Uint8Array, b: Uint8Array): boolean => a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);

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
  assert.match(await stats(page), /Elapsed\d.*ETA\d.*GPU memory[\d.]+ [KMG]B.*Active fraction0\.50 %/);
  await control(page, 'Pause').click();
  await page.locator('[data-testid=run-checkpoint]', { hasText: 'step 1' }).waitFor({ timeout: STEP_MS });
  assert.match(await stats(page), /Statuspaused/);
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

  // The fine-tuned model in Hub layout: config and tokenizer as in the base, shards whose headers match the index. The
  // demo model is stored with 4-bit experts, so every expert tensor is the dequantized 4-bit base (trained entries over
  // it in layers 6-7): within 4-bit rounding of the bf16 original. Every other tensor is the base's byte for byte, except
  // the trained routers of layers 6-7.
  const hub = await downloads(page, 'Download fine-tuned model', (n) => n === 'model.safetensors.index.json');
  await env.screenshot(page, 'train-04-export');
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    assert.ok(equal(hub.get(f)!, new Uint8Array(readFileSync(`${BASE}/${f}`))), `${f} is the base model's`);
  }
  const index = JSON.parse(new TextDecoder().decode(hub.get('model.safetensors.index.json'))) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  const baseIndex = JSON.parse(readFileSync(`${BASE}/model.safetensors.index.json`, 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  assert.deepEqual(Object.keys(index.weight_map).sort(), Object.keys(baseIndex.weight_map).sort());
  assert.equal(index.metadata.total_size, baseIndex.metadata.total_size);
  const changed: string[] = [];
  let dataBytes = 0;
  let errSq = 0;
  let refSq = 0;
  const bf16 = (b: Uint8Array) => { const u = new Uint16Array(b.slice().buffer); return Float32Array.from(u, (x) => new Float32Array(new Uint32Array([x << 16]).buffer)[0]!); };
  for (const shard of new Set(Object.values(index.weight_map))) {
    const file = hub.get(shard);
    assert.ok(file, `shard ${shard} was downloaded (got ${[...hub.keys()].join(', ')})`);
    const h = header(file);
    assert.equal(h.metadata.format, 'pt');
    const names = Object.keys(h.tensors);
    assert.deepEqual(names.sort(), Object.keys(index.weight_map).filter((n) => index.weight_map[n] === shard).sort());
    const end = Math.max(...names.map((n) => h.tensors[n]!.data_offsets[1]));
    assert.equal(file.byteLength, h.dataStart + end, `${shard}: header and size agree`);
    for (const n of names) {
      const t = h.tensors[n]!;
      assert.equal(t.dtype, 'BF16', n);
      assert.equal(t.data_offsets[1] - t.data_offsets[0], t.shape.reduce((a, b) => a * b, 1) * 2, n);
      dataBytes += t.data_offsets[1] - t.data_offsets[0];
      if (/\.experts\.\d+\.(gate|up|down)_proj\.weight$/.test(n)) {
        const got = bf16(tensorBytes(file, h, n));
        const want = bf16(baseTensor(n));
        for (let i = 0; i < want.length; i++) { errSq += (got[i]! - want[i]!) ** 2; refSq += want[i]! ** 2; }
      } else if (!equal(tensorBytes(file, h, n), baseTensor(n))) changed.push(n);
    }
  }
  assert.equal(dataBytes, index.metadata.total_size);
  const relErr = Math.sqrt(errSq / refSq);
  assert.ok(relErr > 0.02 && relErr < 0.15, `experts: relative error ${relErr} to the bf16 originals (4-bit HQQ: ~0.1)`);
  assert.ok(changed.length > 0, 'training changed some router');
  assert.deepEqual(changed.filter((n) => !/^model\.layers\.[67]\.mlp\.gate\.weight$/.test(n)), [],
    'besides the experts, only the routers of the trained layers changed');

  // The sparse delta: safetensors with the usaf-delta description, entries of the trained layers only.
  const delta = await downloads(page, 'Download sparse delta', (n) => n === 'usaf-delta.json');
  const dh = header(delta.get('usaf-delta.safetensors')!);
  assert.equal(dh.metadata.format, 'usaf-delta');
  const described = JSON.parse(dh.metadata.tensors!) as Record<string, unknown>;
  assert.ok(Object.keys(described).length > 0);
  assert.deepEqual(Object.keys(described).filter((n) => !/^model\.layers\.[67]\.mlp\./.test(n)), []);
  const info = JSON.parse(new TextDecoder().decode(delta.get('usaf-delta.json'))) as { step: number };
  assert.equal(info.step, 4);
}, { timeoutMs: 600_000 });
