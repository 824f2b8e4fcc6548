// usaf tokenize: tokenizes a dataset with a model's tokenizer (EOS after each document); --count prints the token count.
import { command, str } from '../command.ts';
import { tokenizeFile } from '../dataset.ts';

export const tokenize = command(
  'tokenize',
  'tokenize a dataset with the model\'s tokenizer (EOS after each document)',
  {
    model: { type: 'string', help: 'model folder with tokenizer.json' },
    input: { type: 'string', help: 'JSONL {"text"} / {"input_ids","labels"} or a text file' },
    count: { type: 'boolean', help: 'print only the number of tokens' },
  },
  async (f) => {
    const ds = await tokenizeFile(str(f, 'model'), str(f, 'input'));
    if (f.count) console.log(ds.all.ids.length);
    else console.log(JSON.stringify({ format: ds.format, documents: ds.documents, tokens: ds.all.ids.length, labeled_tokens: ds.labeledTokens, label_shift_fixed: ds.labelShiftFixed, notes: ds.notes }));
    return 0;
  },
);
