// The demo model's own tokenizer (through @huggingface/transformers, local files only) on the demo data: the counts
// the README states (EOS after each document), and a file of the seed recipe's shifted labels.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildDataset, loadTokenizer, tokenizeFiles, type SourceFile } from '../../../src/data/index.ts';
import { nodeFolder } from '../../../src/node/folder.ts';

const MODEL = 'public/models/usaf-demo-moe';
const data = (name: string): SourceFile => ({ path: name, bytes: readFileSync(`public/data/${name}`) });

describe('demo tokenizer', () => {
  it('loads from the model folder with EOS <|endoftext|> = 0', async () => {
    const tok = await loadTokenizer(nodeFolder(MODEL));
    expect(tok.eosId).toBe(0);
    expect(tok.eosToken).toBe('<|endoftext|>');
    expect(tok.vocabSize).toBe(4096);
    const ids = tok.encode('const x = 1;');
    expect(ids.length).toBeGreaterThan(2);
    expect(ids.every((i) => i > 0 && i < 4096)).toBe(true);
  });

  it('finetune.jsonl is 100,912 tokens and heldout.jsonl 131,690', async () => {
    const folder = nodeFolder(MODEL);
    const ft = await tokenizeFiles(folder, [data('finetune.jsonl')]);
    const ho = await tokenizeFiles(folder, [data('heldout.jsonl')]);
    expect(ft.all.ids.length).toBe(100_912);
    expect(ho.all.ids.length).toBe(131_690);
    expect(ft.format).toBe('jsonl-text');
    // One EOS (0) closes every document.
    const starts = [...ft.all.docStarts];
    for (let d = 1; d < starts.length; d++) expect(ft.all.ids[starts[d]! - 1]).toBe(0);
    expect(ft.all.ids[ft.all.ids.length - 1]).toBe(0);
  });

  it('the seed recipe\'s pre-tokenized file (labels shifted by one) counts the same and is repaired', async () => {
    const tok = await loadTokenizer(nodeFolder(MODEL));
    const texts = readFileSync('public/data/finetune.jsonl', 'utf8').split('\n').filter(Boolean).slice(0, 5)
      .map((l) => (JSON.parse(l) as { text: string }).text);
    const lines = texts.map((t) => {
      const ids = [...tok.encode(t), tok.eosId];
      return JSON.stringify({ input_ids: ids, labels: [...ids.slice(1), -100] });
    });
    const d = await buildDataset([{ path: 'seed.jsonl', bytes: new TextEncoder().encode(lines.join('\n')) }], tok);
    expect(d.labelShiftFixed).toBe(true);
    const fromText = await buildDataset([{ path: 't.jsonl', bytes: new TextEncoder().encode(texts.map((t) => JSON.stringify({ text: t })).join('\n')) }], tok);
    expect([...d.all.ids]).toEqual([...fromText.all.ids]);
    // After the repair the labels are the input ids (first of each record ignored).
    const l = d.all.labels!;
    const firsts = new Set(d.all.docStarts);
    for (let i = 0; i < l.length; i++) expect(l[i]).toBe(firsts.has(i) ? -100 : d.all.ids[i]);
  });
});
