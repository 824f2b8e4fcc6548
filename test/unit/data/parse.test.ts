// Dataset parsing and labels: formats, malformed JSONL (with line numbers), label-shift detection and repair,
// train / eval split and SEQ windows, on small inputs.
import { describe, expect, it } from 'vitest';
import { errorOf } from '../../helpers/dataset-error.ts';
import {
  buildDataset, evalDocuments, labelConvention, labelStats, parseFiles, parseJsonl, unshiftLabels,
  type SourceFile, type TextTokenizer,
} from '../../../src/data/index.ts';
import { IGNORE, windowAt, windowCount, windowFrom } from '../../../src/engine/train/token-stream.ts';

const enc = new TextEncoder();
const file = (path: string, text: string): SourceFile => ({ path, bytes: enc.encode(text) });

/** A toy tokenizer: one id per character code (mod 1000) + 1, EOS = 0. */
const toy: TextTokenizer = {
  encode: (t) => [...t].map((c) => (c.codePointAt(0)! % 1000) + 1),
  eosId: 0,
  eosToken: '<eos>',
  vocabSize: 1001,
};

describe('JSONL', () => {
  it('reads {"text"} lines, skipping blank lines and CRLF endings', () => {
    const docs = parseJsonl('a.jsonl', '{"text": "ab", "source": "x", "license": "MIT"}\r\n\n{"text": "c"}\n');
    expect(docs).toEqual([{ kind: 'text', text: 'ab', file: 'a.jsonl' }, { kind: 'text', text: 'c', file: 'a.jsonl' }]);
  });

  it('names the line of invalid JSON', () => {
    const e = errorOf(() => parseJsonl('d.jsonl', '{"text": "a"}\n{"text": "b"}\n\n{"text": "c",}\n'));
    expect(e.message).toMatch(/^d\.jsonl line 4: not valid JSON/);
    expect(e.line).toBe(4);
  });

  it('names the line of a record of the wrong shape', () => {
    expect(errorOf(() => parseJsonl('d.jsonl', '{"text": "a"}\n[1,2]\n')).message).toBe('d.jsonl line 2: expected a JSON object, got an array');
    expect(errorOf(() => parseJsonl('d.jsonl', '{"txt": "a"}\n')).message).toMatch(/line 1: expected an object with "text"/);
    expect(errorOf(() => parseJsonl('d.jsonl', '{"text": 5}\n')).message).toMatch(/line 1: "text" must be a string/);
    expect(errorOf(() => parseJsonl('d.jsonl', '{"input_ids": [1, -2]}\n')).message).toMatch(/line 1: "input_ids" must be a list of non-negative/);
    expect(errorOf(() => parseJsonl('d.jsonl', '{"input_ids": [1, 2.5]}\n')).message).toMatch(/line 1/);
    expect(errorOf(() => parseJsonl('d.jsonl', '{"input_ids": []}\n')).message).toMatch(/line 1: "input_ids" is empty/);
    expect(errorOf(() => parseJsonl('d.jsonl', '{"input_ids": [1,2,3], "labels": [1]}\n')).message)
      .toMatch(/line 1: "labels" has 1 entries for 3 input_ids/);
    expect(errorOf(() => parseJsonl('d.jsonl', '{"input_ids": [1,2], "labels": [1, -5]}\n')).message).toMatch(/line 1: "labels" must be/);
  });

  it('refuses a file that mixes formats, naming both lines', () => {
    expect(errorOf(() => parseJsonl('m.jsonl', '{"text": "a"}\n{"input_ids": [1]}\n')).message)
      .toBe('m.jsonl line 2: this line has "input_ids" but line 1 has "text": one file, one format');
  });

  it('ignores a __proto__ key (JSON.parse makes it an own property)', () => {
    const docs = parseJsonl('p.jsonl', '{"__proto__": {"text": "x"}, "text": "ok"}\n');
    expect(docs).toEqual([{ kind: 'text', text: 'ok', file: 'p.jsonl' }]);
    expect(({} as Record<string, unknown>).text).toBeUndefined();
  });

  it('drops padding (attention_mask 0) from pre-tokenized records', () => {
    const [d] = parseJsonl('p.jsonl', '{"input_ids": [5,6,7,0,0], "labels": [5,6,7,-100,-100], "attention_mask": [1,1,1,0,0]}\n');
    expect(d).toMatchObject({ ids: [5, 6, 7], labels: [5, 6, 7] });
  });
});

describe('files and folders', () => {
  it('keeps only the chosen extensions and skips hidden, dependency, binary and non-UTF-8 files', () => {
    const files: SourceFile[] = [
      file('proj/b.js', 'let b'),
      file('proj/a.ts', 'let a'),
      file('proj/readme.md', '# hi'),
      file('proj/.git/config', 'x'),
      file('proj/node_modules/x/index.js', 'y'),
      { path: 'proj/img.js', bytes: new Uint8Array([1, 0, 2]) },
      { path: 'proj/latin1.js', bytes: new Uint8Array([0x63, 0xe9, 0x74]) },
    ];
    const p = parseFiles(files, ['js', '.TS']);
    expect(p.used).toEqual(['proj/a.ts', 'proj/b.js']);
    expect(p.docs.map((d) => d.kind === 'text' && d.text)).toEqual(['let a', 'let b']);
    expect(p.skipped.map((s) => s.why).sort()).toEqual([
      'binary', 'extension not included (.md)', 'hidden or dependency folder', 'hidden or dependency folder', 'not UTF-8 text',
    ]);
  });

  it('a single chosen file is always used, and a bad one is an error', () => {
    expect(parseFiles([file('notes.txt', 'hello')], ['js']).used).toEqual(['notes.txt']);
    expect(() => parseFiles([{ path: 'x.bin', bytes: new Uint8Array([0, 1]) }], [])).toThrow(/binary file/);
  });
});

describe('labels', () => {
  const ids = [10, 11, 12, 13, 14];

  it('recognises the Hugging Face convention, shifted labels and custom labels', () => {
    expect(labelConvention(labelStats([{ ids, labels: [...ids] }]))).toBe('hf');
    expect(labelConvention(labelStats([{ ids, labels: [IGNORE, IGNORE, 12, 13, 14] }]))).toBe('hf');
    expect(labelConvention(labelStats([{ ids, labels: [11, 12, 13, 14, IGNORE] }]))).toBe('shifted');
    expect(labelConvention(labelStats([{ ids, labels: [11, 12, 13, 14] }]))).toBe('shifted');
    expect(labelConvention(labelStats([{ ids, labels: [1, 2, 3, 4, 5] }]))).toBe('custom');
    expect(labelConvention(labelStats([{ ids, labels: null }]))).toBe('hf');
  });

  it('a run of one repeated token is not mistaken for shifted labels', () => {
    const same = [7, 7, 7, 7, 7];
    expect(labelConvention(labelStats([{ ids: same, labels: [...same] }]))).toBe('hf');
  });

  it('shifts labels back', () => {
    expect(unshiftLabels(ids, [11, 12, 13, 14, IGNORE])).toEqual([IGNORE, 11, 12, 13, 14]);
    expect(unshiftLabels(ids, [11, 12, 13, 14])).toEqual([IGNORE, 11, 12, 13, 14]);
    expect(unshiftLabels(ids, [IGNORE, 12, 13, 14, IGNORE])).toEqual([IGNORE, IGNORE, 12, 13, 14]);
  });

  it('a file written by the seed recipe (labels = input_ids[1:]) is detected, fixed and reported', async () => {
    const lines = [
      { input_ids: [1, 2, 3, 4], labels: [2, 3, 4, IGNORE] },
      { input_ids: [5, 6, 7], labels: [6, 7, IGNORE] },
    ].map((r) => JSON.stringify(r)).join('\n');
    const d = await buildDataset([file('pre.jsonl', lines)], null, { vocabSize: 100 });
    expect(d.format).toBe('jsonl-ids');
    expect(d.labelShiftFixed).toBe(true);
    expect(d.notes[0]).toMatch(/shifted by one.*shifted back to the Hugging Face convention/);
    expect([...d.all.ids]).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect([...d.all.labels!]).toEqual([IGNORE, 2, 3, 4, IGNORE, 6, 7]);
    expect(d.labeledTokens).toBe(5);
  });

  it('Hugging Face labels are kept as they are, no EOS is added to pre-tokenized records', async () => {
    const lines = [{ input_ids: [1, 2, 3], labels: [IGNORE, 2, 3] }, { input_ids: [4, 5] }].map((r) => JSON.stringify(r)).join('\n');
    const d = await buildDataset([file('pre.jsonl', lines)], null, { vocabSize: 100 });
    expect(d.labelShiftFixed).toBe(false);
    expect(d.notes).toEqual([]);
    expect([...d.all.ids]).toEqual([1, 2, 3, 4, 5]);
    expect([...d.all.labels!]).toEqual([IGNORE, 2, 3, 4, 5]);
    expect([...d.all.docStarts]).toEqual([0, 3]);
  });

  it('token ids outside the vocabulary are an error naming the line', async () => {
    await expect(buildDataset([file('pre.jsonl', '{"input_ids": [1]}\n{"input_ids": [1, 4096]}')], null, { vocabSize: 4096 }))
      .rejects.toThrow('pre.jsonl line 2: token id 4096 is outside the model\'s vocabulary (4096 ids)');
  });
});

describe('tokenized streams', () => {
  it('EOS after each text document', async () => {
    const d = await buildDataset([file('t.jsonl', '{"text": "ab"}\n{"text": "c"}')], toy);
    expect(d.format).toBe('jsonl-text');
    expect([...d.all.ids]).toEqual([98, 99, 0, 100, 0]);
    expect(d.all.labels).toBeNull();
    expect([...d.all.docStarts]).toEqual([0, 3]);
  });

  it('plain text files are one document each', async () => {
    const d = await buildDataset([file('src/a.js', 'a'), file('src/b.js', 'bb')], toy, { extensions: ['js'] });
    expect(d.format).toBe('text-files');
    expect([...d.all.ids]).toEqual([98, 0, 99, 99, 0]);
    expect(d.files).toEqual(['src/a.js', 'src/b.js']);
  });

  it('text without a tokenizer is an error', async () => {
    await expect(buildDataset([file('t.jsonl', '{"text": "ab"}')], null)).rejects.toThrow(/needs the model's tokenizer/);
  });

  it('the eval split is by document, seeded, never empty nor everything', async () => {
    expect(evalDocuments(10, 0, 1)).toEqual([]);
    expect(evalDocuments(1, 0.5, 1)).toEqual([]);
    expect(evalDocuments(10, 0.2, 1)).toHaveLength(2);
    expect(evalDocuments(10, 0.2, 1)).toEqual(evalDocuments(10, 0.2, 1));
    expect(evalDocuments(10, 0.01, 1)).toHaveLength(1);
    expect(evalDocuments(3, 0.99, 1)).toHaveLength(2);
    const text = Array.from({ length: 10 }, (_, i) => JSON.stringify({ text: String.fromCharCode(97 + i) })).join('\n');
    const d = await buildDataset([file('t.jsonl', text)], toy, { evalFraction: 0.3, seed: 5 });
    expect(d.eval!.docStarts.length).toBe(3);
    expect(d.train.docStarts.length).toBe(7);
    expect(d.train.ids.length + d.eval!.ids.length).toBe(d.all.ids.length);
  });

  it('SEQ windows: consecutive, the last one padded with ignored labels', () => {
    const stream = { ids: Int32Array.from([1, 2, 3, 4, 5]), labels: null, docStarts: Int32Array.from([0]) };
    expect(windowCount(stream, 2)).toBe(3);
    const w = windowAt(stream, 2, 2, 0);
    expect([...w.ids]).toEqual([5, 0]);
    expect([...w.labels]).toEqual([5, IGNORE]);
    expect(w.length).toBe(1);
    expect([...windowFrom(stream, 1, 3, 0).ids]).toEqual([2, 3, 4]);
    expect(() => windowFrom(stream, 5, 2, 0)).toThrow(RangeError);
  });
});
