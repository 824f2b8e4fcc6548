// Contract: checkpoint tensor names + shapes predicted from a ModelSpec (per layer and global), and the
// expert storage layout detected from a checkpoint's tensor names. Pure functions, no I/O.
import { familyAdapter } from './registry.ts';
import type { ExpertLayout, ModelSpec, TensorEntry, TensorRole } from './spec.ts';

/** The spec fields tensor naming depends on (everything but the per-layer lists). */
export type SpecCore = Omit<ModelSpec, 'layers'>;

const FUSED_RE = /\.experts\.(gate_up_proj|down_proj)$/;
const PER_EXPERT_RE = /\.experts\.\d+\./;
/** A stored 4-bit checkpoint's expert buffers (quant/stored-q4.ts). */
const Q4_RE = /\.experts\.(gate_up|down)\.q4$/;

/** 'fused' when names hold `…experts.gate_up_proj`, 'per_expert' when `…experts.<e>.…`; throws if neither or both. */
export function detectExpertLayout(names: Iterable<string>): ExpertLayout {
  let fused = false;
  let perExpert = false;
  let q4Seen = false;
  for (const n of names) {
    if (Q4_RE.test(n)) q4Seen = true;
    else if (FUSED_RE.test(n)) fused = true;
    else if (PER_EXPERT_RE.test(n)) perExpert = true;
  }
  if (fused && perExpert) throw new Error('checkpoint mixes fused (experts.gate_up_proj) and per-expert (experts.N.*) expert tensors');
  if (fused) return 'fused';
  if (perExpert) return 'per_expert';
  if (q4Seen) throw new Error('a stored 4-bit checkpoint (…experts.gate_up.q4): its expert layout is in the shards\' metadata (quant/stored-q4.ts storedQ4Info)');
  throw new Error('no routed-expert tensors found (expected "…mlp.experts.N.gate_proj.weight", "…block_sparse_moe.experts.N.w1.weight" or "…mlp.experts.gate_up_proj")');
}

/** Tensors of layer L in `layout` (default: the spec's own). */
export function layerTensors(spec: ModelSpec, L: number, layout: ExpertLayout = spec.expertLayout): TensorEntry[] {
  const layer = spec.layers[L];
  if (!layer) throw new RangeError(`layer ${L} out of range 0..${spec.numLayers - 1}`);
  return buildLayerTensors(spec, L, layer.mlp, layout);
}

/** Embedding, final norm and (unless tied) the LM head. */
export function globalTensors(spec: SpecCore): TensorEntry[] {
  const out: TensorEntry[] = [
    { role: 'embed', name: 'model.embed_tokens.weight', shape: [spec.vocab, spec.hidden] },
    { role: 'final_norm', name: 'model.norm.weight', shape: [spec.hidden] },
  ];
  if (!spec.tieEmbeddings) out.push({ role: 'lm_head', name: 'lm_head.weight', shape: [spec.vocab, spec.hidden] });
  return out;
}

/** Every tensor of the model: globals then layers 0..N-1. */
export function allTensors(spec: ModelSpec, layout: ExpertLayout = spec.expertLayout): TensorEntry[] {
  const out = globalTensors(spec);
  for (let L = 0; L < spec.numLayers; L++) out.push(...layerTensors(spec, L, layout));
  return out;
}

/** Layer tensors from the core spec; used while the spec's layer list is being built. */
export function buildLayerTensors(s: SpecCore, L: number, mlp: 'moe' | 'dense', layout: ExpertLayout): TensorEntry[] {
  const p = `model.layers.${L}.`;
  const out: TensorEntry[] = [
    { role: 'input_norm', name: `${p}input_layernorm.weight`, shape: [s.hidden] },
    { role: 'post_attn_norm', name: `${p}post_attention_layernorm.weight`, shape: [s.hidden] },
  ];
  out.push(...attentionTensors(s, `${p}self_attn.`));
  if (mlp === 'dense') out.push(...swiglu(s.hidden, s.denseIntermediate, `${p}mlp.`, 'dense'));
  else out.push(...moeTensors(s, p, layout));
  return out;
}

function attentionTensors(s: SpecCore, p: string): TensorEntry[] {
  const a = s.attention;
  const H = s.hidden;
  const out: TensorEntry[] = [];
  const add = (role: TensorRole, name: string, shape: number[]) => out.push({ role, name: p + name, shape });
  if (a.kind === 'mla') {
    const m = a.mla!;
    const qk = m.qkNopeHeadDim + m.qkRopeHeadDim;
    if (m.qLoraRank === null) {
      add('attn.q', 'q_proj.weight', [s.numHeads * qk, H]);
      if (a.bias) add('attn.q_bias', 'q_proj.bias', [s.numHeads * qk]);
    } else {
      add('attn.q_a', 'q_a_proj.weight', [m.qLoraRank, H]);
      if (a.bias) add('attn.q_a_bias', 'q_a_proj.bias', [m.qLoraRank]);
      add('attn.q_a_norm', 'q_a_layernorm.weight', [m.qLoraRank]);
      add('attn.q_b', 'q_b_proj.weight', [s.numHeads * qk, m.qLoraRank]);
    }
    add('attn.kv_a', 'kv_a_proj_with_mqa.weight', [m.kvLoraRank + m.qkRopeHeadDim, H]);
    if (a.bias) add('attn.kv_a_bias', 'kv_a_proj_with_mqa.bias', [m.kvLoraRank + m.qkRopeHeadDim]);
    add('attn.kv_a_norm', 'kv_a_layernorm.weight', [m.kvLoraRank]);
    add('attn.kv_b', 'kv_b_proj.weight', [s.numHeads * (m.qkNopeHeadDim + m.vHeadDim), m.kvLoraRank]);
    add('attn.o', 'o_proj.weight', [H, s.numHeads * m.vHeadDim]);
    if (a.outBias) add('attn.o_bias', 'o_proj.bias', [H]);
    return out;
  }
  const q = s.numHeads * s.headDim;
  const kv = s.numKvHeads * s.headDim;
  add('attn.q', 'q_proj.weight', [q, H]);
  add('attn.k', 'k_proj.weight', [kv, H]);
  add('attn.v', 'v_proj.weight', [kv, H]);
  add('attn.o', 'o_proj.weight', [H, q]);
  if (a.bias) {
    add('attn.q_bias', 'q_proj.bias', [q]);
    add('attn.k_bias', 'k_proj.bias', [kv]);
    add('attn.v_bias', 'v_proj.bias', [kv]);
  }
  if (a.outBias) add('attn.o_bias', 'o_proj.bias', [H]);
  if (a.qkNorm === 'per_head') {
    add('attn.q_norm', 'q_norm.weight', [s.headDim]);
    add('attn.k_norm', 'k_norm.weight', [s.headDim]);
  } else if (a.qkNorm === 'full') {
    add('attn.q_norm', 'q_norm.weight', [q]);
    add('attn.k_norm', 'k_norm.weight', [kv]);
  }
  return out;
}

function moeTensors(s: SpecCore, p: string, layout: ExpertLayout): TensorEntry[] {
  const { numExperts: E, expertIntermediate: IE, sharedExperts } = s.moe;
  const H = s.hidden;
  const naming = familyAdapter(s.arch).naming;
  const m = `${p}${naming.moeBlock(layout)}.`;
  const out: TensorEntry[] = [{ role: 'router', name: `${m}gate.weight`, shape: [E, H] }];
  if (s.moe.hasCorrectionBias) out.push({ role: 'router.bias_correction', name: `${m}gate.e_score_correction_bias`, shape: [E] });
  if (layout === 'fused') {
    out.push({ role: 'expert.gate_up_fused', name: `${m}experts.gate_up_proj`, shape: [E, 2 * IE, H] });
    out.push({ role: 'expert.down_fused', name: `${m}experts.down_proj`, shape: [E, H, IE] });
  } else {
    const [g, u, d] = naming.expertProjections(layout);
    for (let e = 0; e < E; e++) {
      const x = `${m}experts.${e}.`;
      out.push({ role: 'expert.gate', name: `${x}${g}.weight`, shape: [IE, H], expert: e });
      out.push({ role: 'expert.up', name: `${x}${u}.weight`, shape: [IE, H], expert: e });
      out.push({ role: 'expert.down', name: `${x}${d}.weight`, shape: [H, IE], expert: e });
    }
  }
  if (sharedExperts) {
    if (!naming.sharedBlock) throw new Error(`${s.arch}: the spec has shared experts but the family names no shared block`);
    const sp = `${m}${naming.sharedBlock}.`;
    out.push(...swiglu(H, sharedExperts.intermediate, sp, 'shared'));
    if (sharedExperts.gated) out.push({ role: 'shared.expert_gate', name: `${m}shared_expert_gate.weight`, shape: [1, H] });
  }
  return out;
}

function swiglu(H: number, I: number, p: string, kind: 'dense' | 'shared'): TensorEntry[] {
  return [
    { role: `${kind}.gate`, name: `${p}gate_proj.weight`, shape: [I, H] },
    { role: `${kind}.up`, name: `${p}up_proj.weight`, shape: [I, H] },
    { role: `${kind}.down`, name: `${p}down_proj.weight`, shape: [H, I] },
  ];
}
