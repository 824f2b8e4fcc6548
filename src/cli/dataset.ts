// Node helpers for datasets: read a JSONL/text file, tokenize it with a model folder's tokenizer, cut windows.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { nodeFolder } from '../node/folder.ts';
import { buildDataset, loadTokenizer, tokenizeFiles, type BuiltDataset } from '../data/index.ts';
import { windowCount, type TokenStream } from '../engine/train/token-stream.ts';
import { windowSamples } from '../engine/train/samples.ts';

export async function tokenizeFile(modelDir: string, file: string, evalFraction = 0): Promise<BuiltDataset> {
  const bytes = new Uint8Array(await readFile(file));
  return tokenizeFiles(nodeFolder(modelDir), [{ path: basename(file), bytes }], { evalFraction });
}

/**
 * A dataset file for `usaf train`, tokenized with the model's tokenizer when it has one; token ids (pre-tokenized records
 * included) checked against `vocabSize` (config.json's) whether or not a tokenizer is there. Also the tokenizer's EOS.
 */
export async function readDataset(modelDir: string, file: string, o: { evalFraction?: number; vocabSize: number }): Promise<BuiltDataset & { eosId: number | null }> {
  const bytes = new Uint8Array(await readFile(file));
  const folder = nodeFolder(modelDir);
  const has = await folder.open('tokenizer.json');
  await has?.close?.();
  const tok = has ? await loadTokenizer(folder) : null;
  const ds = await buildDataset([{ path: basename(file), bytes }], tok, { evalFraction: o.evalFraction ?? 0, vocabSize: o.vocabSize });
  return { ...ds, eosId: tok?.eosId ?? null };
}

/** ids + next-token targets for windows [first, first+count) of `seq` tokens (labels shifted; padding ignored). */
export function windowBatch(stream: TokenStream, first: number, count: number, seq: number, padId: number): { ids: Uint32Array; targets: Uint32Array } {
  const set = windowSamples(stream, seq, padId);
  const ids = new Uint32Array(count * seq);
  const targets = new Uint32Array(count * seq);
  for (let b = 0; b < count; b++) set.fill(first + b, ids, targets, b * seq);
  return { ids, targets };
}

export { windowCount };
