// usaf eval: mean next-token loss and PPL of a model over consecutive SEQ-token windows of a dataset (EOS after each document).
import { command, str, num } from '../command.ts';
import { nodeGpu } from '../../node/gpu.ts';
import { openModel, QUANT_FLAGS, quantOption } from '../load-model.ts';
import { Forward } from '../../engine/train/forward.ts';
import { tokenizeFile, windowBatch, windowCount } from '../dataset.ts';

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
    const fwd = new Forward(gpu, model.spec, model.weights, { maxTokens: batch * seq });
    const pad = ds.all.ids[ds.all.ids.length - 1] ?? 0;
    let sum = 0;
    let n = 0;
    const t0 = performance.now();
    for (let w = 0; w < windows; w += batch) {
      const count = Math.min(batch, windows - w);
      const { ids, targets } = windowBatch(ds.all, w, count, seq, pad);
      const r = await fwd.run(ids, count, seq, { targets });
      sum += r.sumLoss;
      n += r.tokens;
      if (process.stderr.isTTY || process.env.USAF_PROGRESS) process.stderr.write(`\reval ${Math.min(w + count, windows)}/${windows} windows, loss ${(sum / n).toFixed(4)}`);
    }
    if (process.stderr.isTTY || process.env.USAF_PROGRESS) process.stderr.write('\n');
    const loss = sum / n;
    console.log(JSON.stringify({ model: modelDir, data: str(f, 'data'), seq, windows, windows_total: total, tokens_total: ds.all.ids.length, tokens_scored: n, loss, ppl: Math.exp(loss), sec: +((performance.now() - t0) / 1000).toFixed(1) }));
    return 0;
  },
);
