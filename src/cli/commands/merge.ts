// usaf merge: a sparse delta (usaf-delta.safetensors) applied onto the original Hub model it was made from, streamed tensor
// by tensor into Hub shards (engine/train/merge.ts). Refuses another base naming the first mismatch. Prints one JSON line.
import { stat } from 'node:fs/promises';
import { command, num, str } from '../command.ts';
import { urlFolder, type FileSet } from '../../engine/io/folder.ts';
import { mergeModel } from '../../engine/train/merge.ts';
import { nodeFileSink } from '../../node/file-sink.ts';
import { nodeFolder } from '../../node/folder.ts';
import { fileSource } from '../../node/file-source.ts';

/** A model folder, or a URL prefix (http/https: a Hub `resolve/main/` URL or any static server honouring Range). */
export function baseFolder(where: string): FileSet {
  return /^https?:\/\//i.test(where) ? urlFolder(where) : nodeFolder(where);
}

export const merge = command(
  'merge',
  'apply a sparse delta onto its original Hub model: a full checkpoint, streamed, bit-identical wherever training did not touch it',
  {
    base: { type: 'string', help: 'the original Hub model: a folder, or a URL prefix (…/resolve/main/)' },
    delta: { type: 'string', help: 'the delta file (usaf-delta.safetensors)' },
    out: { type: 'string', help: 'output folder: Hub shards, model.safetensors.index.json (written last), config and tokenizer files' },
    'max-shard-gb': { type: 'number', default: 2, help: 'cap on one shard\'s tensor data, in GB (the Hub allows 5)' },
  },
  async (f) => {
    const base = str(f, 'base');
    const deltaPath = str(f, 'delta');
    const out = str(f, 'out');
    const maxShardGb = num(f, 'max-shard-gb')!;
    if (!(maxShardGb > 0 && maxShardGb <= 5)) throw new Error(`--max-shard-gb must be in (0, 5], not ${maxShardGb}`);
    if (!(await stat(deltaPath).then((s) => s.isFile(), () => false))) throw new Error(`--delta ${deltaPath}: no such file`);
    const delta = fileSource(deltaPath, deltaPath);
    const t0 = performance.now();
    let last = 0;
    try {
      const r = await mergeModel(baseFolder(base), delta, nodeFileSink(out), {
        maxShardBytes: Math.round(maxShardGb * 1e9),
        onProgress: (p) => {
          const now = performance.now();
          if (now - last < 1000 && p.tensorsDone < p.tensors) return;
          last = now;
          process.stderr.write(`merge: ${p.tensorsDone}/${p.tensors} tensors, ${(p.bytesDone / 1e6).toFixed(1)}/${(p.bytes / 1e6).toFixed(1)} MB (${p.file})\n`);
        },
      });
      console.log(JSON.stringify({ base, delta: deltaPath, out, shards: r.shards.length, bytes: r.bytes, sec: +((performance.now() - t0) / 1000).toFixed(2) }));
      return 0;
    } finally {
      await delta.close?.();
    }
  },
);
