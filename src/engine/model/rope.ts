// Contract: RoPE settings from either key style — Hub files (`rope_theta` + `rope_scaling`) or transformers 5
// (`rope_parameters: {rope_theta, rope_type, …}`) — normalized to RopeSpec, plus the YaRN mscale formula.
import { ConfigError, isRecord, readNum, readStr, type RawConfig } from './config-read.ts';
import type { RopeScaling, RopeSpec } from './spec.ts';

const SCALING_TYPES = ['linear', 'dynamic', 'yarn'] as const;

/** Nested dict whose keys are prefixed with its source field, so errors name e.g. "rope_scaling.factor". */
function nested(cfg: RawConfig, key: string): { rec: RawConfig; src: string } | null {
  const v = cfg[key];
  if (v === undefined || v === null) return null;
  if (!isRecord(v)) throw new ConfigError(key, `field "${key}" must be an object, got ${JSON.stringify(v)}`);
  // transformers 5 may nest per layer type ({full_attention: {...}}); these models only use full attention.
  const inner = isRecord(v.full_attention) ? v.full_attention : v;
  const src = inner === v ? key : `${key}.full_attention`;
  return { rec: Object.fromEntries(Object.entries(inner).map(([k, x]) => [`${src}.${k}`, x])), src };
}

export function parseRope(cfg: RawConfig, defaultTheta: number, maxPos: number, interleave: boolean): RopeSpec {
  const { rec: rp, src } = nested(cfg, 'rope_parameters') ?? nested(cfg, 'rope_scaling') ?? { rec: {}, src: 'rope_scaling' };
  const k = (name: string) => `${src}.${name}`;
  const theta = readNum(rp, k('rope_theta'), readNum(cfg, 'rope_theta', defaultTheta));
  const type = readStr(rp, [k('rope_type'), k('type')]) ?? 'default';
  if (type === 'default') return { theta, interleave, scaling: null };
  if (!(SCALING_TYPES as readonly string[]).includes(type)) {
    const typeKey = rp[k('rope_type')] != null ? k('rope_type') : k('type');
    throw new ConfigError(typeKey, `RoPE type "${type}" is not supported (supported: default, ${SCALING_TYPES.join(', ')})`);
  }
  const scaling: RopeScaling = {
    type: type as RopeScaling['type'],
    factor: readNum(rp, k('factor'), undefined, false, `RoPE type "${type}"`),
    originalMaxPos: readNum(rp, k('original_max_position_embeddings'), readNum(cfg, 'original_max_position_embeddings', maxPos)),
    betaFast: readNum(rp, k('beta_fast'), 32),
    betaSlow: readNum(rp, k('beta_slow'), 1),
    mscale: readNum(rp, k('mscale'), 1, true),
    mscaleAllDim: readNum(rp, k('mscale_all_dim'), 0, true),
  };
  return { theta, interleave, scaling };
}

/** YaRN magnitude correction: 1 for factor ≤ 1, else 0.1·m·ln(factor) + 1. */
export function yarnMscale(factor: number, m = 1): number {
  return factor <= 1 ? 1 : 0.1 * m * Math.log(factor) + 1;
}
