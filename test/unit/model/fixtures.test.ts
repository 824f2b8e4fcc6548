// Contract: for every reference fixture and the demo model, the tensor names + shapes the spec predicts equal
// the checkpoint header exactly (per-expert as stored, and fused as transformers 5 holds them).
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { countParams, parseConfig } from '../../../src/engine/model/config.ts';
import { allTensors, detectExpertLayout } from '../../../src/engine/model/tensors.ts';
import type { ModelSpec } from '../../../src/engine/model/spec.ts';
import { here, loadJson, loadJsonFile, loadShapes, numel, readSafetensorsShapes, type Shapes } from './load.ts';

const ARCHS = ['qwen3_moe', 'mixtral', 'olmoe', 'qwen2_moe', 'deepseek_v3'] as const;
const MODELS = [...ARCHS, 'usaf-demo-moe'] as const;

const spec = (name: string): ModelSpec => parseConfig(loadJson(`./fixtures/${name}.config.json`));
const predicted = (s: ModelSpec, layout = s.expertLayout): Shapes =>
  Object.fromEntries(allTensors(s, layout).map((t) => [t.name, t.shape]));
const sorted = (x: Shapes): Shapes => Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1)));

/** The checkpoint as transformers 5 holds it in memory: experts stacked, gate rows before up rows. */
function fuse(shapes: Shapes): Shapes {
  const out: Shapes = {};
  const experts = new Map<string, { gate: number[]; down: number[]; n: number }>();
  for (const [name, shape] of Object.entries(shapes)) {
    const m = /^(model\.layers\.\d+)\.(?:mlp|block_sparse_moe)\.experts\.(\d+)\.(\w+)\.weight$/.exec(name);
    if (!m) {
      out[name.replace('.block_sparse_moe.', '.mlp.')] = shape;
      continue;
    }
    const e = experts.get(m[1]!) ?? { gate: [], down: [], n: 0 };
    e.n = Math.max(e.n, Number(m[2]) + 1);
    if (m[3] === 'gate_proj' || m[3] === 'w1') e.gate = shape;
    if (m[3] === 'down_proj' || m[3] === 'w2') e.down = shape;
    experts.set(m[1]!, e);
  }
  for (const [layer, e] of experts) {
    out[`${layer}.mlp.experts.gate_up_proj`] = [e.n, 2 * e.gate[0]!, e.gate[1]!];
    out[`${layer}.mlp.experts.down_proj`] = [e.n, ...e.down];
  }
  return out;
}

describe.each(MODELS)('checkpoint %s', (name) => {
  const header = loadShapes(`./fixtures/${name}.tensors.json`);

  it('predicts exactly the per-expert checkpoint header (names and shapes)', () => {
    const s = spec(name);
    expect(detectExpertLayout(Object.keys(header))).toBe('per_expert');
    expect(sorted(predicted(s))).toEqual(sorted(header));
  });

  it('predicts exactly the fused (transformers 5) layout', () => {
    const fused = fuse(header);
    const s = spec(name);
    expect(detectExpertLayout(Object.keys(fused))).toBe('fused');
    expect(sorted(predicted(s, 'fused'))).toEqual(sorted(fused));
    expect(sorted(predicted(parseConfig(loadJson(`./fixtures/${name}.config.json`), { expertLayout: 'fused' })))).toEqual(sorted(fused));
  });

  it('counts every checkpoint element once', () => {
    expect(countParams(spec(name)).total).toBe(numel(header));
  });

  it('snapshot matches the checkpoint the repository ships', () => {
    const dir = here(name === 'usaf-demo-moe' ? '../../../public/models/usaf-demo-moe' : `../../fixtures/${name}`);
    let files = ['model.safetensors'];
    if (name === 'usaf-demo-moe') {
      const index = loadJsonFile(join(dir, 'model.safetensors.index.json')) as { weight_map: Record<string, string> };
      files = [...new Set(Object.values(index.weight_map))];
      expect(sorted(Object.fromEntries(Object.keys(index.weight_map).map((k) => [k, header[k]!])))).toEqual(sorted(header));
    }
    const live: Shapes = Object.assign({}, ...files.map((f) => readSafetensorsShapes(join(dir, f))));
    expect(sorted(live)).toEqual(sorted(header));
    expect(loadJsonFile(join(dir, 'config.json'))).toEqual(loadJson(`./fixtures/${name}.config.json`));
  });
});

describe('fixture specs', () => {
  it('qwen3_moe: per-head q/k norm, GQA, all MoE', () => {
    const s = spec('qwen3_moe');
    expect(s).toMatchObject({ hidden: 64, numLayers: 4, vocab: 512, numHeads: 4, numKvHeads: 2, headDim: 16, rmsEps: 1e-6 });
    expect(s.attention).toMatchObject({ kind: 'mha', qkNorm: 'per_head', bias: false, clipQkv: null, softmaxScale: 0.25 });
    expect(s.moe).toMatchObject({ numExperts: 8, topK: 2, expertIntermediate: 48, normTopkProb: true, scoring: 'softmax', sharedExperts: null });
    expect(s.rope).toEqual({ theta: 10000, interleave: false, scaling: null });
    expect(s.layers.map((l) => l.mlp)).toEqual(['moe', 'moe', 'moe', 'moe']);
  });

  it('mixtral (transformers-5 keys): renormalized top-k, no q/k norm', () => {
    const s = spec('mixtral');
    expect(s).toMatchObject({ headDim: 16, numKvHeads: 2, tieEmbeddings: false });
    expect(s.attention.qkNorm).toBe('none');
    expect(s.moe).toMatchObject({ numExperts: 8, topK: 2, expertIntermediate: 48, normTopkProb: true });
    expect(s.rope.theta).toBe(10000);
  });

  it('olmoe: q/k norm over the whole projection, no renormalization', () => {
    const s = spec('olmoe');
    expect(s.attention.qkNorm).toBe('full');
    expect(s.moe.normTopkProb).toBe(false);
    expect(s.layers[0]!.tensors.find((t) => t.role === 'attn.k_norm')!.shape).toEqual([32]);
  });

  it('qwen2_moe: q/k/v bias and a gated shared expert', () => {
    const s = spec('qwen2_moe');
    expect(s.attention).toMatchObject({ bias: true, outBias: false });
    expect(s.moe.sharedExperts).toEqual({ count: 1, intermediate: 80, gated: true });
    expect(s.moe.normTopkProb).toBe(false);
  });

  it('deepseek_v3 (transformers-5 keys): MLA, sigmoid group routing, dense layer 0', () => {
    const s = spec('deepseek_v3');
    expect(s.attention.kind).toBe('mla');
    expect(s.attention.mla).toEqual({ qLoraRank: 48, kvLoraRank: 32, qkRopeHeadDim: 8, qkNopeHeadDim: 16, vHeadDim: 16 });
    expect(s.headDim).toBe(24);
    expect(s.attention.softmaxScale).toBeCloseTo(1 / Math.sqrt(24), 15);
    expect(s.rope).toEqual({ theta: 10000, interleave: true, partialDim: 8, scaling: null });
    expect(s.moe).toMatchObject({
      numExperts: 8, topK: 2, expertIntermediate: 48, normTopkProb: true, scoring: 'sigmoid',
      nGroup: 2, topkGroup: 1, routedScalingFactor: 2.5, hasCorrectionBias: true,
      sharedExperts: { count: 1, intermediate: 48, gated: false },
    });
    expect(s.layers.map((l) => l.mlp)).toEqual(['dense', 'moe', 'moe', 'moe']);
    expect(s.denseIntermediate).toBe(96);
    expect(s.mtpLayers).toBe(1);
  });

  it('demo model: 8 layers, 16 experts top-4, 16,291,072 parameters', () => {
    const s = spec('usaf-demo-moe');
    expect(s).toMatchObject({ arch: 'qwen3_moe', hidden: 256, numLayers: 8, vocab: 4096, numHeads: 4, numKvHeads: 2, headDim: 64 });
    expect(s.moe).toMatchObject({ numExperts: 16, topK: 4, expertIntermediate: 128 });
    const c = countParams(s);
    expect(c.total).toBe(16_291_072);
    // layers 4-7: all expert weights + routers = the README's "dense" fine-tuning run
    expect(4 * (c.perLayerExpert + 16 * 256)).toBe(6_307_840);
  });
});
