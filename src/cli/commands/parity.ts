// usaf parity: runs a reference's input_ids through our engine and compares every tensor the reference holds
// (hidden.i, mlp_input.i, router_logits.i, logits, loss; grad.* with --grads). Last line: one JSON verdict.

import { command, str, num } from '../command.ts';
import { nodeGpu } from '../../node/gpu.ts';
import { fileSource } from '../../node/file-source.ts';
import { openSafetensors } from '../../engine/io/safetensors.ts';
import { decodeF32, decodeInt } from '../../engine/io/dtype.ts';
import { openModel } from '../load-model.ts';
import { Forward } from '../../engine/train/forward.ts';
import { gradients } from '../../engine/train/gradients.ts';

export interface ParityResult {
  ok: boolean;
  worst: { name: string; rel_err: number };
  errors: Record<string, number>;
}

/** max|ours − ref| / max|ref| */
export function relErr(ours: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (ours.length !== ref.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ours[i]! - ref[i]!);
    num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(ref[i]!));
  }
  return den === 0 ? num : num / den;
}

export async function runParity(modelDir: string, referencePath: string, opts: { tol: number; trainFrom?: number; grads?: boolean; allGrads?: boolean; trainShared?: boolean }): Promise<ParityResult> {
  const gpu = await nodeGpu();
  const ref = await openSafetensors(fileSource(referencePath));
  const readRef = async (name: string) => decodeF32(ref.tensors.get(name)!.dtype, await ref.readTensor(name));
  const idsInfo = ref.tensors.get('input_ids');
  if (!idsInfo || idsInfo.shape.length !== 2) throw new Error(`${referencePath}: no input_ids [batch, seq] tensor`);
  const [batch, seq] = idsInfo.shape as [number, number];
  const ids = Uint32Array.from(decodeInt(idsInfo.dtype, await ref.readTensor('input_ids')) as ArrayLike<number>);

  const model = await openModel(gpu, modelDir, { trainFrom: opts.trainFrom, trainShared: opts.trainShared });
  const fwd = new Forward(gpu, model.spec, model.weights, { maxTokens: batch * seq });
  const errors: Record<string, number> = {};
  const captured = new Map<string, Float32Array>();
  const { loss } = await fwd.run(ids, batch, seq, { capture: (name, data) => void captured.set(name, data) });
  captured.set('loss', Float32Array.of(loss));
  for (const [name, data] of captured) {
    if (!ref.tensors.has(name)) continue;
    errors[name] = relErr(data, await readRef(name));
  }
  if (opts.grads || opts.allGrads) {
    const trainFrom = opts.trainFrom ?? 0;
    if (opts.allGrads && trainFrom !== 0) throw new Error('--all-grads needs --train-from 0 (frozen layers below it get no gradients)');
    const g = await gradients(gpu, model.spec, model.weights, ids, batch, seq, trainFrom, !!opts.allGrads, !!opts.trainShared);
    for (const [name, data] of g) if (ref.tensors.has('grad.' + name)) errors['grad.' + name] = relErr(data, await readRef('grad.' + name));
    const wanted = [...ref.tensors.keys()].filter((n) => n.startsWith('grad.')).map((n) => n.slice(5));
    const isTrainedExpertOrRouter = (n: string) => {
      const shared = opts.trainShared ? '|shared_experts?\\.(gate|up|down)_proj' : '';
      const m = new RegExp(`^model\\.layers\\.(\\d+)\\.(mlp|block_sparse_moe)\\.(experts\\.|gate\\.weight${shared})`).exec(n);
      return m !== null && Number(m[1]) >= trainFrom;
    };
    for (const n of wanted) if (!(('grad.' + n) in errors) && (opts.allGrads || isTrainedExpertOrRouter(n))) errors['grad.' + n] = Infinity;
  }
  const expected = [...ref.tensors.keys()].filter((n) => n !== 'input_ids' && !n.startsWith('grad.'));
  await model.ckpt.close();
  await ref.source.close?.();
  for (const n of expected) if (!(n in errors)) errors[n] = Infinity; // a reference tensor we did not produce fails
  let worst = { name: '', rel_err: -1 };
  for (const [name, e] of Object.entries(errors)) if (e > worst.rel_err) worst = { name, rel_err: e };
  return { ok: Object.values(errors).every((e) => e <= opts.tol), worst, errors };
}

export const parity = command(
  'parity',
  'compare our forward pass (and gradients) with a Hugging Face reference dump',
  {
    model: { type: 'string', help: 'model folder (config.json + safetensors)' },
    reference: { type: 'string', help: 'reference.safetensors with input_ids, hidden.i, logits, loss, grad.*' },
    'train-from': { type: 'number', env: 'TRAIN_FROM', help: 'first trained layer (for --grads)' },
    grads: { type: 'boolean', help: 'also compare gradients of expert weights and routers' },
    'all-grads': { type: 'boolean', help: 'compare gradients of every weight' },
    'train-shared': { type: 'boolean', env: 'TRAIN_SHARED', help: 'with --grads: also the shared experts of the trained layers (f32, as usaf train --train-shared)' },
    tol: { type: 'number', default: 1e-3, help: 'max relative error per tensor' },
  },
  async (f) => {
    const r = await runParity(str(f, 'model'), str(f, 'reference'), { tol: num(f, 'tol')!, trainFrom: num(f, 'train-from'), grads: !!f.grads, allGrads: !!f['all-grads'], trainShared: !!f['train-shared'] });
    for (const [name, e] of Object.entries(r.errors)) console.error(`${e <= num(f, 'tol')! ? 'ok  ' : 'FAIL'} ${name.padEnd(28)} rel_err ${e.toExponential(3)}`);
    console.log(JSON.stringify(r));
    return r.ok ? 0 : 1;
  },
);
