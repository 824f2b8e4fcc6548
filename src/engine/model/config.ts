// Contract: parseConfig(config.json) → ModelSpec for the registry's MoE families, accepting Hub (`rope_theta`,
// `num_experts`) and transformers-5 (`rope_parameters`, `num_local_experts`) keys with transformers' defaults.
// Generic: what differs per family comes from its adapter (families/<arch>.ts).
import { readKvHeads, readRoutedMoe } from './config-parts.ts';
import { ConfigError, UnsupportedModelError, isRecord, readBool, readInt, readNum, type RawConfig } from './config-read.ts';
import { familyAdapter, isSupportedArch, SUPPORTED_MODEL_TYPES } from './registry.ts';
import { parseRope } from './rope.ts';
import type { ExpertLayout, ModelSpec } from './spec.ts';
import { buildLayerTensors, type SpecCore } from './tensors.ts';

export { ConfigError, UnsupportedModelError } from './config-read.ts';
export { countParams, expertParamCount, type ParamCounts } from './params.ts';

export interface ParseOptions {
  /** Expert storage the spec's layer tensor lists follow (default 'per_expert', the Hub layout). */
  expertLayout?: ExpertLayout;
}

export function parseConfig(json: unknown, opts: ParseOptions = {}): ModelSpec {
  if (!isRecord(json)) throw new ConfigError('(root)', `expected a JSON object, got ${Array.isArray(json) ? 'an array' : typeof json}`);
  const cfg: RawConfig = json;
  const modelType = cfg.model_type;
  if (modelType === undefined || modelType === null) throw new ConfigError('model_type', 'missing required field "model_type"');
  if (typeof modelType !== 'string') throw new ConfigError('model_type', `field "model_type" must be a string, got ${JSON.stringify(modelType)}`);
  if (!isSupportedArch(modelType)) throw new UnsupportedModelError(modelType, SUPPORTED_MODEL_TYPES);
  const arch = modelType;
  const family = familyAdapter(arch);
  const def = family.defaults;

  const act = cfg.hidden_act ?? 'silu';
  if (act !== 'silu' && act !== 'swish') throw new ConfigError('hidden_act', `hidden_act ${JSON.stringify(act)} is not supported (only "silu")`);

  const hidden = readInt(cfg, 'hidden_size', undefined, 1, arch);
  const numLayers = readInt(cfg, 'num_hidden_layers', undefined, 1, arch);
  const vocab = readInt(cfg, 'vocab_size', undefined, 1, arch);
  const numHeads = readInt(cfg, 'num_attention_heads', undefined, 1, arch);
  const maxPos = readInt(cfg, 'max_position_embeddings', def.maxPos);
  const rope = parseRope(cfg, def.ropeTheta, maxPos, family.ropeInterleave(cfg));
  const numKvHeads = readKvHeads(cfg, numHeads, def);
  const { attention, headDim } = family.attention(cfg, { hidden, numHeads, attnBias: readBool(cfg, 'attention_bias', false), rope });
  if (attention.mla) rope.partialDim = attention.mla.qkRopeHeadDim;
  const moe = family.moe(cfg, readRoutedMoe(cfg, arch, def, family.expertWidthKey));
  const kinds = family.layerKinds(cfg, numLayers);
  const windows = family.windows(cfg, numLayers);
  const hasDense = kinds.includes('dense');
  const denseIntermediate = family.denseWidthIsExpertWidth
    ? moe.expertIntermediate
    : readInt(cfg, 'intermediate_size', hasDense ? undefined : def.intermediate, 1, 'dense MLP layers');

  const quant = cfg.quantization_config;
  const quantMethod = isRecord(quant) && typeof quant.quant_method === 'string' ? quant.quant_method : null;
  const dtype = [cfg.dtype, cfg.torch_dtype].find((x): x is string => typeof x === 'string') ?? null;

  const core: SpecCore = {
    arch, hidden, numLayers, vocab, numHeads, numKvHeads, headDim,
    rmsEps: readNum(cfg, 'rms_norm_eps', def.rmsEps),
    maxPos, rope,
    tieEmbeddings: readBool(cfg, 'tie_word_embeddings', false),
    attention, moe, denseIntermediate,
    expertLayout: opts.expertLayout ?? 'per_expert',
    mtpLayers: family.mtpLayers(cfg),
    quantization: quantMethod,
    dtype,
  };
  const layers = kinds.map((mlp, index) => ({
    index, mlp, slidingWindow: windows[index]!, tensors: buildLayerTensors(core, index, mlp, core.expertLayout),
  }));
  return { ...core, layers };
}

/** The same spec with its layer tensor lists re-derived for another expert layout. */
export function withExpertLayout(spec: ModelSpec, layout: ExpertLayout): ModelSpec {
  if (spec.expertLayout === layout) return spec;
  const core: SpecCore = { ...spec, expertLayout: layout };
  return { ...core, layers: spec.layers.map((l) => ({ ...l, tensors: buildLayerTensors(core, l.index, l.mlp, layout) })) };
}
