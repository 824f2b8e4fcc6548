// usaf generate's flags: every bad combination or value is refused with words before the GPU is touched (nodeGpu throws
// here if called), exit code 2 (UsageError); good flags give the prompt ids and sampling settings asked for.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { parseArgs, UsageError } from '../../../src/cli/args.ts';
import { generate, GENERATE_FLAGS, generatePlan } from '../../../src/cli/commands/generate.ts';

vi.mock('../../../src/node/gpu.ts', () => ({ nodeGpu: () => { throw new Error('the GPU was touched'); } }));

const DEMO = 'public/models/usaf-demo-moe'; // a tokenizer, no chat template
const FIX = 'test/fixtures/qwen3_moe'; // no tokenizer, vocab 512

async function refusal(argv: string[]): Promise<string> {
  const e = await generate.run(argv).then(() => null, (err: unknown) => err as Error);
  if (!e) return 'no error';
  if (/the GPU was touched/.test(e.message)) return 'GPU';
  expect(e).toBeInstanceOf(UsageError);
  return e.message;
}

describe('usaf generate flags', () => {
  it.each([
    [[], /--model is required/],
    [['--model', 'no/such/dir', '--prompt-ids', '1'], /no config\.json/],
    [['--model', FIX], /exactly one of --prompt TEXT and --prompt-ids/],
    [['--model', DEMO, '--prompt', 'a', '--prompt-ids', '1'], /exactly one of/],
    [['--model', FIX, '--prompt-ids', '1 x 2'], /"x" is not a token id/],
    [['--model', FIX, '--prompt-ids', '1 512'], /"512" is not a token id .*512/],
    [['--model', FIX, '--prompt-ids', ' , '], /--prompt-ids is empty/],
    [['--model', FIX, '--prompt', 'hello'], /no tokenizer\.json: give --prompt-ids/],
    [['--model', FIX, '--prompt-ids', '1', '--chat'], /--chat renders a --prompt text/],
    [['--model', DEMO, '--prompt', 'hi', '--chat'], /no chat template/],
    [['--model', DEMO, '--prompt', ''], /--prompt is empty/],
    [['--model', FIX, '--prompt-ids', '1', '--stop', 'x'], /--stop needs the model's tokenizer/],
    [['--model', FIX, '--prompt-ids', '1', '--delta', 'no/such/file'], /--delta no\/such\/file: no such file/],
    [['--model', FIX, '--prompt-ids', '1', '--run', 'no/such/run'], /has no usaf-delta\.safetensors/],
    [['--model', FIX, '--prompt-ids', '1', '--run', 'x', '--delta', 'y'], /not both/],
    [['--model', FIX, '--prompt-ids', '1', '--max-new-tokens', '0'], /max new tokens/],
    [['--model', FIX, '--prompt-ids', '1', '--temperature', '-0.5'], /temperature/],
    [['--model', FIX, '--prompt-ids', '1', '--top-p', '1.5'], /top-p/],
    [['--model', FIX, '--prompt-ids', '1', '--top-k', '2.5'], /top-k/],
    [['--model', FIX, '--prompt-ids', '1', '--repetition-penalty', '0'], /repetition penalty/],
    [['--model', FIX, '--prompt-ids', '1', '--top-q', '1'], /unknown flag --top-q/],
  ] as [string[], RegExp][])('%j is refused before the GPU', async (argv, want) => {
    expect(await refusal(argv)).toMatch(want);
  });

  it('a prompt longer than the model\'s positions is refused', async () => {
    const ids = Array.from({ length: 256 }, () => '1').join(' ');
    expect(await refusal(['--model', FIX, '--prompt-ids', ids])).toMatch(/256 tokens; the model takes 256 positions/);
  });

  it('good flags reach the GPU with the ids and settings asked for', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usaf-gen-'));
    await writeFile(join(dir, 'usaf-delta.safetensors'), 'x'); // read only after the GPU
    expect(await refusal(['--model', FIX, '--prompt-ids', '3,4 5', '--run', dir])).toBe('GPU');
    const f = parseArgs(['--model', DEMO, '--prompt', 'def f(x):', '--temperature', '0.7', '--top-k', '5', '--top-p', '0.9', '--seed', '3', '--stop', '\n\n', '--repetition-penalty', '1.1', '--max-new-tokens', '9'], GENERATE_FLAGS).flags;
    const p = await generatePlan(f);
    expect(p.promptIds).toEqual(p.tokenizer!.encode('def f(x):'));
    expect(p.promptIds.length).toBeGreaterThan(0);
    expect(p.sampling).toEqual({ maxNewTokens: 9, temperature: 0.7, topK: 5, topP: 0.9, repetitionPenalty: 1.1, seed: 3 });
    expect(p.stopStrings).toEqual(['\n\n']);
    expect(p.deltaPath).toBeNull();
    const g = await generatePlan(parseArgs(['--model', FIX, '--prompt-ids', '3,4 5', '--run', dir], GENERATE_FLAGS).flags);
    expect(g.promptIds).toEqual([3, 4, 5]);
    expect(g.deltaPath).toBe(join(dir, 'usaf-delta.safetensors'));
    expect(g.sampling).toEqual({ maxNewTokens: 64, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 });
  });
});
