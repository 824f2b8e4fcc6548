// Shared experts (every token, beside the routed ones): DeepSeek-V3 adds shared_experts(x) as is, Qwen2-MoE adds
// sigmoid(shared_expert_gate · x) · shared_expert(x). Forward and backward side by side; weight grads += by checkpoint name.
//
// Legend: T tokens, H hidden, IS shared-expert width (all shared experts fused into one SwiGLU MLP).

import type { GpuContext } from '../gpu/device.ts';
import { createBuffer } from '../gpu/buffers.ts';
import type { Encoder } from '../gpu/encoder.ts';
import type { ModelSpec, TensorEntry } from '../model/spec.ts';
import { linear, linearBackInput, linearBackWeight, type LayerWeights } from './weights.ts';
import { addInPlace, sigmoidGate, sigmoidGateBackward, siluMul, siluMulBackward } from '../ops/elementwise.ts';

/**
 * Layer L's shared-expert weights (gate/up/down, and Qwen2-MoE's shared_expert_gate), by checkpoint name: the names whose
 * f32 buffers, put in layerBackward's FrozenGrads map, receive their dense gradients (+=) to train them. [] when none.
 */
export function sharedExpertTensors(spec: ModelSpec, L: number): TensorEntry[] {
  return spec.layers[L]!.tensors.filter((e) => e.role.startsWith('shared.'));
}

/** Forward activations of the shared MLP, kept for its backward. */
export class SharedActs {
  readonly g: GPUBuffer; // [T, IS]  gate_proj output
  readonly u: GPUBuffer; // [T, IS]  up_proj output
  readonly a: GPUBuffer; // [T, IS]  silu(g) · u
  readonly y: GPUBuffer | null; // [T, H]  down_proj output (gated only)
  readonly gate: GPUBuffer | null; // [T]  shared_expert_gate logit (gated only)

  constructor(gpu: GpuContext, spec: ModelSpec, T: number, kind = 'activations') {
    const sh = spec.moe.sharedExperts!;
    const f = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind });
    this.g = f('shared.g', T * sh.intermediate);
    this.u = f('shared.u', T * sh.intermediate);
    this.a = f('shared.a', T * sh.intermediate);
    this.y = sh.gated ? f('shared.y', T * spec.hidden) : null;
    this.gate = sh.gated ? f('shared.gate', T) : null;
  }
}

/** Backward workspace of the shared MLP. */
export class SharedWork {
  readonly dG: GPUBuffer; // [T, IS]
  readonly dU: GPUBuffer; // [T, IS]
  readonly dA: GPUBuffer; // [T, IS]
  readonly dY: GPUBuffer | null; // [T, H]  (gated only)
  readonly dGate: GPUBuffer | null; // [T]  (gated only)

  constructor(gpu: GpuContext, spec: ModelSpec, T: number) {
    const sh = spec.moe.sharedExperts!;
    const f = (label: string, n: number) => createBuffer(gpu, { label, size: n * 4, kind: 'workspace' });
    this.dG = f('dShared.g', T * sh.intermediate);
    this.dU = f('dShared.u', T * sh.intermediate);
    this.dA = f('dShared.a', T * sh.intermediate);
    this.dY = sh.gated ? f('dShared.y', T * spec.hidden) : null;
    this.dGate = sh.gated ? f('dShared.gate', T) : null;
  }
}

/**
 * out [T, H] = h + routed + shared(hn): on entry `out` holds nothing needed (the layer input, already consumed), `h` the
 * post-attention residual [T, H], `routed` the routed experts' sum [T, H]; hn [T, H] is the MLP input.
 */
export function sharedForward(enc: Encoder, spec: ModelSpec, lw: LayerWeights, sa: SharedActs, out: GPUBuffer, h: GPUBuffer, routed: GPUBuffer, hn: GPUBuffer, T: number): void {
  const t = lw.t;
  const H = spec.hidden;
  const IS = spec.moe.sharedExperts!.intermediate;
  linear(enc, sa.g, hn, t['shared.gate']!, undefined, T);
  linear(enc, sa.u, hn, t['shared.up']!, undefined, T);
  siluMul(enc, sa.a, sa.g, sa.u, T * IS);
  if (sa.y) {
    // Qwen2-MoE: out = sigmoid(gate · hn) · (a · Wd^T) + h + routed
    linear(enc, sa.y, sa.a, t['shared.down']!, undefined, T);
    linear(enc, sa.gate!, hn, t['shared.expert_gate']!, undefined, T);
    sigmoidGate(enc, out, sa.gate!, sa.y, T, H);
    addInPlace(enc, out, h, T * H);
  } else {
    // DeepSeek: out = h + routed + a · Wd^T
    enc.copy(h, 0, out, 0, T * H * 4);
    linear(enc, out, sa.a, t['shared.down']!, undefined, T, true);
  }
  addInPlace(enc, out, routed, T * H);
}

/**
 * Backward of the shared MLP given dOut [T, H] (the MLP output's gradient): dHn [T, H] += its input gradient (none when
 * dHn is null: the weight gradients only).
 * Weight grads += into grads.get(checkpoint name) where present (frozen-weight parity, or trained shared experts).
 */
export function sharedBackward(
  enc: Encoder,
  spec: ModelSpec,
  L: number,
  lw: LayerWeights,
  sa: SharedActs,
  sw: SharedWork,
  dHn: GPUBuffer | null,
  dOut: GPUBuffer,
  hn: GPUBuffer,
  T: number,
  grads: Map<string, GPUBuffer> | null,
): void {
  const t = lw.t;
  const H = spec.hidden;
  const IS = spec.moe.sharedExperts!.intermediate;
  const name = (role: string) => spec.layers[L]!.tensors.find((e) => e.role === role)!.name;
  const g = (role: string) => grads?.get(name(role));
  let dY = dOut;
  if (sa.y) {
    sigmoidGateBackward(enc, sw.dGate!, sw.dY!, dOut, sa.gate!, sa.y, T, H);
    dY = sw.dY!;
    if (dHn) linearBackInput(enc, dHn, sw.dGate!, t['shared.expert_gate']!, T, true);
    linearBackWeight(enc, g('shared.expert_gate'), sw.dGate!, hn, t['shared.expert_gate']!, T);
  }
  linearBackInput(enc, sw.dA, dY, t['shared.down']!, T, false);
  linearBackWeight(enc, g('shared.down'), dY, sa.a, t['shared.down']!, T);
  siluMulBackward(enc, sw.dG, sw.dU, sw.dA, sa.g, sa.u, T * IS);
  if (dHn) {
    linearBackInput(enc, dHn, sw.dG, t['shared.gate']!, T, true);
    linearBackInput(enc, dHn, sw.dU, t['shared.up']!, T, true);
  }
  linearBackWeight(enc, g('shared.gate'), sw.dG, hn, t['shared.gate']!, T);
  linearBackWeight(enc, g('shared.up'), sw.dU, hn, t['shared.up']!, T);
}
