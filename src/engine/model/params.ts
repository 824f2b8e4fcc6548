// Contract: parameter counts of a ModelSpec, summed from the tensor list it predicts (so they match the
// checkpoint element for element), split by kind, plus the per-token active count of a routed forward pass.
import type { ModelSpec, TensorEntry } from './spec.ts';
import { globalTensors, layerTensors } from './tensors.ts';

export interface ParamCounts {
  /** Every tensor of the checkpoint (excluding DeepSeek MTP layers). */
  total: number;
  /** All routed-expert weights, all layers. */
  expert: number;
  /** Routed-expert weights of one MoE layer (E · 3 · H · IE). */
  perLayerExpert: number;
  /** Router weights (+ DeepSeek e_score_correction_bias), all layers. */
  router: number;
  /** Shared experts incl. Qwen2-MoE's shared_expert_gate, all layers. */
  shared: number;
  /** Dense MLP layers. */
  dense: number;
  /** Attention projections, their biases and q/k/MLA norms, all layers. */
  attention: number;
  /** Input / post-attention / final RMSNorm weights. */
  norms: number;
  /** Token embedding (V · H). */
  embedding: number;
  /** LM head (V · H), 0 when tied to the embedding. */
  lmHead: number;
  /** Parameters one token passes through: everything except the unselected routed experts (K of E per MoE layer). */
  active: number;
}

const size = (t: TensorEntry): number => t.shape.reduce((a, b) => a * b, 1);

/** Parameters of one routed expert: gate + up + down = 3 · H · IE. */
export function expertParamCount(spec: ModelSpec): number {
  return 3 * spec.hidden * spec.moe.expertIntermediate;
}

export function countParams(spec: ModelSpec): ParamCounts {
  const c: ParamCounts = {
    total: 0, expert: 0, perLayerExpert: 0, router: 0, shared: 0, dense: 0,
    attention: 0, norms: 0, embedding: 0, lmHead: 0, active: 0,
  };
  for (const t of globalTensors(spec)) {
    const n = size(t);
    if (t.role === 'embed') c.embedding += n;
    else if (t.role === 'lm_head') c.lmHead += n;
    else c.norms += n;
  }
  let moeLayers = 0;
  for (const layer of spec.layers) {
    if (layer.mlp === 'moe') moeLayers++;
    for (const t of layerTensors(spec, layer.index)) {
      const n = size(t);
      const r = t.role;
      if (r.startsWith('expert.')) c.expert += n;
      else if (r.startsWith('router')) c.router += n;
      else if (r.startsWith('shared.')) c.shared += n;
      else if (r.startsWith('dense.')) c.dense += n;
      else if (r.startsWith('attn.')) c.attention += n;
      else c.norms += n;
    }
  }
  c.perLayerExpert = spec.moe.numExperts * expertParamCount(spec);
  c.total = c.expert + c.router + c.shared + c.dense + c.attention + c.norms + c.embedding + c.lmHead;
  c.active = c.total - c.expert + moeLayers * spec.moe.topK * expertParamCount(spec);
  return c;
}
