// Dense gradients of one microbatch by checkpoint name (for `usaf parity --grads` and tests): routed-expert weights and
// routers of the trained layers (plus their shared experts with `shared`, as trainShared trains them); with `all`, every
// weight (frozen ones included, embedding and lm_head on the CPU).

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer, readF32, readU32 } from '../gpu/buffers.ts';
import type { ModelSpec } from '../model/spec.ts';
import { globalTensors } from '../model/tensors.ts';
import type { ModelWeights } from './weights.ts';
import { TrainGraph } from './graph.ts';
import { IGNORE, nextTokenTargets } from './forward.ts';
import type { ExpertGradMode, FrozenGrads } from './backward.ts';
import { sharedExpertTensors } from './shared-expert.ts';

export async function gradients(gpu: GpuContext, spec: ModelSpec, weights: ModelWeights, ids: Uint32Array, batch: number, seq: number, trainFrom: number, all: boolean, shared = false): Promise<Map<string, Float32Array>> {
  const T = batch * seq;
  const g = new TrainGraph(gpu, spec, weights, trainFrom, T);
  const zero = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind: 'workspace' }); // new buffers are zero
  const { numExperts: E, expertIntermediate: IE } = spec.moe;
  const H = spec.hidden;
  const modes: ExpertGradMode[] = [];
  const dRouters: (GPUBuffer | null)[] = [];
  for (const L of g.trained) {
    const moe = spec.layers[L]!.mlp === 'moe';
    modes.push(moe ? { kind: 'dense', dGate: zero('dGate', E * IE * H), dUp: zero('dUp', E * IE * H), dDown: zero('dDown', E * H * IE), accumulate: true } : { kind: 'none' });
    dRouters.push(moe ? zero('dRouter', E * H) : null);
  }
  const frozen: FrozenGrads = new Map();
  if (all) {
    for (const L of g.trained) {
      for (const e of spec.layers[L]!.tensors) {
        if (e.role.startsWith('expert.') || e.role === 'router' || e.role === 'router.bias_correction') continue; // the bias has no gradient
        frozen.set(e.name, zero(e.name, e.shape.reduce((a, b) => a * b, 1)));
      }
    }
    frozen.set('model.norm.weight', zero('dnorm', H));
  } else if (shared) {
    for (const L of g.trained) for (const e of sharedExpertTensors(spec, L)) if (e.role !== 'shared.expert_gate') frozen.set(e.name, zero(e.name, e.shape.reduce((a, b) => a * b, 1)));
  }
  const targets = nextTokenTargets(ids, batch, seq);
  await g.pass(ids, batch, seq, { targets, dRouters, modes, frozenGrads: frozen, inputGrad: all }); // `all`: dResid gives the embedding's gradient

  const out = new Map<string, Float32Array>();
  for (const [i, L] of g.trained.entries()) {
    const mode = modes[i]!;
    if (mode.kind !== 'dense') continue;
    const names = spec.layers[L]!.tensors;
    const routerName = names.find((e) => e.role === 'router')!.name;
    out.set(routerName, await readF32(gpu, dRouters[i]!));
    const [gate, up, down] = [await readF32(gpu, mode.dGate as GPUBuffer), await readF32(gpu, mode.dUp as GPUBuffer), await readF32(gpu, mode.dDown as GPUBuffer)];
    const per = IE * H;
    for (const e of names) {
      const x = e.expert!;
      if (e.role === 'expert.gate') out.set(e.name, gate.slice(x * per, (x + 1) * per));
      else if (e.role === 'expert.up') out.set(e.name, up.slice(x * per, (x + 1) * per));
      else if (e.role === 'expert.down') out.set(e.name, down.slice(x * per, (x + 1) * per));
      else if (e.role === 'expert.gate_up_fused') {
        const fused = new Float32Array(E * 2 * per);
        for (let k = 0; k < E; k++) {
          fused.set(gate.subarray(k * per, (k + 1) * per), 2 * k * per);
          fused.set(up.subarray(k * per, (k + 1) * per), (2 * k + 1) * per);
        }
        out.set(e.name, fused);
      } else if (e.role === 'expert.down_fused') out.set(e.name, down);
    }
  }
  if (all || shared) for (const [name, buf] of frozen) out.set(name, await readF32(gpu, buf));
  if (all) {
    await cpuEmbeddingAndHeadGrads(gpu, spec, g, ids, targets, T, out);
  }
  return out;
}

/**
 * d embed (scatter of the residual gradient) and d lm_head (dlogits^T · final hidden), computed on the CPU. As torch's
 * nn.Embedding(padding_idx) does, the padding token's row gets no gradient: transformers zero-initializes it, so an
 * all-zero embedding row is taken as the padding row (the spec does not carry pad_token_id).
 */
async function cpuEmbeddingAndHeadGrads(gpu: GpuContext, spec: ModelSpec, g: TrainGraph, ids: Uint32Array, targets: Uint32Array, T: number, out: Map<string, Float32Array>): Promise<void> {
  const { hidden: H, vocab: V } = spec;
  const dEmb = new Float32Array(V * H);
  const dRes = await readF32(gpu, g.work.dResid, 0, T * H);
  const padRows = await zeroEmbeddingRows(gpu, g, new Set(ids));
  for (let t = 0; t < T; t++) if (!padRows.has(ids[t]!)) for (let h = 0; h < H; h++) dEmb[ids[t]! * H + h] += dRes[t * H + h]!;
  const logits = await g.fwd.logits(T);
  const fh = await readF32(gpu, g.fwd.finalH, 0, T * H);
  let valid = 0;
  for (const t of targets) if (t !== IGNORE) valid++;
  const dHead = new Float64Array(V * H);
  for (let t = 0; t < T; t++) {
    if (targets[t] === IGNORE) continue;
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[t * V + v]!);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[t * V + v]! - mx);
    for (let v = 0; v < V; v++) {
      const d = (Math.exp(logits[t * V + v]! - mx) / sum - (v === targets[t] ? 1 : 0)) / valid;
      for (let h = 0; h < H; h++) dHead[v * H + h] += d * fh[t * H + h]!;
    }
  }
  const names = new Map(globalTensors(spec).map((e) => [e.role, e.name]));
  if (spec.tieEmbeddings) {
    for (let i = 0; i < dEmb.length; i++) dEmb[i] += dHead[i]!;
  } else out.set(names.get('lm_head')!, Float32Array.from(dHead));
  out.set(names.get('embed')!, dEmb);
}

/** Token ids among `ids` whose embedding row is all zeros (the padding row of nn.Embedding(padding_idx)). */
async function zeroEmbeddingRows(gpu: GpuContext, g: TrainGraph, ids: Set<number>): Promise<Set<number>> {
  const e = g.fwd.w.embed;
  if (!e) throw new Error('embedding gradients need the embedding on the GPU (it is streamed)');
  const H = g.spec.hidden;
  const words = await readU32(gpu, e.buf); // small models only, as the rest of this file
  // magnitude bits of element i (f32, or bf16 packed two per u32 with the even element in the low half)
  const mag = (i: number) => (e.dtype === 'f32' ? words[i]! & 0x7fffffff : (i & 1 ? words[i >> 1]! >>> 16 : words[i >> 1]! & 0xffff) & 0x7fff);
  const out = new Set<number>();
  for (const id of ids) {
    let zero = true;
    for (let h = 0; h < H && zero; h++) zero = mag(e.offset + id * H + h) === 0;
    if (zero) out.add(id);
  }
  return out;
}
