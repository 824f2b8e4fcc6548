// Contract: published Hub configs (configs/README.md) parse to the right geometry and the parameter totals
// their model cards state; expected numbers are derived by hand in the comments, not by the code under test.
import { describe, expect, it } from 'vitest';
import { countParams, expertParamCount, parseConfig } from '../../../src/engine/model/config.ts';
import { layerTensors } from '../../../src/engine/model/tensors.ts';
import { loadJson } from './load.ts';

const load = (name: string) => parseConfig(loadJson(`./configs/${name}.json`));

describe('Qwen3-30B-A3B', () => {
  const s = load('Qwen3-30B-A3B');
  it('geometry', () => {
    expect(s).toMatchObject({ arch: 'qwen3_moe', hidden: 2048, numLayers: 48, vocab: 151936, numHeads: 32, numKvHeads: 4, headDim: 128 });
    expect(s.moe).toMatchObject({ numExperts: 128, topK: 8, expertIntermediate: 768, normTopkProb: true });
    expect(s.rope.theta).toBe(1e6);
    expect(s.layers.every((l) => l.mlp === 'moe')).toBe(true);
    const t = layerTensors(s, 0);
    expect(t.find((x) => x.role === 'attn.q')!.shape).toEqual([4096, 2048]);
    expect(t.find((x) => x.role === 'attn.k')!.shape).toEqual([512, 2048]);
    expect(t.find((x) => x.role === 'attn.q_norm')!.shape).toEqual([128]);
    expect(t.filter((x) => x.role === 'expert.down')).toHaveLength(128);
    expect(t.find((x) => x.name === 'model.layers.0.mlp.experts.127.down_proj.weight')!.shape).toEqual([2048, 768]);
  });
  it('counts: 48 × 128 × 3 × 2048 × 768 expert params, 30.5B total, 3.3B active', () => {
    const c = countParams(s);
    expect(expertParamCount(s)).toBe(3 * 2048 * 768);
    expect(c.perLayerExpert).toBe(128 * 3 * 2048 * 768);
    expect(c.expert).toBe(28_991_029_248);
    expect(c.router).toBe(48 * 128 * 2048);
    // per layer: q 2048·4096 + k,v 2·2048·512 + o 4096·2048 + q/k norm 2·128
    expect(c.attention).toBe(48 * (2 * 2048 * 4096 + 2 * 2048 * 512 + 2 * 128));
    expect(c.embedding).toBe(151936 * 2048);
    expect(c.lmHead).toBe(151936 * 2048);
    expect(c.total).toBe(30_532_122_624);
    // all but the experts + 8/128 of them
    expect(c.active).toBe(30_532_122_624 - 28_991_029_248 + 28_991_029_248 / 16);
    expect(c.active).toBe(3_353_032_704);
  });
});

describe('Qwen3-235B-A22B', () => {
  const s = load('Qwen3-235B-A22B');
  it('geometry and counts: 94 × 128 × 3 × 4096 × 1536 expert params, 235B total, 22B active', () => {
    expect(s).toMatchObject({ hidden: 4096, numLayers: 94, numHeads: 64, numKvHeads: 4, headDim: 128 });
    expect(s.moe).toMatchObject({ numExperts: 128, topK: 8, expertIntermediate: 1536 });
    const c = countParams(s);
    expect(c.expert).toBe(94 * 128 * 3 * 4096 * 1536);
    expect(c.expert).toBe(227_096_395_776);
    expect(c.total).toBe(235_093_634_560);
    expect(c.active).toBe(22_190_763_520);
  });
});

describe('Mixtral-8x7B-v0.1', () => {
  const s = load('Mixtral-8x7B-v0.1');
  it('geometry: block_sparse_moe w1/w3/w2 of 4096 × 14336', () => {
    expect(s).toMatchObject({ arch: 'mixtral', hidden: 4096, numLayers: 32, vocab: 32000, numHeads: 32, numKvHeads: 8, headDim: 128, rmsEps: 1e-5 });
    expect(s.moe).toMatchObject({ numExperts: 8, topK: 2, expertIntermediate: 14336, normTopkProb: true, scoring: 'softmax' });
    const t = layerTensors(s, 31);
    expect(t.find((x) => x.name === 'model.layers.31.block_sparse_moe.experts.7.w2.weight')!.shape).toEqual([4096, 14336]);
    expect(t.find((x) => x.name === 'model.layers.31.block_sparse_moe.gate.weight')!.shape).toEqual([8, 4096]);
    expect(layerTensors(s, 31, 'fused').find((x) => x.role === 'expert.gate_up_fused')).toEqual({
      role: 'expert.gate_up_fused', name: 'model.layers.31.mlp.experts.gate_up_proj', shape: [8, 2 * 14336, 4096],
    });
  });
  it('counts: 46.7B total, 12.9B active', () => {
    const c = countParams(s);
    expect(c.expert).toBe(32 * 8 * 3 * 4096 * 14336);
    expect(c.total).toBe(46_702_792_704);
    expect(c.active).toBe(12_879_925_248);
  });
});

describe('OLMoE-1B-7B-0924', () => {
  const s = load('OLMoE-1B-7B-0924');
  it('geometry and counts: 16 × 64 experts of 1024, hidden 2048; 6.9B total, 1.3B active', () => {
    expect(s).toMatchObject({ arch: 'olmoe', hidden: 2048, numLayers: 16, vocab: 50304, numHeads: 16, numKvHeads: 16, headDim: 128 });
    expect(s.attention.qkNorm).toBe('full');
    expect(s.moe).toMatchObject({ numExperts: 64, topK: 8, expertIntermediate: 1024, normTopkProb: false });
    const c = countParams(s);
    expect(c.expert).toBe(16 * 64 * 3 * 2048 * 1024);
    // q/k norm over the whole 2048-wide projections
    expect(c.attention).toBe(16 * (4 * 2048 * 2048 + 2 * 2048));
    expect(c.total).toBe(6_919_161_856);
    expect(c.active).toBe(1_282_017_280);
  });
});

describe('DeepSeek-V3', () => {
  const s = load('DeepSeek-V3');
  it('geometry: 61 layers, first 3 dense, 256 routed experts of 2048 + 1 shared, MLA, YaRN', () => {
    expect(s).toMatchObject({ arch: 'deepseek_v3', hidden: 7168, numLayers: 61, vocab: 129280, numHeads: 128, headDim: 192, mtpLayers: 1, quantization: 'fp8' });
    expect(s.layers.filter((l) => l.mlp === 'dense').map((l) => l.index)).toEqual([0, 1, 2]);
    expect(s.moe).toMatchObject({
      numExperts: 256, topK: 8, expertIntermediate: 2048, scoring: 'sigmoid', nGroup: 8, topkGroup: 4,
      routedScalingFactor: 2.5, hasCorrectionBias: true, normTopkProb: true, sharedExperts: { count: 1, intermediate: 2048, gated: false },
    });
    expect(s.attention.mla).toEqual({ qLoraRank: 1536, kvLoraRank: 512, qkRopeHeadDim: 64, qkNopeHeadDim: 128, vHeadDim: 128 });
    expect(s.rope).toEqual({
      theta: 10000, interleave: true, partialDim: 64,
      scaling: { type: 'yarn', factor: 40, originalMaxPos: 4096, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 1 },
    });
    const m = 0.1 * Math.log(40) + 1;
    expect(s.attention.softmaxScale).toBeCloseTo((m * m) / Math.sqrt(192), 14);
    const t = layerTensors(s, 3);
    expect(t.find((x) => x.role === 'attn.kv_a')!.shape).toEqual([512 + 64, 7168]);
    expect(t.find((x) => x.role === 'attn.kv_b')!.shape).toEqual([128 * (128 + 128), 512]);
    expect(t.find((x) => x.role === 'attn.q_b')!.shape).toEqual([128 * 192, 1536]);
    expect(t.find((x) => x.role === 'router.bias_correction')!.name).toBe('model.layers.3.mlp.gate.e_score_correction_bias');
    expect(layerTensors(s, 2).find((x) => x.role === 'dense.gate')!.shape).toEqual([18432, 7168]);
  });
  it('counts: 671B total, 37B active (MTP layer excluded)', () => {
    const c = countParams(s);
    expect(c.perLayerExpert).toBe(256 * 3 * 7168 * 2048);
    expect(c.expert).toBe(58 * 256 * 3 * 7168 * 2048);
    expect(c.shared).toBe(58 * 3 * 7168 * 2048);
    expect(c.dense).toBe(3 * 3 * 7168 * 18432);
    expect(c.router).toBe(58 * (256 * 7168 + 256));
    expect(c.total).toBe(671_026_419_200);
    expect(c.active).toBe(37_552_297_472);
  });
});

describe('Qwen1.5-MoE-A2.7B (qwen2_moe)', () => {
  it('geometry and counts: 60 experts top-4 + gated shared expert; 14.3B total, 2.7B active', () => {
    const s = load('Qwen1.5-MoE-A2.7B');
    expect(s.attention).toMatchObject({ bias: true, outBias: false, qkNorm: 'none' });
    expect(s.moe.sharedExperts).toEqual({ count: 1, intermediate: 5632, gated: true });
    expect(s.layers.every((l) => l.slidingWindow === null)).toBe(true);
    const c = countParams(s);
    expect(c.shared).toBe(24 * (3 * 2048 * 5632 + 2048));
    expect(c.total).toBe(14_315_784_192);
    expect(c.active).toBe(2_689_173_504);
  });
});
