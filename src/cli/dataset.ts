// Node helpers for datasets: read a JSONL/text file, tokenize it with a model folder's tokenizer, cut windows.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { nodeFolder } from '../node/folder.ts';
import { tokenizeFiles, type BuiltDataset } from '../data/index.ts';
import { windowCount, type TokenStream } from '../engine/train/token-stream.ts';
import { windowSamples } from '../engine/train/samples.ts';

export async function tokenizeFile(modelDir: string, file: string, evalFraction = 0): Promise<BuiltDataset> {
  const bytes = new Uint8Array(await readFile(file));
  return tokenizeFiles(nodeFolder(modelDir), [{ path: basename(file), bytes }], { evalFraction });
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
