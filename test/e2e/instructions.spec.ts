// Instruction data in the Datasets screen, on two small models made of the qwen3_moe fixture's weights (the demo's
// import is skipped: it takes minutes on SwiftShader): one with the demo model's tokenizer, which has no chat template
// (a clear refusal naming the model), and one with a Qwen3-style chat template (test/data-fixtures/qwen3_chat_tokenizer),
// which takes an Alpaca .json list and a messages JSONL, each previewed with the scored tokens apart and counted; bad
// files are refused naming the line or record; the Try screen's chat view answers a message on the templated model.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { gotoScreen, test } from './harness.ts';

const FIX = 'test/data-fixtures/instructions';

/** A model folder: the qwen3_moe fixture's weights and the tokenizer files of `tokenizer`. */
function modelFolder(name: string, tokenizer: string): string {
  const dir = `test-results/e2e/inputs/${name}`;
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(join('test/fixtures/qwen3_moe', f), join(dir, f));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokenizer, f), join(dir, f));
  return dir;
}

test('instruction data: Alpaca .json and messages JSONL previewed with the scored tokens apart; no template and bad files refused', async (env) => {
  const plain = modelFolder('plain-model', 'public/models/usaf-demo-moe');
  const withTemplate = modelFolder('chat-model', 'test/data-fixtures/qwen3_chat_tokenizer');
  const { page } = await env.open();
  await page.addInitScript(() => localStorage.setItem('usaf.demoRemoved', '1'));
  await page.goto(env.baseUrl);
  await page.waitForFunction(() => document.querySelector('nav') && !document.body.textContent?.includes('Starting the engine'), null, { timeout: 120_000 });

  // the demo model's tokenizer has no chat template
  await page.setInputFiles('#model-folder', plain);
  await page.locator('[data-testid=model-card][data-model-id^="plain-model-"]').waitFor({ timeout: 300_000 });
  await gotoScreen(page, 'datasets');
  const err = page.locator('[data-testid=dataset-error]');
  await page.setInputFiles('#dataset-files', join(FIX, 'alpaca.json'));
  await err.waitFor({ timeout: 120_000 });
  assert.match((await err.textContent()) ?? '',
    /^alpaca\.json: Alpaca records \(instruction\/input\/output\) must be rendered with the model's chat template, and plain-model has none \(no "chat_template" in its tokenizer_config\.json, no chat_template\.jinja\)/);

  await gotoScreen(page, 'models');
  await page.setInputFiles('#model-folder', withTemplate);
  await page.locator('[data-testid=model-card][data-model-id^="chat-model-"]').waitFor({ timeout: 300_000 });
  await gotoScreen(page, 'datasets');
  await page.locator('#datasets-h ~ p strong', { hasText: 'chat-model' }).waitFor();

  const previews = page.locator('[data-testid=dataset-preview]');
  await page.setInputFiles('#dataset-files', join(FIX, 'alpaca.json'));
  const alpacaRow = page.locator('[data-testid=dataset-row]', { hasText: 'alpaca.json' });
  await alpacaRow.waitFor({ timeout: 120_000 });
  const alpaca = previews.filter({ hasText: 'alpaca.json' });
  await alpaca.waitFor();
  const tokens = (await alpacaRow.locator('[data-testid=dataset-tokens]').textContent())!;
  const count = (await alpaca.locator('[data-testid=scored-count]').textContent())!;
  const m = /^(\d+) scored of ([\d,]+) tokens$/.exec(count);
  assert.ok(m, count);
  assert.equal(m[2], tokens);
  assert.ok(Number(m[1]) > 0 && Number(m[1]) < Number(tokens.replace(/,/g, '')) / 2, count);
  assert.deepEqual(await alpaca.locator('[data-testid=preview-scored]').allTextContents(), ['function add(a, b) {\n  return a + b;\n}<|im_end|>']);
  assert.deepEqual(await alpaca.locator('[data-testid=preview-unscored]').allTextContents(),
    ['<|im_start|>user\nWrite a function that adds two numbers.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n', '\n']);
  assert.equal(await alpacaRow.locator('td[data-label=Format]').textContent(), 'chat');

  await page.setInputFiles('#dataset-files', join(FIX, 'messages.jsonl'));
  const chat = previews.filter({ hasText: 'messages.jsonl' });
  await chat.waitFor({ timeout: 120_000 });
  assert.deepEqual(await chat.locator('[data-testid=preview-scored]').allTextContents(), ['const add = (a, b) => a + b;<|im_end|>']);
  assert.match((await chat.locator('[data-testid=preview-unscored]').first().textContent()) ?? '', /^<\|im_start\|>system\nYou write short JavaScript\.<\|im_end\|>/);
  assert.match((await chat.locator('[data-testid=scored-count]').textContent()) ?? '', /^\d+ scored of [\d,]+ tokens$/);

  for (const [name, message] of [
    ['bad-no-role.jsonl', 'bad-no-role.jsonl line 2: message 2 has no "role"'],
    ['bad-alpaca.json', 'bad-alpaca.json record 2: "output" is missing'],
  ]) {
    await page.setInputFiles('#dataset-files', join(FIX, name!));
    await page.locator('[data-testid=dataset-error]', { hasText: message! }).waitFor({ timeout: 120_000 });
  }
  assert.equal(await previews.count(), 2);

  // The Try screen's chat view on the model with a chat template: a message is answered with the engine's tokens for the
  // conversation as the chat template renders it (ids from transformers in Node, outside the app; the new ids from the
  // engine's generation called in the worker), the conversation shows both turns.
  const chatId = (await page.locator('[data-testid=model-card][data-model-id^="chat-model-"]').count())
    ? await page.locator('[data-testid=model-card][data-model-id^="chat-model-"]').getAttribute('data-model-id')
    : null;
  await gotoScreen(page, 'try');
  const modelId = chatId ?? (await page.locator('#try-model option', { hasText: 'chat-model' }).getAttribute('value'))!;
  await page.selectOption('#try-model', modelId);
  const message = page.locator('#try-message');
  await message.waitFor({ timeout: 120_000 });
  const sampling = { maxNewTokens: 4, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 };
  for (const [k, v] of Object.entries(sampling)) await page.fill(`#try-${k}`, String(v));
  await message.fill('Add two numbers.');
  await page.click('button:has-text("Send")');
  const base = page.locator('[data-testid=try-side-base]');
  await base.locator('[data-testid=try-stats]', { hasText: 'ended:' }).waitFor({ timeout: 300_000 });
  const promptIds = chatPromptIds(withTemplate, [{ role: 'user', content: 'Add two numbers.' }]);
  const worker = page.workers().find((w) => /worker/.test(w.url()))!;
  const want = await worker.evaluate(
    (req) => (globalThis as unknown as { usafTest: { generate(r: object): Promise<{ tokens: number[]; text: string }> } }).usafTest.generate(req),
    { modelId, runId: null, promptIds, sampling: { ...sampling, stopStrings: [] } },
  );
  const shown = ((await base.locator('[data-testid=try-tokens]').textContent()) ?? '').trim();
  assert.deepEqual(shown ? shown.split(' ').map(Number) : [], want.tokens);
  assert.match((await base.locator('[data-testid=try-stats]').textContent()) ?? '', new RegExp(`after ${promptIds.length} of prompt`));
  assert.deepEqual(await base.locator('.msg .role').allTextContents(), ['user', 'assistant']);
  assert.equal(await base.locator('.msg.assistant .content').textContent(), want.text);
}, { timeoutMs: 1_200_000 });

/** The conversation rendered by `dir`'s chat template and tokenized, the assistant's turn opened (transformers in Node). */
function chatPromptIds(dir: string, messages: { role: string; content: string }[]): number[] {
  const script = `
    import { AutoTokenizer, env } from '@huggingface/transformers';
    env.allowRemoteModels = false;
    env.localModelPath = process.argv[1];
    const tok = await AutoTokenizer.from_pretrained(process.argv[2]);
    const ids = tok.apply_chat_template(JSON.parse(process.argv[3]), { tokenize: true, add_generation_prompt: true, return_tensor: false, return_dict: false });
    console.log(JSON.stringify(ids));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script, resolve(dir, '..') + '/', basename(dir), JSON.stringify(messages)], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1)!) as number[];
}
