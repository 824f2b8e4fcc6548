// The Try screen on the demo (WebGPU on SwiftShader): the prefilled code prompt continued greedily, streamed into the
// page; its prompt ids are the demo tokenizer's (transformers in Node, outside the app), its new ids the engine's own
// generation for those ids (generateInWorker called directly in the worker) and its text their decoding; the same prompt
// and seed twice give the same tokens, greedy and sampled; Stop ends a long generation early; after a one-step run, the
// run answers beside the base model with the engine's tokens for that run.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { Page } from 'playwright-core';
import { gotoScreen, test, waitForDemo } from './harness.ts';

/** One step of SEQ 16 on the last layer, one evaluation window: a run with a checkpoint, cheaply. */
const PRESET = '#p=1.st:1,mb:1,sq:16,tf:7,ni:1,ee:1,lr:1e-2';
const MODEL = 'usaf-demo-moe';
const SLOW_MS = 240_000;

// ---------------------------------------------------------------------------------------------
// The reference: the demo's tokenizer through @huggingface/transformers in Node, and the engine in the worker

/** `prompt` tokenized, and each list of `decode` decoded, by the demo's own tokenizer files (a Node child process). */
function demoTokenizer(prompt: string, decode: number[][]): { ids: number[]; texts: string[] } {
  const script = `
    import { AutoTokenizer, env } from '@huggingface/transformers';
    env.allowRemoteModels = false;
    env.localModelPath = process.cwd() + '/public/models/';
    const tok = await AutoTokenizer.from_pretrained('${MODEL}');
    const { prompt, decode } = JSON.parse(process.argv[1]);
    console.log(JSON.stringify({ ids: tok.encode(prompt, { add_special_tokens: false }), texts: decode.map((d) => tok.decode(d)) }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify({ prompt, decode })], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1)!) as { ids: number[]; texts: string[] };
}

interface Sampling { maxNewTokens: number; temperature: number; topK: number; topP: number; repetitionPenalty: number; seed: number }
interface Generated { tokens: number[]; text: string; stop: string }

/** The engine's generation for these ids, in the app's worker, bypassing the screen (the worker's test aid). */
async function engine(page: Page, runId: string | null, promptIds: number[], sampling: Sampling): Promise<Generated> {
  const worker = page.workers().find((w) => /worker/.test(w.url()));
  assert.ok(worker, 'the engine worker');
  return worker.evaluate(
    (req) => (globalThis as unknown as { usafTest: { generate(r: object): Promise<Generated> } }).usafTest.generate(req),
    { modelId: MODEL, runId, promptIds, sampling: { ...sampling, stopStrings: [] } },
  );
}

// ---------------------------------------------------------------------------------------------
// The page

const side = (page: Page, key: 'base' | 'run') => page.locator(`[data-testid=try-side-${key}]`);

async function setSampling(page: Page, s: Partial<Sampling>): Promise<void> {
  for (const [k, v] of Object.entries(s)) await page.fill(`#try-${k}`, String(v));
}

/** Clicks Generate and waits until each side named has ended; returns what each shows. */
async function generate(page: Page, keys: ('base' | 'run')[]): Promise<Record<string, { tokens: number[]; streamed: number; text: string; stats: string }>> {
  await page.click('button:has-text("Generate")');
  const out: Record<string, { tokens: number[]; streamed: number; text: string; stats: string }> = {};
  for (const k of keys) {
    const stats = side(page, k).locator('[data-testid=try-stats]', { hasText: 'ended:' });
    await stats.waitFor({ timeout: SLOW_MS });
    const tok = side(page, k).locator('[data-testid=try-tokens]');
    const text = (await tok.textContent())!.trim();
    out[k] = {
      tokens: text ? text.split(' ').map(Number) : [],
      streamed: Number(await tok.getAttribute('data-streamed')),
      text: (await side(page, k).locator('[data-testid=try-output]').textContent()) ?? '',
      stats: (await stats.textContent()) ?? '',
    };
  }
  await page.locator('button:has-text("Generate"):enabled').waitFor();
  return out;
}

// ---------------------------------------------------------------------------------------------

test('try: the demo continues a code prompt (greedy and sampled) as the engine does, streamed; Stop; a run beside the base model', async (env) => {
  const { page, errors } = await env.open();
  page.setDefaultTimeout(SLOW_MS); // a busy machine: clicks and fills wait for the page longer than the default 30 s
  await page.goto(env.baseUrl + PRESET, { timeout: SLOW_MS });
  await page.locator('[data-testid=preset-notice]', { hasText: 'Settings loaded from the link' }).waitFor({ timeout: SLOW_MS });
  await gotoScreen(page, 'models');
  // The demo's first import can take minutes on a busy machine (SwiftShader shares the CPU cores).
  await page.locator('[data-model-id="usaf-demo-moe"] [data-testid=model-status]', { hasText: 'ready' }).waitFor({ timeout: 600_000 });
  await waitForDemo(page);
  await gotoScreen(page, 'try');

  // Out of the box: the demo model, no run yet, a code-completion prompt, labelled controls, the completion view
  // (the demo's tokenizer has no chat template).
  assert.equal(await page.inputValue('#try-model'), MODEL);
  assert.match((await page.locator('#try-run-help').textContent()) ?? '', /No run of this model has a checkpoint yet/);
  const prompt = await page.inputValue('#try-prompt');
  assert.match(prompt, /require\('\.\/compare'\)\nconst gte = \(a, b, loose\) =>$/);
  for (const label of ['Model', 'Fine-tuned run (beside the base model)', 'Max new tokens', 'Temperature', 'Top-k', 'Top-p', 'Repetition penalty', 'Seed']) {
    assert.equal(await page.getByLabel(label, { exact: true }).count(), 1, `one control labelled "${label}"`);
  }
  assert.equal(await page.locator('#try-message').count(), 0, 'no chat view without a chat template');
  assert.equal(await side(page, 'run').count(), 0, 'no run side without a run');

  // Greedy: the engine's tokens for the tokenizer's prompt ids, every one streamed, and their text.
  const greedy: Sampling = { maxNewTokens: 6, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 };
  await setSampling(page, greedy);
  const a = (await generate(page, ['base'])).base!;
  const { ids } = demoTokenizer(prompt, []);
  assert.match(a.stats, new RegExp(`^\\s*${a.tokens.length} new tokens after ${ids.length} of prompt, [\\d.,]+ tokens/s\\s+\\(prompt [\\d.,]+ tokens/s\\); ended: (max new tokens|end-of-sequence token)\\.\\s*$`));
  const ref = await engine(page, null, ids, greedy);
  assert.ok(ref.tokens.length >= 1 && ref.tokens.length <= 6);
  assert.deepEqual(a.tokens, ref.tokens, 'the page shows the engine’s greedy tokens for the prompt');
  assert.equal(a.streamed, a.tokens.length, 'every token came through the stream');
  const { texts: [decoded] } = demoTokenizer(prompt, [a.tokens]);
  assert.equal(a.text, decoded);
  assert.equal(a.text, ref.text);
  assert.equal(await side(page, 'base').locator('pre').textContent(), prompt + a.text);
  await env.screenshot(page, 'try-01-greedy');

  // The same prompt again: the same tokens.
  assert.deepEqual((await generate(page, ['base'])).base!.tokens, a.tokens);

  // Sampled (temperature 1, top-k 40, top-p 0.95, penalty 1.1, seed 7): twice the same, the engine's for that seed.
  const sampled: Sampling = { maxNewTokens: 6, temperature: 1, topK: 40, topP: 0.95, repetitionPenalty: 1.1, seed: 7 };
  await setSampling(page, sampled);
  const s1 = (await generate(page, ['base'])).base!;
  const s2 = (await generate(page, ['base'])).base!;
  assert.deepEqual(s2.tokens, s1.tokens);
  assert.deepEqual(s1.tokens, (await engine(page, null, ids, sampled)).tokens);

  // A setting out of range is refused with the engine's rule, nothing generated.
  await setSampling(page, { topP: 1.5 });
  await page.click('button:has-text("Generate")');
  await side(page, 'base').locator('[data-testid=try-side-error]', { hasText: /top-p must be in \(0, 1\]/ }).waitFor({ timeout: 60_000 });
  await setSampling(page, { topP: 'x' as unknown as number });
  assert.equal(await page.locator('#try-topP').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('button:has-text("Generate")').isDisabled(), true);

  // Stop: a long generation ends early, with the tokens so far.
  await setSampling(page, { ...greedy, maxNewTokens: 400 });
  await page.click('button:has-text("Generate")');
  await side(page, 'base').locator('[data-testid=try-stats]', { hasText: /Generating… [1-9]/ }).waitFor({ timeout: SLOW_MS });
  await page.click('button:has-text("Stop")');
  const stopped = side(page, 'base').locator('[data-testid=try-stats]', { hasText: 'ended: stopped' });
  await stopped.waitFor({ timeout: SLOW_MS });
  const n = Number(/^\s*(\d+) new tokens/.exec((await stopped.textContent()) ?? '')?.[1]);
  assert.ok(n >= 1 && n < 400, `stopped after ${n} tokens`);
  await env.screenshot(page, 'try-02-stopped');

  // A one-step run, then the run beside the base model: the same prompt and seed, the engine's tokens for the run.
  await gotoScreen(page, 'run');
  await page.fill('#run-eval-windows', '1');
  await page.click('button:has-text("Start training")');
  await page.locator('[data-testid=run-history] tbody tr').first().filter({ hasText: 'done' }).waitFor({ timeout: SLOW_MS });
  await gotoScreen(page, 'try');
  const runOption = page.locator('#try-run option', { hasText: 'done, step 1' });
  await runOption.waitFor({ state: 'attached', timeout: 30_000 });
  const runId = await runOption.getAttribute('value');
  assert.equal(await page.inputValue('#try-run'), runId, 'the run is chosen');
  await setSampling(page, greedy);
  const both = await generate(page, ['base', 'run']);
  assert.deepEqual(both.base!.tokens, a.tokens);
  const refRun = await engine(page, runId, ids, greedy);
  assert.deepEqual(both.run!.tokens, refRun.tokens, 'the run side shows the engine’s tokens for the run');
  assert.equal(both.run!.streamed, both.run!.tokens.length);
  assert.equal(both.run!.text, refRun.text);
  assert.match(both.run!.stats, new RegExp(`after ${ids.length} of prompt`));
  assert.match((await side(page, 'run').locator('h3').textContent()) ?? '', /^Run \S/);
  await env.screenshot(page, 'try-03-base-and-run');
  assert.deepEqual(errors, []);
}, { timeoutMs: 1_500_000 });
