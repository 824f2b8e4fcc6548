// usaf bench: JSON of adapter info, matmul GFLOP/s at Qwen3-30B-A3B shapes, and forward tokens/s of the demo model.
// On a CPU adapter (SwiftShader) the token count is cut (--tokens) so the run stays short; the JSON says so.

import { command, num } from '../command.ts';
import { nodeGpu } from '../../node/gpu.ts';
import { createBuffer, gpuSync } from '../../engine/gpu/buffers.ts';
import { Encoder } from '../../engine/gpu/encoder.ts';
import { isCpuAdapter, type GpuContext } from '../../engine/gpu/device.ts';
import { matmulForward } from '../../engine/ops/matmul.ts';
import { openModel, QUANT_FLAGS, quantOption } from '../load-model.ts';
import { Forward } from '../../engine/train/forward.ts';
import { syntheticTrainBench, trainBench } from '../train-bench.ts';
import { syntheticSpec } from '../synthetic.ts';
import { costJson, costLines, costModel, rooflineOf } from '../cost-bench.ts';

const SHAPES = [
  { name: 'expert gate/up 2048->768', K: 2048, N: 768 },
  { name: 'expert down 768->2048', K: 768, N: 2048 },
  { name: 'q_proj 2048->4096', K: 2048, N: 4096 },
  { name: 'lm_head 2048->151936', K: 2048, N: 151936 },
];

async function timeIt(gpu: GpuContext, reps: number, record: (enc: Encoder) => void): Promise<number> {
  const warm = new Encoder(gpu);
  record(warm);
  warm.submit();
  await gpuSync(gpu);
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const enc = new Encoder(gpu);
    record(enc);
    enc.submit();
  }
  await gpuSync(gpu);
  return (performance.now() - t0) / 1000 / reps;
}

export async function matmulBench(gpu: GpuContext, M: number, reps: number) {
  const out = [];
  for (const s of SHAPES) {
    const x = createBuffer(gpu, { label: 'x', size: M * s.K * 4 });
    const w = createBuffer(gpu, { label: 'w', size: s.N * s.K * 2 });
    const y = createBuffer(gpu, { label: 'y', size: M * s.N * 4 });
    const sec = await timeIt(gpu, reps, (enc) => matmulForward(enc, y, x, w, null, { M, N: s.N, K: s.K, wDtype: 'bf16' }));
    out.push({ shape: s.name, M, N: s.N, K: s.K, wDtype: 'bf16', ms: +(sec * 1e3).toFixed(3), gflops: +((2 * M * s.N * s.K) / sec / 1e9).toFixed(2) });
    x.destroy();
    w.destroy();
    y.destroy();
  }
  return out;
}

export const bench = command(
  'bench',
  'print JSON: adapter, matmul GFLOP/s at Qwen3-30B-A3B shapes, forward tokens/s of the demo model',
  {
    tokens: { type: 'number', help: 'rows of the matmul bench (default 1024 on a GPU, 32 on SwiftShader)' },
    model: { type: 'string', default: 'public/models/usaf-demo-moe', help: 'model for the forward bench' },
    seq: { type: 'number', help: 'forward bench sequence (default 512 on a GPU, 64 on SwiftShader)' },
    reps: { type: 'number', default: 3, help: 'timed repetitions' },
    'train-seq': { type: 'number', help: 'training bench sequence (default 512 on a GPU, 32 on SwiftShader)' },
    'train-steps': { type: 'number', help: 'timed training steps (default 4 on a GPU, 2 on SwiftShader)' },
    only: { type: 'string', help: 'run only one part: matmul | forward | train' },
    synthetic: { type: 'string', help: 'instead: train a random model with 4-bit experts, built on the GPU (qwen3-30b-a3b, demo, or a config.json)' },
    'train-layers': { type: 'number', default: 8, help: '--synthetic: the top N layers of the model (all of them train)' },
    microbatch: { type: 'number', default: 2, help: '--synthetic: samples per microbatch' },
    'expert-chunk': { type: 'number', env: 'EXPERT_CHUNK', help: '--synthetic: experts per chunk of the trained layers\' f32 scratch (default: all, or what fits --gpu-gib)' },
    'materialized-experts': { type: 'boolean', help: '--synthetic/--cost: each trained layer\'s experts materialized into an f32 scratch per step instead of the default 4-bit W0 + sparse correction (TrainSettings.fusedExperts false)' },
    'gpu-gib': { type: 'number', env: 'GPU_GIB', help: '--synthetic: GPU memory to fit in, GiB (picks the expert chunk and the LM head\'s token chunk; refuses a plan that exceeds it; --cost: default the --device\'s memory)' },
    cost: { type: 'boolean', help: 'no GPU: count a normal and a reselection step of --synthetic (default qwen3-30b-a3b) on a counting device and estimate its time on --device; last line JSON' },
    device: { type: 'string', default: 'h100', help: '--cost: h100 | h200 | rx7900xtx | a JSON file {name, flops, bytes_per_s, gpu_bytes?}' },
    ...QUANT_FLAGS,
  },
  async (f) => {
    if (f.cost) {
      const name = f.synthetic ? String(f.synthetic) : 'qwen3-30b-a3b';
      const device = await rooflineOf(String(f.device));
      const spec = await syntheticSpec(name, num(f, 'train-layers')!);
      const r = await costModel(spec, name, device, { microbatch: num(f, 'microbatch')!, seq: num(f, 'seq') ?? 512, groupSize: num(f, 'group-size')!, expertChunk: num(f, 'expert-chunk'), fusedExperts: !f['materialized-experts'],
        gpuBytes: num(f, 'gpu-gib') !== undefined ? Math.floor(num(f, 'gpu-gib')! * 2 ** 30) : device.gpu_bytes });
      for (const line of costLines(r)) console.log(line);
      console.log(JSON.stringify(costJson(r)));
      return 0;
    }
    const gpu = await nodeGpu();
    const cpu = isCpuAdapter(gpu.info);
    const M = num(f, 'tokens') ?? (cpu ? 32 : 1024);
    const reps = num(f, 'reps')!;
    const only = f.only ? String(f.only) : null;
    const result: Record<string, unknown> = { date: new Date().toISOString(), adapter: gpu.info, cpu_adapter: cpu };
    if (f.synthetic) {
      const spec = await syntheticSpec(String(f.synthetic), num(f, 'train-layers')!);
      const o = { microbatch: num(f, 'microbatch')!, seq: num(f, 'seq') ?? (cpu ? 32 : 512), steps: num(f, 'train-steps') ?? (cpu ? 1 : 4), groupSize: num(f, 'group-size')!,
        expertChunk: num(f, 'expert-chunk'), fusedExperts: !f['materialized-experts'], gpuBytes: num(f, 'gpu-gib') !== undefined ? Math.floor(num(f, 'gpu-gib')! * 2 ** 30) : undefined };
      result.synthetic_train = { model: String(f.synthetic), ...(await syntheticTrainBench(gpu, spec, o)) };
      console.log(JSON.stringify(result, null, 2));
      return 0;
    }
    if (!only || only === 'matmul') result.matmul = await matmulBench(gpu, M, reps);
    if (!only || only === 'forward') {
      const seq = num(f, 'seq') ?? (cpu ? 64 : 512);
      const batch = 2;
      const model = await openModel(gpu, String(f.model), { quantizeExperts: quantOption(f) });
      const fwd = new Forward(gpu, model.spec, model.weights, { maxTokens: batch * seq });
      const ids = Uint32Array.from({ length: batch * seq }, (_, i) => (i * 7919) % model.spec.vocab);
      await fwd.run(ids, batch, seq);
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) await fwd.run(ids, batch, seq);
      const sec = (performance.now() - t0) / 1000 / reps;
      result.forward = { model: String(f.model), batch, seq, ms: +(sec * 1e3).toFixed(1), tokens_per_s: +((batch * seq) / sec).toFixed(1) };
    }
    if (!only || only === 'train') result.train = await trainBench(gpu, String(f.model), 2, num(f, 'train-seq') ?? (cpu ? 32 : 512), num(f, 'train-steps') ?? (cpu ? 2 : 4), quantOption(f));
    console.log(JSON.stringify(result, null, 2));
    return 0;
  },
);
