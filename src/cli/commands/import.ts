// usaf import: a Hub model folder → a stored 4-bit model folder (quant/import-q4.ts): routed experts quantized (HQQ) on the
// GPU a layer at a time, the rest bf16; resumable (shards already written are kept). Prints progress, then one JSON line.
import { resolve } from 'node:path';
import { command, num, str } from '../command.ts';
import { nodeGpu } from '../../node/gpu.ts';
import { nodeFileSink } from '../../node/file-sink.ts';
import { nodeFolder } from '../../node/folder.ts';
import { openCheckpoint } from '../../engine/io/checkpoint.ts';
import { withExpertLayout } from '../../engine/model/config.ts';
import { detectExpertLayout } from '../../engine/model/tensors.ts';
import { importQ4 } from '../../engine/quant/import-q4.ts';
import { storedQ4Info } from '../../engine/quant/stored-q4.ts';
import { readSpec } from '../load-model.ts';

export const importCmd = command(
  'import',
  'store a Hub model with its routed experts in 4 bits (HQQ) for loading without quantizing',
  {
    model: { type: 'string', help: 'source model folder (Hub layout)' },
    out: { type: 'string', help: 'output folder (an interrupted import into it resumes)' },
    'group-size': { type: 'number', env: 'GROUP_SIZE', default: 128, help: '4-bit group size (a multiple of 8, at most 128)' },
    'max-shard-gb': { type: 'number', default: 2, help: 'cap on one shard\'s tensor data, in GB' },
  },
  async (f) => {
    const modelDir = str(f, 'model');
    const outDir = str(f, 'out');
    const groupSize = num(f, 'group-size')!;
    const src = await openCheckpoint(nodeFolder(modelDir));
    try {
      if (storedQ4Info(src)) throw new Error(`${modelDir} is a stored 4-bit model already`);
      let spec = await readSpec(modelDir);
      const layout = detectExpertLayout(src.tensors.keys());
      if (layout !== spec.expertLayout) spec = withExpertLayout(spec, layout);
      const gpu = await nodeGpu();
      const t0 = performance.now();
      let last = 0;
      const r = await importQ4(gpu, spec, nodeFileSink(outDir), src, nodeFolder(modelDir), {
        groupSize,
        maxShardBytes: Math.round(num(f, 'max-shard-gb')! * 1e9),
        resumeFrom: nodeFolder(outDir),
        source: resolve(modelDir),
        onProgress: (p) => {
          const now = performance.now();
          if (now - last < 1000 && p.tensors < p.totalTensors) return;
          last = now;
          process.stderr.write(`import: ${p.tensors}/${p.totalTensors} tensors, ${(p.bytes / 1e6).toFixed(1)}/${(p.totalBytes / 1e6).toFixed(1)} MB written\n`);
        },
      });
      const bytesIn = [...src.tensors.values()].reduce((n, t) => n + t.byteLength, 0);
      const sec = (performance.now() - t0) / 1000;
      console.log(JSON.stringify({
        model: modelDir, out: outDir, group_size: r.groupSize, tensors: r.tensors, shards: r.shards.length, resumed_shards: r.resumedShards,
        bytes_in: bytesIn, bytes_read: r.bytesRead, bytes_out: r.bytesOut, ratio: +(bytesIn / r.bytesOut).toFixed(3), sec: +sec.toFixed(2),
      }));
      return 0;
    } finally {
      await src.close();
    }
  },
);
