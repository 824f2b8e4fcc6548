// usaf generate: text from a model (Hub folder or stored 4-bit model, optionally with a run's delta overlaid), prefilled
// and decoded with a KV cache on the GPU (engine/generate). The text streams to stdout as it comes; the last line is
// one JSON object {tokens, text, stop, tok_s, prefill_tok_s}. Every flag is checked before the GPU is touched.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError, type Flags } from '../args.ts';
import { command, num } from '../command.ts';
import { readSpec } from '../load-model.ts';
import { checkSampleSettings, Generator, type SampleSettings } from '../../engine/generate/index.ts';
import { DELTA_FILE } from '../../engine/train/delta.ts';
import { loadTokenizer, type TextTokenizer } from '../../data/tokenizer.ts';
import { nodeFolder } from '../../node/folder.ts';
import { nodeGpu } from '../../node/gpu.ts';

export const GENERATE_FLAGS = {
  model: { type: 'string', help: 'model folder: Hub layout, or a stored 4-bit model made by usaf import' },
  delta: { type: 'string', help: 'a run\'s delta (usaf-delta.safetensors, version 2) overlaid on the model' },
  run: { type: 'string', help: 'a `usaf train --out` folder: its usaf-delta.safetensors overlaid on the model' },
  prompt: { type: 'string', help: 'prompt text (encoded with the model\'s tokenizer)' },
  'prompt-ids': { type: 'string', help: 'prompt token ids, separated by spaces or commas' },
  chat: { type: 'boolean', help: 'render --prompt as a user message with the tokenizer\'s chat template, the assistant\'s turn opened' },
  'max-new-tokens': { type: 'number', default: 64, help: 'most new tokens' },
  temperature: { type: 'number', default: 0, help: 'sampling temperature; 0: greedy' },
  'top-k': { type: 'number', default: 0, help: 'sample among the k most likely tokens; 0: all' },
  'top-p': { type: 'number', default: 1, help: 'sample among the most likely tokens reaching probability p; 1: all' },
  'repetition-penalty': { type: 'number', default: 1, help: 'penalty on tokens already in the prompt or output (> 1 discourages them); 1: off' },
  seed: { type: 'number', default: 0, help: 'random seed of the sampling' },
  stop: { type: 'string', help: 'stop once the new text contains this string' },
} as const;

export interface GeneratePlan {
  modelDir: string;
  deltaPath: string | null;
  promptIds: number[];
  sampling: SampleSettings;
  stopStrings: string[];
  tokenizer: TextTokenizer | null;
}

const exists = (p: string): Promise<boolean> => stat(p).then((s) => s.isFile(), () => false);

/** Everything the flags ask for, checked (UsageError naming the flag and why) without touching the GPU. */
export async function generatePlan(f: Flags): Promise<GeneratePlan> {
  const bad = (m: string): never => {
    throw new UsageError(`generate: ${m}`);
  };
  const modelDir = typeof f.model === 'string' && f.model ? f.model : bad('--model is required');
  if (!(await exists(join(modelDir, 'config.json')))) bad(`--model ${modelDir} has no config.json`);
  const spec = await readSpec(modelDir).catch((e: Error) => bad(`--model ${modelDir}: ${e.message}`));
  if (f.delta !== undefined && f.run !== undefined) bad('give --delta or --run, not both');
  let deltaPath: string | null = null;
  if (typeof f.delta === 'string') {
    deltaPath = f.delta;
    if (!(await exists(deltaPath))) bad(`--delta ${deltaPath}: no such file`);
  } else if (typeof f.run === 'string') {
    deltaPath = join(f.run, DELTA_FILE);
    if (!(await exists(deltaPath))) bad(`--run ${f.run} has no ${DELTA_FILE} (usaf train writes it at the end of a run, unless --no-export)`);
  }

  const sampling: SampleSettings = {
    maxNewTokens: num(f, 'max-new-tokens')!, temperature: num(f, 'temperature')!, topK: num(f, 'top-k')!, topP: num(f, 'top-p')!,
    repetitionPenalty: num(f, 'repetition-penalty')!, seed: num(f, 'seed')!,
  };
  const why = checkSampleSettings(sampling);
  if (why) bad(why);
  const stopStrings = typeof f.stop === 'string' ? [f.stop] : [];
  if (f.stop !== undefined && !f.stop) bad('--stop must not be empty');

  const hasText = typeof f.prompt === 'string';
  const hasIds = typeof f['prompt-ids'] === 'string';
  if (hasText === hasIds) bad('give exactly one of --prompt TEXT and --prompt-ids "1 2 3"');
  if (f.chat && !hasText) bad('--chat renders a --prompt text; it cannot take --prompt-ids');
  const tokenizer = (await exists(join(modelDir, 'tokenizer.json'))) ? await loadTokenizer(nodeFolder(modelDir)) : null;
  if (stopStrings.length && !tokenizer) bad(`--stop needs the model's tokenizer to read the text, and ${modelDir} has no tokenizer.json`);
  let promptIds: number[];
  if (hasText) {
    if (!f.prompt) bad('--prompt is empty');
    if (!tokenizer) bad(`--prompt needs the model's tokenizer, and ${modelDir} has no tokenizer.json: give --prompt-ids`);
    if (f.chat) {
      if (!tokenizer!.chatPrompt) bad(`--chat: the tokenizer of ${modelDir} has no chat template (chat_template in tokenizer_config.json): give the prompt as plain text`);
      promptIds = tokenizer!.chatPrompt!([{ role: 'user', content: f.prompt as string }]);
    } else promptIds = tokenizer!.encode(f.prompt as string);
  } else {
    const words = String(f['prompt-ids']).split(/[\s,]+/).filter(Boolean);
    if (!words.length) bad('--prompt-ids is empty');
    promptIds = words.map((w) => (/^\d+$/.test(w) && Number(w) < spec.vocab ? Number(w) : bad(`--prompt-ids: "${w}" is not a token id (a whole number below the vocabulary size ${spec.vocab})`)));
  }
  if (!promptIds.length) bad('the prompt encodes to no tokens');
  if (promptIds.length >= spec.maxPos) bad(`the prompt has ${promptIds.length} tokens; the model takes ${spec.maxPos} positions in all`);
  return { modelDir, deltaPath, promptIds, sampling, stopStrings, tokenizer };
}

export const generate = command(
  'generate',
  'generate text from a model (a run\'s delta overlaid with --delta or --run), streamed; a JSON line at the end',
  GENERATE_FLAGS,
  async (f) => {
    const p = await generatePlan(f);
    const decode = p.tokenizer?.decode;
    const gpu = await nodeGpu();
    const delta = p.deltaPath ? new Uint8Array(await readFile(p.deltaPath)) : null;
    const gen = await Generator.open(gpu, nodeFolder(p.modelDir), { delta, maxPositions: p.promptIds.length + p.sampling.maxNewTokens });
    try {
      const eosIds = [...new Set([...gen.eosIds, ...(p.tokenizer ? [p.tokenizer.eosId] : [])])];
      const tokens: number[] = [];
      let shown = '';
      const r = await gen.generate({
        ...p.sampling, promptIds: p.promptIds, eosIds, stopStrings: p.stopStrings, decode: decode ?? ((ids) => ids.join(' ')),
        onToken: (id) => {
          tokens.push(id);
          if (!decode) return;
          const text = decode(tokens);
          process.stdout.write(text.startsWith(shown) ? text.slice(shown.length) : `\n${text}`);
          shown = text;
        },
      });
      if (decode) process.stdout.write('\n');
      const round = (x: number) => +x.toFixed(2);
      console.log(JSON.stringify({ tokens: r.tokens, text: decode ? decode(r.tokens) : null, stop: r.stop, tok_s: round(r.tokS), prefill_tok_s: round(r.prefillTokS) }));
      return 0;
    } finally {
      gen.destroy();
    }
  },
);
