// router on the HF reference fixtures: GPU router logits equal transformers' router_logits, and the GPU selection from
// them equals the float64 oracle's in every MoE layer (margins down to 6e-5). Every family adapter's fixture, none skipped:
// a missing fixture fails its family's test.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as gpuOp from '../../../src/engine/ops/router.ts';
import * as ref from '../../../src/engine/ref/router.ts';
import type { RouterDims } from '../../../src/engine/ops/router.ts';
import { parseConfig } from '../../../src/engine/model/config.ts';
import { FAMILIES } from '../../../src/engine/model/families/index.ts';
import { openSafetensors, type SafetensorsFile } from '../../../src/engine/io/safetensors.ts';
import { decodeF32 } from '../../../src/engine/io/dtype.ts';
import { fileSource } from '../../../src/node/file-source.ts';
import { readFileSync } from 'node:fs';
import { readU32 } from '../../../src/engine/gpu/buffers.ts';
import { expectClose, relErr } from '../../helpers/compare.ts';
import { f32Buffer, poisoned, readF32, run, testGpu } from '../../helpers/gpu.ts';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));
const folders: [string, string][] = FAMILIES.map((f) => [f.arch, here(`../../fixtures/${f.arch}/`)]);

async function tensor(f: SafetensorsFile, name: string): Promise<Float32Array> {
  const info = f.tensors.get(name);
  if (!info) throw new Error(`missing tensor ${name}`);
  return decodeF32(info.dtype, await f.readTensor(name));
}

describe('router on the HF fixtures', () => {
  for (const [arch, dir] of folders) {
    it(`${arch}: logits and selection in every MoE layer`, async () => {
      for (const f of ['config.json', 'model.safetensors', 'reference.safetensors']) expect(existsSync(`${dir}${f}`), `test/fixtures/${arch}/${f}`).toBe(true);
      const gpu = await testGpu();
      const spec = parseConfig(JSON.parse(readFileSync(`${dir}config.json`, 'utf8')));
      const model = await openSafetensors(fileSource(`${dir}model.safetensors`));
      const refs = await openSafetensors(fileSource(`${dir}reference.safetensors`));
      const H = spec.hidden, E = spec.moe.numExperts, m = spec.moe;
      let layers = 0;
      for (const layer of spec.layers) {
        if (layer.mlp !== 'moe') continue;
        const name = (role: string) => layer.tensors.find((t) => t.role === role)!.name;
        const x = await tensor(refs, `mlp_input.${layer.index}`);
        const want = await tensor(refs, `router_logits.${layer.index}`);
        const T = x.length / H;
        const wr = await tensor(model, name('router'));
        const bias = m.hasCorrectionBias ? await tensor(model, name('router.bias_correction')) : null;
        const d: RouterDims = { T, E, K: m.topK, scoring: m.scoring, nGroup: m.nGroup, topkGroup: m.topkGroup, normTopkProb: m.normTopkProb, routedScalingFactor: m.routedScalingFactor };
        const logits = poisoned(gpu, T * E), topIdx = poisoned(gpu, T * m.topK), topW = poisoned(gpu, T * m.topK), probs = poisoned(gpu, T * E);
        await run(gpu, (enc) => {
          gpuOp.routerLogits(enc, logits, f32Buffer(gpu, x), f32Buffer(gpu, wr), T, H, E);
          gpuOp.routerForward(enc, topIdx, topW, probs, logits, bias ? f32Buffer(gpu, bias) : null, d);
        });
        const got = await readF32(gpu, logits);
        expect(relErr(got, want), `layer ${layer.index} logits`).toBeLessThan(1e-5);
        const wIdx = new Uint32Array(T * m.topK), wW = new Float64Array(T * m.topK), wP = new Float64Array(T * E);
        ref.routerForward(wIdx, wW, wP, want, bias, d);
        expect(Array.from(await readU32(gpu, topIdx)), `layer ${layer.index} topIdx`).toEqual(Array.from(wIdx));
        expectClose(await readF32(gpu, topW), wW, 1e-6, 1e-5, `layer ${layer.index} topW`);
        layers++;
      }
      expect(layers).toBeGreaterThan(0);
    });
  }
});
