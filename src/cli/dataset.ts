// Node helpers for datasets: read a JSONL/text file, tokenize it with a model folder's tokenizer, cut windows.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { nodeFolder } from '../node/folder.ts';
import { tokenizeFiles, windowAt, windowCount, IGNORE, type BuiltDataset, type TokenStream } from '../data/index.ts';
import { IGNORE as GPU_IGNORE } from '../engine/train/forward.ts';

export async function tokenizeFile(modelDir: string, file: string, evalFraction = 0): Promise<BuiltDataset> {
  const bytes = new Uint8Array(await readFile(file));
  return tokenizeFiles(nodeFolder(modelDir), [{ path: basename(file), bytes }], { evalFraction });
}

/** ids + next-token targets for windows [first, first+count) of `seq` tokens (labels shifted; padding ignored). */
export function windowBatch(stream: TokenStream, first: number, count: number, seq: number, padId: number): { ids: Uint32Array; targets: Uint32Array } {
  const ids = new Uint32Array(count * seq);
  const targets = new Uint32Array(count * seq).fill(GPU_IGNORE);
  for (let b = 0; b < count; b++) {
    const w = windowAt(stream, first + b, seq, padId);
    for (let i = 0; i < seq; i++) {
      ids[b * seq + i] = w.ids[i]!;
      const next = i + 1 < seq ? w.labels[i + 1]! : IGNORE;
      if (next !== IGNORE) targets[b * seq + i] = next;
    }
  }
  return { ids, targets };
}

export { windowCount };
