// usaf quant-report: relative Frobenius error ‖W − Ŵ‖/‖W‖ over all routed-expert weights of a model, for plain min-max
// 4-bit rounding (the seed's quantizer) and for HQQ (ours), quantized on the GPU; per layer with --per-tensor. With --data:
// the PPL over that set's windows with the experts as stored and with 4-bit HQQ experts (the engine's fused q4 path).
import { command, num, str } from '../command.ts';
import { nodeGpu } from '../../node/gpu.ts';
import { openCheckpoint } from '../../engine/io/checkpoint.ts';
import { decodeF32 } from '../../engine/io/dtype.ts';
import { withExpertLayout } from '../../engine/model/config.ts';
import { detectExpertLayout, layerTensors } from '../../engine/model/tensors.ts';
import type { ModelSpec, TensorEntry } from '../../engine/model/spec.ts';
import type { Checkpoint } from '../../engine/io/checkpoint.ts';
import { quantReport, type QuantReportTensor } from '../../engine/quant/report.ts';
import { readWeight } from '../../engine/train/weights.ts';
import { nodeFolder } from '../../node/folder.ts';
import { openModel, readSpec } from '../load-model.ts';
import { tokenizeFile, windowCount } from '../dataset.ts';
import { destroyWeights, evalWindows } from '../eval-windows.ts';

/** Routed experts of each MoE layer as one [E·N, K] tensor per role (gate, up, down), read one layer at a time. */
async function* expertTensors(spec: ModelSpec, ckpt: Checkpoint): AsyncGenerator<QuantReportTensor> {
  for (let L = 0; L < spec.numLayers; L++) {
    if (spec.layers[L]!.mlp !== 'moe') continue;
    const byRole = new Map<string, TensorEntry[]>();
    for (const e of layerTensors(spec, L)) if (e.role.startsWith('expert.')) byRole.set(e.role, [...(byRole.get(e.role) ?? []), e]);
    for (const [role, entries] of byRole) {
      const parts: Float32Array[] = [];
      for (const e of entries) {
        const { dtype, bytes } = await readWeight(ckpt, e, spec.quantization);
        parts.push(decodeF32(dtype, bytes));
      }
      const K = entries[0]!.shape[entries[0]!.shape.length - 1]!;
      const data = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let at = 0;
      for (const p of parts) (data.set(p, at), (at += p.length));
      yield { name: `layers.${L}.${role}`, data, shape: [data.length / K, K] };
    }
  }
}

export const quantReportCmd = command(
  'quant-report',
  '4-bit quantization error of the routed experts: min-max rounding vs HQQ (JSON)',
  {
    model: { type: 'string', help: 'model folder' },
    'group-size': { type: 'number', default: 128, env: 'GROUP_SIZE', help: 'weights per quantization group (multiple of 8)' },
    'per-tensor': { type: 'boolean', help: 'also list every layer and role' },
    data: { type: 'string', help: 'also the PPL on this set (e.g. the held-out JSONL), unquantized vs 4-bit experts' },
    seq: { type: 'number', default: 512, env: 'SEQ', help: 'window length in tokens (with --data)' },
    batch: { type: 'number', default: 2, help: 'windows per forward pass (with --data)' },
    'max-windows': { type: 'number', help: 'with --data: only the first N windows' },
  },
  async (f) => {
    const dir = str(f, 'model');
    let spec = await readSpec(dir);
    const ckpt = await openCheckpoint(nodeFolder(dir));
    const layout = detectExpertLayout(ckpt.tensors.keys());
    if (layout !== spec.expertLayout) spec = withExpertLayout(spec, layout);
    const gpu = await nodeGpu();
    const t0 = performance.now();
    const groupSize = num(f, 'group-size')!;
    const r = await quantReport(expertTensors(spec, ckpt), { gpu, groupSize });
    let ppl: Record<string, unknown> | undefined;
    if (typeof f.data === 'string' && f.data) {
      const seq = num(f, 'seq')!;
      const batch = num(f, 'batch')!;
      const ds = await tokenizeFile(dir, f.data);
      const total = windowCount(ds.all, seq);
      const windows = Math.min(total, num(f, 'max-windows') ?? total);
      const at = async (quantizeExperts?: { groupSize: number }) => {
        const m = await openModel(gpu, dir, { quantizeExperts });
        try {
          return await evalWindows(gpu, m.spec, m.weights, ds.all, { seq, batch, windows, label: quantizeExperts ? 'eval (4-bit experts)' : 'eval' });
        } finally {
          destroyWeights(m.weights);
        }
      };
      const base = await at();
      const q4 = await at({ groupSize });
      ppl = { data: f.data, seq, windows, windows_total: total, tokens_scored: base.tokens, unquantized: Math.exp(base.loss), q4_hqq: Math.exp(q4.loss), ratio: Math.exp(q4.loss - base.loss) };
    }
    const out = {
      model: dir,
      arch: spec.arch,
      group_size: r.groupSize,
      expert_weights: r.total.numel,
      rel_frobenius_error: { minmax: r.total.minmax, hqq: r.total.hqq },
      hqq_lower: r.total.hqq < r.total.minmax,
      skipped: r.skipped,
      ...(ppl ? { ppl } : {}),
      ...(f['per-tensor'] ? { tensors: r.tensors } : {}),
      sec: +((performance.now() - t0) / 1000).toFixed(1),
    };
    console.log(JSON.stringify(out));
    return 0;
  },
);
