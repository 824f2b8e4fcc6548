// Contract: public surface of the dataset module: parse files, tokenize with the model's own tokenizer (instruction
// records rendered with its chat template, the answers scored), one token stream with EOS after each text document
// (src/engine/train/token-stream.ts), label-shift repair, train / eval split. Worker and Node alike.
import type { FileSet } from '../engine/io/folder.ts';
import { buildDataset, type BuildOptions, type BuiltDataset } from './build.ts';
import type { SourceFile } from './parse.ts';
import { loadTokenizer } from './tokenizer.ts';

export * from './parse.ts';
export * from './labels.ts';
export * from './chat.ts';
export { buildDataset, byRecord, evalDocuments, type BuildOptions, type BuiltDataset, type DatasetFormat, type SamplePreview } from './build.ts';
export { loadTokenizer, type ChatMessage, type ChatTemplate, type TextTokenizer } from './tokenizer.ts';

/**
 * Tokenizes `files` with the tokenizer of the model in `modelFolder` (for the CLI's `tokenize --count`): the number of
 * tokens, EOS after each document included — 100,912 for the demo's finetune.jsonl, 131,690 for heldout.jsonl.
 */
export async function tokenizeFiles(modelFolder: FileSet, files: readonly SourceFile[], opts: BuildOptions = {}): Promise<BuiltDataset> {
  const hasTokenizer = await modelFolder.open('tokenizer.json');
  await hasTokenizer?.close?.();
  const tok = hasTokenizer ? await loadTokenizer(modelFolder) : null;
  return buildDataset(files, tok, opts);
}
