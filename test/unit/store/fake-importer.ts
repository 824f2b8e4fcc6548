// A CPU stand-in for importQ4 with the same contract as far as the store sees it: copied files, then one shard per MoE
// layer (a U32 ".q4" tensor derived from the layer's first expert tensor, with the stored 4-bit metadata), the index last;
// shards already present with their exact header and size are kept; a throw from onProgress interrupts.

import type { Bytes } from '../../../src/engine/io/byte-source.ts';
import { INDEX_FILE } from '../../../src/engine/io/checkpoint.ts';
import { safetensorsHeader } from '../../../src/engine/io/safetensors-write.ts';
import type { ModelSpec } from '../../../src/engine/model/index.ts';
import { layerTensors } from '../../../src/engine/model/tensors.ts';
import { q4ExpertNames, storedQ4Metadata } from '../../../src/engine/quant/stored-q4.ts';
import type { Checkpoint } from '../../../src/engine/io/checkpoint.ts';
import type { Importer, ImportJob } from '../../../src/store/model-store.ts';

const WORDS = 64;

function shards(spec: ModelSpec, G: number) {
  const metadata = storedQ4Metadata({ groupSize: G, expertLayout: spec.expertLayout });
  const out: { path: string; name: string; header: Bytes; source: string; layer: number }[] = [];
  const moe = spec.layers.map((l, L) => (l.mlp === 'moe' ? L : -1)).filter((L) => L >= 0);
  moe.forEach((L, i) => {
    const name = q4ExpertNames(spec, L).gateUp;
    const { header } = safetensorsHeader([{ name, dtype: 'U32', shape: [WORDS] }], metadata);
    const source = layerTensors(spec, L).find((e) => e.role.startsWith('expert.'))!.name;
    out.push({ path: `model-${String(i + 1).padStart(5, '0')}-of-${String(moe.length).padStart(5, '0')}.safetensors`, name, header, source, layer: L });
  });
  return out;
}

export interface FakeImporter extends Importer {
  /** Shards written completely (not kept from an earlier run) by every run so far. */
  written: string[];
}

export function fakeImporter(): FakeImporter {
  const written: string[] = [];
  return {
    written,
    size: (spec: ModelSpec, _src: Checkpoint, o) => shards(spec, o.groupSize).reduce((n, s) => n + s.header.byteLength + WORDS * 4, 0) + 4096,
    async run(j: ImportJob) {
      for (const f of j.copyFiles) {
        const s = await j.folder.open(f);
        if (s) await j.sink.write(f, [await s.read(0, await s.size())]);
      }
      const list = shards(j.spec, j.groupSize);
      let bytes = 0;
      let source = '';
      const report = (n: number) => { bytes += n; j.onProgress({ tensors: 0, totalTensors: list.length, bytes, totalBytes: list.length * WORDS * 4, bytesRead: 0, source }); };
      const weightMap: Record<string, string> = {};
      for (const s of list) {
        weightMap[s.name] = s.path;
        const there = await j.resumeFrom.open(s.path);
        if (there && (await there.size()) === s.header.byteLength + WORDS * 4) { report(WORDS * 4); continue; }
        const src = await j.src.readTensor(s.source);
        source = j.src.tensors.get(s.source)!.file;
        const data = new Uint8Array(WORDS * 4).map((_, i) => src[i % src.byteLength]! ^ s.layer);
        await j.sink.write(s.path, (function* () { yield s.header; yield data; report(WORDS * 4); })());
        written.push(s.path);
      }
      await j.sink.write(INDEX_FILE, [new TextEncoder().encode(JSON.stringify({ metadata: {}, weight_map: weightMap }))]);
    },
  };
}
