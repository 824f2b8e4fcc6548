// Family features the fixtures do not exercise (every family's forward and gradients vs transformers: parity.test.ts):
// OLMoE's clip_qkv backward against directional derivatives; an FP8 DeepSeek checkpoint.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModel } from '../../src/cli/load-model.ts';
import { openCheckpoint } from '../../src/engine/io/checkpoint.ts';
import { decodeInt } from '../../src/engine/io/dtype.ts';
import { openSafetensors } from '../../src/engine/io/safetensors.ts';
import { parseConfig } from '../../src/engine/model/config.ts';
import { Forward } from '../../src/engine/train/forward.ts';
import { gradients } from '../../src/engine/train/gradients.ts';
import { loadWeights, type ExpertTensor, type GpuTensor } from '../../src/engine/train/weights.ts';
import { readF32, writeBuffer } from '../../src/engine/gpu/buffers.ts';
import { fileSource } from '../../src/node/file-source.ts';
import { nodeFolder } from '../../src/node/folder.ts';
import { testGpu } from '../helpers/gpu.ts';
import { fp8Twins } from '../helpers/fp8-checkpoint.ts';

const tmp: string[] = [];
afterAll(async () => {
  for (const d of tmp) await rm(d, { recursive: true, force: true });
});

async function inputIds(fix: string): Promise<Uint32Array> {
  const ref = await openSafetensors(fileSource(`${fix}/reference.safetensors`));
  const ids = Uint32Array.from(decodeInt('I32', await ref.readTensor('input_ids')) as ArrayLike<number>);
  await ref.source.close?.();
  return ids;
}

describe('OLMoE clip_qkv', () => {
  it('the backward through the clamp of q, k (after their norms) and v agrees with directional derivatives of the loss', async () => {
    const FIX = 'test/fixtures/olmoe';
    const CLIP = 0.8; // clips ~40 % of the normed q/k entries and ~25 % of v
    const dir = await mkdtemp(join(tmpdir(), 'usaf-clip-'));
    tmp.push(dir);
    const cfg = JSON.parse(await readFile(`${FIX}/config.json`, 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...cfg, clip_qkv: CLIP }));
    await copyFile(`${FIX}/model.safetensors`, join(dir, 'model.safetensors'));
    const ids = await inputIds(FIX);
    const [batch, seq] = [2, 24];
    const gpu = await testGpu();
    const m = await openModel(gpu, dir, { trainFrom: 0 });
    expect(m.spec.attention.clipQkv).toBe(CLIP);
    const grads = await gradients(gpu, m.spec, m.weights, ids, batch, seq, 0, true);
    const fwd = new Forward(gpu, m.spec, m.weights, { maxTokens: batch * seq });
    const base = await fwd.run(ids, batch, seq);
    expect(Number.isFinite(base.loss)).toBe(true);
    // the clamp is active: a good share of the pre-clamp q, k, v (last layer's, kept in the shared acts) lies outside ±CLIP
    for (const buf of [fwd.acts.qClip!, fwd.acts.kClip!, fwd.acts.vClip!]) {
      const x = await readF32(gpu, buf, 0, batch * seq);
      expect(x.filter((v) => Math.abs(v) > CLIP).length / x.length).toBeGreaterThan(0.1);
    }
    // f32 weights (norms) of the last layer, whose gradients reach them only through the clamps; step 1e-3 along the
    // normalized gradient (small enough not to flip a routing decision): (L(w + εĝ) − L(w − εĝ)) / 2ε = |g|.
    const L = m.spec.numLayers - 1;
    for (const role of ['input_norm', 'attn.q_norm', 'attn.k_norm'] as const) {
      const name = m.spec.layers[L]!.tensors.find((e) => e.role === role)!.name;
      const w: GpuTensor = m.weights.layers[L]!.t[role]!;
      const w0 = await readF32(gpu, w.buf);
      const g = grads.get(name)!;
      const norm = Math.hypot(...g);
      const eps = 1e-3;
      const lossAt = async (s: number) => {
        writeBuffer(gpu, w.buf, 0, w0.map((v, i) => v + (s * g[i]!) / norm));
        return (await fwd.run(ids, batch, seq)).loss;
      };
      const fd = ((await lossAt(eps)) - (await lossAt(-eps))) / (2 * eps);
      writeBuffer(gpu, w.buf, 0, w0);
      expect(Math.abs(fd - norm) / norm, `${name}: |g| ${norm}, finite difference ${fd}`).toBeLessThan(2e-2);
    }
    await m.ckpt.close();
  });
});

describe('DeepSeek-V3 FP8 checkpoint', () => {
  it('loads (E4M3 + 128×128 weight_scale_inv, dequantized on import) into the same GPU weights as its bf16 twin', async () => {
    const FIX = 'test/fixtures/deepseek_v3';
    const cfg = JSON.parse(await readFile(`${FIX}/config.json`, 'utf8')) as Record<string, unknown>;
    const spec = parseConfig({ ...cfg, quantization_config: { quant_method: 'fp8', fmt: 'e4m3', weight_block_size: [128, 128], activation_scheme: 'dynamic' } });
    const orig = await openCheckpoint(nodeFolder(FIX));
    const twins = await fp8Twins(orig);
    await orig.close();
    const gpu = await testGpu();
    const a = await loadWeights(gpu, spec, twins.fp8, { f32ExpertLayers: new Set([1]) });
    const b = await loadWeights(gpu, spec, twins.bf16, { f32ExpertLayers: new Set([1]) });
    const same = async (x: GpuTensor | ExpertTensor, y: GpuTensor | ExpertTensor, what: string) => {
      expect(x.dtype, what).toBe(y.dtype);
      expect(new Uint32Array((await readF32(gpu, x.buf)).buffer), what).toEqual(new Uint32Array((await readF32(gpu, y.buf)).buffer));
    };
    let n = 0;
    for (let L = 0; L < spec.numLayers; L++) {
      const [la, lb] = [a.layers[L]!, b.layers[L]!];
      for (const [role, t] of Object.entries(la.t)) await same(t, lb.t[role as keyof typeof la.t]!, `layer ${L} ${role}`), n++;
      if (la.experts) for (const k of ['gate', 'up', 'down'] as const) await same(la.experts[k], lb.experts![k], `layer ${L} experts.${k}`), n++;
    }
    expect(n).toBeGreaterThan(40);
    // and the weights differ from the unquantized fixture's (the quantization did something)
    const plain = await loadWeights(gpu, spec, await openCheckpoint(nodeFolder(FIX)));
    const q = a.layers[1]!.t['attn.q_b']!;
    expect(new Uint32Array((await readF32(gpu, q.buf)).buffer)).not.toEqual(new Uint32Array((await readF32(gpu, plain.layers[1]!.t['attn.q_b']!.buf)).buffer));
  });
});
