// Contract: typed, validated reads of raw config.json fields (absent or null → default, else a ConfigError
// naming the field) plus the errors parseConfig throws. No knowledge of any architecture here.

/** A config.json field is missing, has the wrong type, or contradicts another field. */
export class ConfigError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`config.json: ${message}`);
    this.name = 'ConfigError';
    this.field = field;
  }
}

/** config.json names a `model_type` this engine has no spec for. */
export class UnsupportedModelError extends Error {
  readonly modelType: string;
  readonly supported: readonly string[];
  constructor(modelType: string, supported: readonly string[]) {
    super(`unsupported model_type "${modelType}"; supported model types: ${supported.join(', ')}`);
    this.name = 'UnsupportedModelError';
    this.modelType = modelType;
    this.supported = supported;
  }
}

export type RawConfig = Record<string, unknown>;

const show = (v: unknown): string => (typeof v === 'string' ? `"${v}"` : JSON.stringify(v) ?? String(v));

export function isRecord(v: unknown): v is RawConfig {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value of the first present (non-null) key among `keys`; throws if two present keys disagree. */
export function pick(cfg: RawConfig, keys: readonly string[]): { key: string; value: unknown } | undefined {
  let found: { key: string; value: unknown } | undefined;
  for (const key of keys) {
    const value = cfg[key];
    if (value === undefined || value === null) continue;
    if (found && JSON.stringify(found.value) !== JSON.stringify(value)) {
      throw new ConfigError(key, `fields "${found.key}" (${show(found.value)}) and "${key}" (${show(value)}) disagree`);
    }
    found ??= { key, value };
  }
  return found;
}

type Keys = string | readonly string[];
const list = (k: Keys): readonly string[] => (typeof k === 'string' ? [k] : k);

function missing(keys: readonly string[], ctx: string): ConfigError {
  const alt = keys.length > 1 ? ` (or ${keys.slice(1).map((k) => `"${k}"`).join(', ')})` : '';
  return new ConfigError(keys[0]!, `missing required field "${keys[0]}"${alt}${ctx ? ` for ${ctx}` : ''}`);
}

/** Integer ≥ min (default 1). `def` undefined → the field is required. */
export function readInt(cfg: RawConfig, keys: Keys, def?: number, min = 1, ctx = ''): number {
  const ks = list(keys);
  const hit = pick(cfg, ks);
  if (!hit) {
    if (def === undefined) throw missing(ks, ctx);
    return def;
  }
  const v = hit.value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new ConfigError(hit.key, `field "${hit.key}" must be an integer ≥ ${min}, got ${show(v)}`);
  }
  return v;
}

/** Finite number > 0 (or ≥ 0 with allowZero). */
export function readNum(cfg: RawConfig, keys: Keys, def?: number, allowZero = false, ctx = ''): number {
  const ks = list(keys);
  const hit = pick(cfg, ks);
  if (!hit) {
    if (def === undefined) throw missing(ks, ctx);
    return def;
  }
  const v = hit.value;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (v === 0 && !allowZero)) {
    throw new ConfigError(hit.key, `field "${hit.key}" must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${show(v)}`);
  }
  return v;
}

export function readBool(cfg: RawConfig, key: string, def: boolean): boolean {
  const v = cfg[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'boolean') throw new ConfigError(key, `field "${key}" must be true or false, got ${show(v)}`);
  return v;
}

export function readStr(cfg: RawConfig, keys: Keys): string | null {
  const hit = pick(cfg, list(keys));
  if (!hit) return null;
  if (typeof hit.value !== 'string') throw new ConfigError(hit.key, `field "${hit.key}" must be a string, got ${show(hit.value)}`);
  return hit.value;
}

/** List of layer indices, each in [0, numLayers). */
export function readLayerList(cfg: RawConfig, key: string, numLayers: number): number[] {
  const v = cfg[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < numLayers)) {
    throw new ConfigError(key, `field "${key}" must be a list of layer indices in 0..${numLayers - 1}, got ${show(v)}`);
  }
  return v as number[];
}
