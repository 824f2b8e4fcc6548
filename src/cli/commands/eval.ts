// usaf eval: mean next-token loss and PPL of a model over consecutive SEQ-token windows of a dataset (EOS after each document).
import { command, str, num } from '../command.ts';
import { nodeGpu } from '../../node/gpu.ts';
import { openModel, QUANT_FLAGS, quantOption } from '../load-model.ts';
import { tokenizeFile, windowCount } from '../dataset.ts';
import { evalWindows } from '../eval-windows.ts';

export const evalCmd = command(
  'eval',
  'loss and perplexity of a model on a dataset (consecutive SEQ-token windows)',
  {
    model: { type: 'string', help: 'model folder' },
    data: { type: 'string', help: 'JSONL {"text"} / {"input_ids","labels"} or a text file' },
    seq: { type: 'number', default: 512, env: 'SEQ', help: 'window length in tokens' },
    batch: { type: 'number', default: 2, help: 'windows per forward pass' },
    'max-windows': { type: 'number', help: 'evaluate only the first N windows' },
    ...QUANT_FLAGS,
  },
  async (f) => {
    const modelDir = str(f, 'model');
    const seq = num(f, 'seq')!;
    const batch = num(f, 'batch')!;
    const ds = await tokenizeFile(modelDir, str(f, 'data'));
    const total = windowCount(ds.all, seq);
    const windows = Math.min(total, num(f, 'max-windows') ?? total);
    const gpu = await nodeGpu();
    const model = await openModel(gpu, modelDir, { quantizeExperts: quantOption(f) });
    const r = await evalWindows(gpu, model.spec, model.weights, ds.all, { seq, batch, windows });
    console.log(JSON.stringify({ model: modelDir, data: str(f, 'data'), seq, windows, windows_total: total, tokens_total: ds.all.ids.length, tokens_scored: r.tokens, loss: r.loss, ppl: Math.exp(r.loss), sec: r.sec }));
    return 0;
  },
);
