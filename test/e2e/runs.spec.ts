// Runs a person can follow (issue J), on the demo model at toy size (SEQ 16, one sequence per step, 3 steps, the top 2
// layers, one evaluation window per set, an evaluation and a checkpoint after every step; SwiftShader here): the set-up
// phases with their progress and the step-0 perplexity plotted at the logged value; Pause says what it finishes until it
// has paused; a reload mid-run reopens the interrupted run with its charts and "Resume from step N", the resumed clock
// going on from the stored elapsed time without the resume's set-up; "PPL after" only once finished; a second run
// overlaid on the first; a rename that survives a reload, a past run opened with its charts after it; runs in the
// Storage listing with their sizes, and a deleted run's folder gone. The resumed step's tokens/s within 2× of step 1's;
// the time per step estimated before Start within 2× of the measured one.
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { gotoScreen, test, waitForDemo } from './harness.ts';

const PRESET = '#p=1.st:3,mb:1,sq:16,tf:6,ni:1,ee:1,lr:1e-2';
const STEP_MS = 240_000;

/** The points a chart draws for one series: x, y as the page holds them (data-x, data-y). */
async function points(page: Page, chart: string, series: string): Promise<{ x: number; y: number }[]> {
  return page.evaluate(([chart, series]) => {
    const fig = [...document.querySelectorAll('figure')].find((f) => f.querySelector('.chart-title')?.textContent === chart);
    return [...(fig?.querySelectorAll('circle') ?? [])].filter((c) => c.getAttribute('data-series') === series)
      .map((c) => ({ x: Number(c.getAttribute('data-x')), y: Number(c.getAttribute('data-y')) }));
  }, [chart, series] as const);
}

async function waitForLossPoints(page: Page, series: string, n: number): Promise<void> {
  await page.waitForFunction(([series, want]) => {
    const fig = [...document.querySelectorAll('figure')].find((f) => f.querySelector('.chart-title')?.textContent === 'Training loss');
    return [...(fig?.querySelectorAll('circle') ?? [])].filter((c) => c.getAttribute('data-series') === series).length >= (want as number);
  }, [series, n] as const, { timeout: STEP_MS });
}

/** The run's log records as the page shows them (the Log panel's JSON lines). */
async function logRecords(page: Page): Promise<Record<string, number>[]> {
  const text = (await page.locator('pre.log').textContent()) ?? '';
  return text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, number>);
}

/** A file under the site's private storage (OPFS), as text; null when it (or a folder on the way) is not there. */
async function opfsText(page: Page, path: string): Promise<string | null> {
  return page.evaluate(async (path) => {
    const parts = path.split('/');
    let dir = await navigator.storage.getDirectory();
    try {
      for (const p of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(p);
      return await (await (await dir.getFileHandle(parts.at(-1)!)).getFile()).text();
    } catch {
      return null;
    }
  }, path);
}

async function opfsHasDir(page: Page, path: string): Promise<boolean> {
  return page.evaluate(async (path) => {
    let dir = await navigator.storage.getDirectory();
    try {
      for (const p of path.split('/')) dir = await dir.getDirectoryHandle(p);
      return true;
    } catch {
      return false;
    }
  }, path);
}

/** Records every text the set-up panel and the status show, with the checkpoint shown at that moment. */
async function watchRun(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: { phase: string | null; status: string | null; checkpoint: string | null; lossEmpty: string | null }[] = [];
    (window as unknown as { runSeen: typeof seen }).runSeen = seen;
    const note = () => {
      const fig = [...document.querySelectorAll('figure')].find((f) => f.querySelector('.chart-title')?.textContent === 'Training loss');
      const r = {
        phase: document.querySelector('[data-testid=run-phase]')?.textContent?.trim() ?? null,
        status: document.querySelector('[data-testid=run-status]')?.textContent ?? null,
        checkpoint: document.querySelector('[data-testid=run-checkpoint]')?.textContent ?? null,
        lossEmpty: fig?.querySelector('text.empty')?.textContent ?? null,
      };
      const prev = seen.at(-1);
      if (!prev || prev.phase !== r.phase || prev.status !== r.status || prev.checkpoint !== r.checkpoint) seen.push(r);
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    note();
  });
}

const seen = (page: Page) => page.evaluate(() => (window as unknown as { runSeen: { phase: string | null; status: string | null; checkpoint: string | null; lossEmpty: string | null }[] }).runSeen);
const row = (page: Page, id: string) => page.locator(`[data-testid=run-history] tbody tr[data-run-id="${id}"]`);
const status = (page: Page) => page.locator('[data-testid=run-status]');

test('runs: set-up progress, step-0 PPL plotted, pause, reload reopens the run, resume clock, compare, rename, delete, storage', async (env) => {
  const { page } = await env.open();
  await page.goto(env.baseUrl + PRESET);
  await page.locator('[data-testid=preset-notice]', { hasText: 'Settings loaded from the link' }).waitFor();
  await gotoScreen(page, 'models');
  await waitForDemo(page);
  await gotoScreen(page, 'run');
  await page.fill('#run-eval-windows', '1');
  // The estimate shown before Start (the probe on this adapter): its time per step, compared with the measured steps below.
  const estimate = page.locator('[data-testid=run-estimate]', { hasText: '3 steps' }).locator('[data-testid=run-estimate-time]');
  await estimate.waitFor({ timeout: 120_000 });
  assert.match((await page.locator('[data-testid=run-estimate]').textContent()) ?? '', /^Estimated run time: about .*\(an estimate: .*about [\d.]+ s a step/s);
  const estimatedStep = Number(await estimate.getAttribute('data-step-seconds'));
  assert.ok(estimatedStep > 0);
  await watchRun(page);
  await page.click('button:has-text("Start training")');

  // The set-up before step 1: each phase named with its progress, the status "setting up", the loss chart saying so.
  await waitForLossPoints(page, 'loss', 1);
  // Pause at once (step 1 is followed by its evaluation and checkpoint): checked below.
  await page.locator('.controls button', { hasText: 'Pause' }).click();
  const setup = await seen(page);
  const phases = setup.map((s) => s.phase).filter((p): p is string => !!p);
  assert.ok(phases.includes('Loading the model onto the GPU'), phases.join(' | '));
  assert.ok(phases.some((p) => /^Evaluating before training: window [12] of 2$/.test(p)), phases.join(' | '));
  assert.ok(phases.some((p) => /^Importance pass \(picks the weights to train\): microbatch [01] of 1$/.test(p)), phases.join(' | '));
  assert.ok(setup.some((s) => s.status === 'setting up' && s.lossEmpty === 'The first step follows the set-up shown above.'));
  const runId = (await page.locator('[data-testid=run-history] tbody tr').first().getAttribute('data-run-id'))!;
  assert.match(runId, /^run-/);

  // The step-0 perplexity is on the chart at the value the log holds.
  const step0 = (await logRecords(page)).find((r) => 'eval_ppl' in r && r.step === 0)!;
  assert.ok(step0, 'the step-0 evaluation is logged');
  const inDomain = await points(page, 'Perplexity', 'in-domain');
  assert.deepEqual(inDomain[0], { x: 0, y: step0.eval_ppl });
  assert.deepEqual((await points(page, 'Perplexity', 'held-out'))[0], { x: 0, y: step0.heldout_ppl });

  // Paused right after step 1: "pausing — finishing …" until the evaluation and checkpoint of step 1 are done; then
  // "paused", and no step follows.
  await status(page).filter({ hasText: /^paused$/ }).waitFor({ timeout: STEP_MS });
  const pausing = await seen(page);
  const firstPaused = pausing.findIndex((s) => s.status === 'paused');
  assert.ok(pausing.slice(0, firstPaused).some((s) => /^pausing — finishing the (evaluation|checkpoint|step)$/.test(s.status ?? '')), pausing.map((s) => s.status).join(' | '));
  assert.equal(pausing[firstPaused]!.checkpoint, 'step 1', 'paused only once the checkpoint of step 1 is written');
  await page.waitForTimeout(2000);
  assert.equal((await points(page, 'Training loss', 'loss')).length, 1);
  const step1 = (await logRecords(page)).find((r) => 'loss' in r && r.step === 1)!;
  await env.screenshot(page, 'runs-01-paused');

  // Resumed, then the page reloaded during step 2: it opens on the Run screen with the interrupted run, its charts
  // from the stored log, "Resume from step 1", and no "PPL after" (the run has not finished).
  await page.locator('.controls button', { hasText: 'Resume' }).first().click();
  await status(page).filter({ hasText: /^running$/ }).waitFor();
  await page.reload();
  await page.locator('nav [data-screen=run][aria-current=page]').waitFor({ timeout: 120_000 });
  await page.locator('[data-testid=run-viewed]', { hasText: 'interrupted' }).waitFor({ timeout: 60_000 });
  const resumeFrom = page.locator('[data-testid=resume-from]');
  assert.equal(await resumeFrom.textContent(), 'Resume from step 1');
  const reopened = await points(page, 'Training loss', 'loss');
  assert.deepEqual(reopened[0], { x: 1, y: step1.loss });
  assert.deepEqual((await points(page, 'Perplexity', 'in-domain'))[0], { x: 0, y: step0.eval_ppl });
  assert.equal(await row(page, runId).locator('[data-testid=run-ppl-after]').textContent(), '–');
  const record = JSON.parse((await opfsText(page, `runs/${runId}/run.json`))!) as { checkpointStep: number; checkpointElapsedMs: number; pplAfter: unknown };
  assert.equal(record.checkpointStep, 1);
  assert.ok(record.checkpointElapsedMs > 0);
  await env.screenshot(page, 'runs-02-reopened');

  // Resumed from step 1: the clock goes on from the stored elapsed time, the resume's set-up (loading, restoring) not
  // counted; step 2's tokens/s is its own.
  await watchRun(page);
  await resumeFrom.click();
  await page.waitForFunction(() => {
    const fig = [...document.querySelectorAll('figure')].find((f) => f.querySelector('.chart-title')?.textContent === 'Training loss');
    return [...(fig?.querySelectorAll('circle') ?? [])].some((c) => c.getAttribute('data-x') === '2');
  }, null, { timeout: STEP_MS });
  const resumedPhases = (await seen(page)).map((s) => s.phase).filter(Boolean);
  assert.ok(resumedPhases.includes('Restoring the checkpoint of step 1'), resumedPhases.join(' | '));
  // the step's kernels are compiled before the first resumed step (not counted in its time)
  assert.ok(resumedPhases.indexOf('Preparing the GPU kernels (so that the first resumed step is timed on its own)') > resumedPhases.indexOf('Restoring the checkpoint of step 1'), resumedPhases.join(' | '));
  const elapsed = Number(await page.locator('[data-testid=run-elapsed]').getAttribute('data-ms'));
  const step2 = (await logRecords(page)).find((r) => 'loss' in r && r.step === 2)!;
  assert.ok(elapsed >= record.checkpointElapsedMs, `elapsed ${elapsed} ms ≥ the stored ${record.checkpointElapsedMs} ms`);
  assert.ok(elapsed - record.checkpointElapsedMs <= step2.sec * 1000 + 500,
    `the resumed session counted ${elapsed - record.checkpointElapsedMs} ms for a step of ${step2.sec * 1000} ms`);
  // The resumed step's tokens/s is its own: that the 'warming' phase compiles every kernel of a normal step is checked
  // by counting pipelines (test/gpu/train.test.ts); times are only printed here.
  console.log(`    tokens/s: step 1 ${step1.tok_s}, resumed step 2 ${step2.tok_s}`);

  // It finishes: "PPL after" now filled with the last evaluation.
  await row(page, runId).filter({ hasText: 'done' }).waitFor({ timeout: STEP_MS });
  const last = (await logRecords(page)).filter((r) => 'eval_ppl' in r).at(-1)!;
  assert.equal(last.step, 3);
  assert.match((await row(page, runId).locator('[data-testid=run-ppl-after]').textContent()) ?? '', /^\d[\d.,]* \/ \d[\d.,]*$/);
  const firstLoss = await points(page, 'Training loss', 'loss');
  assert.deepEqual(firstLoss.map((p) => p.x), [1, 2, 3]);
  // The estimate before Start against the measured steps (their median time): within a factor of 2 either way.
  const step3 = (await logRecords(page)).find((r) => 'loss' in r && r.step === 3)!;
  const measuredStep = [step1.sec, step2.sec, step3.sec].sort((a, b) => a - b)[1]!;
  console.log(`    time per step: estimated ${estimatedStep.toFixed(2)} s before Start, measured ${[step1.sec, step2.sec, step3.sec].map((x) => x.toFixed(2)).join(', ')} s`);
  assert.ok(measuredStep <= 2 * estimatedStep && measuredStep >= estimatedStep / 2, `measured ${measuredStep} s a step, estimated ${estimatedStep} s`);

  // Renamed; a second run, stopped after its first step; the first overlaid on it.
  await row(page, runId).locator('button', { hasText: 'Rename' }).click();
  await page.fill(`#rename-${runId}`, 'baseline');
  await row(page, runId).locator('button', { hasText: 'Save' }).click();
  await row(page, runId).locator('[data-testid=run-name]', { hasText: 'baseline' }).waitFor();
  await page.click('button:has-text("Start training")');
  await waitForLossPoints(page, 'loss', 1);
  await page.locator('.controls button', { hasText: 'Stop' }).click();
  const second = (await page.locator('[data-testid=run-history] tbody tr').first().getAttribute('data-run-id'))!;
  assert.notEqual(second, runId);
  await row(page, second).filter({ hasText: 'stopped' }).waitFor({ timeout: STEP_MS });
  await page.selectOption('#run-compare', runId);
  await waitForLossPoints(page, 'baseline', 3);
  assert.deepEqual(await points(page, 'Training loss', 'baseline'), firstLoss);
  assert.equal((await points(page, 'Training loss', second)).length, 1);
  assert.equal((await points(page, 'Perplexity', 'in-domain (baseline)')).length, 4);
  await env.screenshot(page, 'runs-03-compare');

  // After a reload the name stays, and the first run opens with its charts.
  await page.reload();
  await gotoScreen(page, 'models');
  await waitForDemo(page);
  await gotoScreen(page, 'run');
  await row(page, runId).locator('[data-testid=run-name]', { hasText: 'baseline' }).waitFor({ timeout: 30_000 });
  await row(page, runId).locator('button', { hasText: 'Open' }).click();
  await page.locator('[data-testid=run-viewed]', { hasText: 'baseline' }).waitFor();
  assert.deepEqual(await points(page, 'Training loss', 'loss'), firstLoss);

  // Storage lists both runs with their sizes; the second deleted (after the confirmation), its folder is gone.
  await gotoScreen(page, 'models');
  await page.locator('[data-testid=storage] button', { hasText: 'Refresh' }).click();
  const listed = page.locator(`[data-testid=storage-runs] tr[data-run-id="${second}"]`);
  await listed.waitFor();
  assert.match((await page.locator(`[data-testid=storage-runs] tr[data-run-id="${runId}"]`).textContent()) ?? '', /^baseline[\d.]+ (B|KiB|MiB|GiB|KB|MB|GB)$/);
  assert.ok(await opfsHasDir(page, `runs/${second}`));
  await gotoScreen(page, 'run');
  page.once('dialog', (d) => void d.accept());
  await row(page, second).locator('button', { hasText: 'Delete' }).click();
  await row(page, second).waitFor({ state: 'detached' });
  assert.equal(await opfsHasDir(page, `runs/${second}`), false);
  await gotoScreen(page, 'models');
  await listed.waitFor({ state: 'detached' });
  assert.equal(await page.locator(`[data-testid=storage-runs] tr[data-run-id="${runId}"]`).count(), 1);
}, { timeoutMs: 900_000 });
