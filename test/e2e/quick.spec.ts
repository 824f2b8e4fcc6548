// The Quick demo preset run to the end on this adapter (SwiftShader here: a CPU fallback), its wall time printed and
// held to "a few minutes" (at most 6 here); its time per step within 2× of the estimate shown before Start. The whole
// run's time against the estimate is printed, not asserted: on this machine the estimate of the set-up and the
// evaluations is still 1.5–2.2× short (issue J: open).
import assert from 'node:assert/strict';
import { gotoScreen, test, waitForDemo } from './harness.ts';

const LIMIT_MS = 6 * 60_000;

test('quick demo: the whole run in a few minutes on a CPU adapter, its steps near their estimate', async (env) => {
  const { page } = await env.open();
  await page.goto(env.baseUrl);
  await gotoScreen(page, 'models');
  await waitForDemo(page);
  await gotoScreen(page, 'preset');
  await page.click('section .row button:text-is("Quick demo")');
  await page.locator('[data-testid=preset-notice]', { hasText: 'Preset "Quick demo" loaded' }).waitFor();
  await gotoScreen(page, 'run');
  const time = page.locator('[data-testid=run-estimate]', { hasText: '12 steps' }).locator('[data-testid=run-estimate-time]');
  await time.waitFor({ timeout: 120_000 });
  const estimated = Number(await time.getAttribute('data-seconds'));
  const estimatedStep = Number(await time.getAttribute('data-step-seconds'));
  const shown = (await page.locator('[data-testid=run-estimate]').textContent()) ?? '';

  const t0 = Date.now();
  await page.click('button:has-text("Start training")');
  // the run's row (the only one: a fresh browser profile) until it says done
  await page.locator('[data-testid=run-history] tbody tr').first().filter({ hasText: 'done' }).waitFor({ timeout: LIMIT_MS + 300_000 });
  const measured = (Date.now() - t0) / 1000;
  // every step's time from the throughput chart (tokens/s of a step of 128 tokens; the log panel shows only its last lines)
  const tokS = await page.evaluate(() => {
    const fig = [...document.querySelectorAll('figure')].find((f) => f.querySelector('.chart-title')?.textContent === 'Throughput (tokens/s)');
    return [...(fig?.querySelectorAll('circle') ?? [])].map((c) => Number(c.getAttribute('data-y')));
  });
  const steps = tokS.map((t) => 128 / t).sort((a, b) => a - b);
  const medianStep = steps[Math.floor(steps.length / 2)]!;
  console.log(`    Quick demo: ${steps.length} steps, the whole run ${measured.toFixed(0)} s (estimated ${estimated.toFixed(0)} s); a step: median ${medianStep.toFixed(2)} s (estimated ${estimatedStep.toFixed(2)} s)`);
  console.log(`    estimate as shown: ${shown.replace(/\s+/g, ' ').trim()}`);
  await env.screenshot(page, 'quick-demo-done');
  assert.equal(steps.length, 12);
  assert.ok(measured * 1000 <= LIMIT_MS, `the Quick demo took ${measured} s`);
  assert.ok(medianStep <= 2 * estimatedStep && medianStep >= estimatedStep / 2, `a step: measured ${medianStep} s, estimated ${estimatedStep} s`);
}, { timeoutMs: 1_500_000 });
