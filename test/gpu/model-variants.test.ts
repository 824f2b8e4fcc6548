// Whole-model parity over Qwen3-MoE config variants: the GPU forward (Forward via openModel, and the `usaf parity` code path)
// equals the float64 reference refForward, which itself equals transformers on the qwen3_moe fixture.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { join } from 'node:path';
import { runParity, relErr } from '../../src/cli/commands/parity.ts';
import { readSpec } from '../../src/cli/load-model.ts';
import { openCheckpoint } from '../../src/engine/io/checkpoint.ts';
import { openSafetensors } from '../../src/engine/io/safetensors.ts';
import { decodeF32, decodeInt } from '../../src/engine/io/dtype.ts';
import { refForward, refTensorsFromCheckpoint, type RefForwardResult } from '../../src/engine/ref/model.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { fileSource } from '../../src/node/file-source.ts';
import { TINY, tinyModelWithMargin, writeReference, type TinyModel, type TinyModelOptions } from '../helpers/tiny-model.ts';

// runParity makes its device with nodeGpu(): share one per file so the kernels compile once (SwiftShader compiles slowly).
vi.mock('../../src/node/gpu.ts', async (importOriginal) => {
  const m = await importOriginal<typeof import('../../src/node/gpu.ts')>();
  let shared: ReturnType<typeof m.nodeGpu> | null = null;
  return { ...m, nodeGpu: () => (shared ??= m.nodeGpu()) };
});

const FIX = 'test/fixtures/qwen3_moe';
/** GPU (f32, bf16 weights) vs float64 reference, per tensor: max|a - b| / max|b|. */
const TOL = 1e-4;

/** Reference tensors by the fixtures' names. */
function refByName(r: RefForwardResult): Map<string, ArrayLike<number>> {
  const m = new Map<string, ArrayLike<number>>();
  r.hidden.forEach((h, i) => m.set(`hidden.${i}`, h));
  r.mlpInput.forEach((h, i) => m.set(`mlp_input.${i}`, h));
  r.routerLogits.forEach((l, i) => l && m.set(`router_logits.${i}`, l));
  if (r.logits) m.set('logits', r.logits);
  m.set('loss', [r.loss]);
  return m;
}

describe('refForward (float64 reference model)', () => {
  it('equals transformers on the qwen3_moe fixture (every hidden.i, mlp_input.i, router_logits.i, logits, loss within 1e-5)', async () => {
    const spec = await readSpec(FIX);
    const ckpt = await openCheckpoint(nodeFolder(FIX));
    const tensors = await refTensorsFromCheckpoint(spec, ckpt);
    await ckpt.close();
    const hf = await openSafetensors(fileSource(join(FIX, 'reference.safetensors')));
    const [batch, seq] = hf.tensors.get('input_ids')!.shape as [number, number];
    const ids = Uint32Array.from(decodeInt('I32', await hf.readTensor('input_ids')) as ArrayLike<number>);
    const r = refForward(spec, tensors, ids, batch, seq);
    const ours = refByName(r);
    const names = [...hf.tensors.keys()].filter((n) => n !== 'input_ids' && !n.startsWith('grad.'));
    expect(names.length).toBe(5 + 4 + 4 + 2);
    for (const n of names) {
      expect(ours.has(n), n).toBe(true);
      const want = decodeF32(hf.tensors.get(n)!.dtype, await hf.readTensor(n));
      expect(relErr(ours.get(n)!, want), n).toBeLessThanOrEqual(1e-5);
    }
    // routing margin as the fixture's meta.json states it (6.4e-5): the reference sees the same scores
    expect(r.minTopkGap).toBeGreaterThan(6.3e-5);
    expect(r.minTopkGap).toBeLessThan(6.5e-5);
    await hf.source.close?.();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// variants

interface Variant {
  name: string;
  opts: TinyModelOptions;
}

const VARIANTS: Variant[] = [
  { name: 'hub keys, untied, all MoE, norm_topk_prob', opts: { seed: 11, keys: 'hub', ropeTheta: 25000 } },
  { name: 'tied embeddings, transformers-5 keys, norm_topk_prob false', opts: { seed: 23, keys: 'hf5', tied: true, normTopkProb: false } },
  { name: 'mlp_only_layers [1] (dense middle layer), norm_topk_prob false', opts: { seed: 37, mlpOnlyLayers: [1], normTopkProb: false } },
  {
    name: 'decoder_sparse_step 2 (layers 0, 2 dense), fused experts, attention_bias, transformers-5 keys',
    opts: { seed: 41, layers: 4, decoderSparseStep: 2, expertLayout: 'fused', attentionBias: true, keys: 'hf5', ropeTheta: 5e5 },
  },
];

const made: TinyModel[] = [];
afterAll(async () => {
  for (const m of made) await m.dispose();
});

describe.each(VARIANTS)('tiny Qwen3-MoE: $name', ({ opts }) => {
  it('config parses as written; GPU forward equals refForward (every tensor rel_err <= 1e-4); `usaf parity` passes', async () => {
    const { model, ref } = await tinyModelWithMargin(opts);
    made.push(model);
    const { spec, batch, seq, ids } = model;

    // the spec as the options mean it (parseConfig is what both sides use, so check it apart)
    expect(spec.hidden).toBe(TINY.hidden);
    expect(spec.headDim).toBe(TINY.headDim);
    expect([spec.numHeads, spec.numKvHeads]).toEqual([TINY.heads, TINY.kvHeads]);
    expect([spec.moe.numExperts, spec.moe.topK]).toEqual([TINY.experts, TINY.topK]);
    expect(spec.layers.map((l) => l.mlp)).toEqual(model.kinds);
    expect(spec.tieEmbeddings).toBe(!!opts.tied);
    expect(spec.moe.normTopkProb).toBe(opts.normTopkProb ?? true);
    expect(spec.rope.theta).toBe(opts.ropeTheta ?? 10000);
    expect(spec.attention.bias && spec.attention.outBias).toBe(!!opts.attentionBias);
    expect(model.tensors.has('lm_head.weight')).toBe(!opts.tied);
    expect(model.tensors.has('model.layers.1.mlp.experts.gate_up_proj')).toBe(opts.expertLayout === 'fused');
    expect(ref.minTopkGap).toBeGreaterThanOrEqual(1e-4);

    // The GPU forward through the CLI's own code path (`usaf parity --model <dir> --reference <refForward dump>`): openModel,
    // Forward.run with every tensor captured, rel_err per reference tensor.
    const refPath = join(model.dir, 'reference.safetensors');
    const names = await writeReference(refPath, spec, ref, ids, batch, seq);
    const moeLayers = model.kinds.filter((k) => k === 'moe').length;
    expect(names.length).toBe(spec.numLayers + 1 + spec.numLayers + moeLayers + 2);
    const r = await runParity(model.dir, refPath, { tol: TOL });
    expect(Object.keys(r.errors).sort()).toEqual([...names].sort());
    for (const [n, e] of Object.entries(r.errors)) expect(e, `${n} rel_err`).toBeLessThanOrEqual(TOL);
    expect(r.ok, `worst ${r.worst.name} ${r.worst.rel_err}`).toBe(true);
    console.log(`${model.dir}: ${names.length} tensors, worst ${r.worst.name} rel_err ${r.worst.rel_err.toExponential(2)}, min top-k gap ${ref.minTopkGap.toExponential(2)}`);
  });
});
