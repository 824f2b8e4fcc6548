// The Quick demo preset run to the end on this adapter (SwiftShader here: a CPU fallback), its wall time printed and
// held to "a few minutes" (at most 6 here); the estimate shown before Start (a short probe on this adapter) within 2× of
// the measured time, both ways, for the whole run from Start to "done" and for a step. The time of each part of the run
// (set-up phases, steps, evaluations, checkpoint) is printed, as the Run screen's set-up panel showed it.
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

  // what the set-up panel and the step counter show, with the time each appeared
  await page.evaluate(() => {
    const seen: { t: number; phase: string | null; step: string | null }[] = [];
    (window as unknown as { quickSeen: typeof seen }).quickSeen = seen;
    const note = () => {
      const r = {
        t: performance.now(),
        phase: document.querySelector('[data-testid=run-phase]')?.textContent?.trim() ?? null,
        step: document.querySelector('[data-testid=run-stats] .v')?.textContent ?? null,
      };
      const prev = seen.at(-1);
      if (!prev || prev.phase !== r.phase || prev.step !== r.step) seen.push(r);
    };
    new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
  const tp0 = await page.evaluate(() => performance.now());
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
  // seconds in each part: the set-up panel's phase (without its progress), or the steps while it is hidden
  const seenRun = await page.evaluate(() => (window as unknown as { quickSeen: { t: number; phase: string | null; step: string | null }[] }).quickSeen);
  const parts: [string, number][] = [];
  seenRun.forEach((r, i) => {
    const name = r.phase ? r.phase.replace(/:.*$/, '') : r.step === '–' ? 'before the first step' : 'steps';
    const sec = ((seenRun[i + 1]?.t ?? tp0 + measured * 1000) - r.t) / 1000;
    if (parts.at(-1)?.[0] === name) parts.at(-1)![1] += sec;
    else parts.push([name, sec]);
  });
  console.log(`    parts: ${parts.map(([n, sec]) => `${n} ${sec.toFixed(1)} s`).join('; ')}`);
  await env.screenshot(page, 'quick-demo-done');
  assert.equal(steps.length, 12);
  assert.ok(medianStep <= 2 * estimatedStep && medianStep >= estimatedStep / 2, `a step: measured ${medianStep} s, estimated ${estimatedStep} s`);
  assert.ok(measured <= 2 * estimated && measured >= estimated / 2, `the whole run: measured ${measured} s, estimated ${estimated} s`);
  assert.ok(measured * 1000 <= LIMIT_MS, `the Quick demo took ${measured} s`);
}, { timeoutMs: 1_500_000 });
