// Contract: settings <-> URL hash `#p=1.<code>:<value>,...` carrying only the values that differ from the defaults.
// Decoding treats the hash as hostile: size cap, strict alphabet, known codes only, typed and range-checked; never evaluated.
//
// Grammar (version 1):  hash := "#p=1." [pair ("," pair)*]   pair := code ":" value   code := [a-z]{2}
//   value := number ("2e-3", "0.01", "300") | "1" / "0" for on/off | "a" for auto
// Example: #p=1.st:300,lr:2e-3,qe:1

import { checkValue, DEFAULTS, SETTING_BY_CODE, SETTINGS, type SettingSpec, type Settings } from './schema.ts';

export const HASH_PREFIX = '#p=';
export const CODEC_VERSION = 1;
/** Longest hash accepted (characters, before any decoding). */
export const MAX_HASH_LENGTH = 2048;

const ALPHABET = /^[a-z0-9.,:+-]*$/i;
const INT_TEXT = /^-?\d{1,16}$/;
const NUMBER_TEXT = /^-?(?:\d{1,20}(?:\.\d{0,20})?|\.\d{1,20})(?:e[+-]?\d{1,3})?$/i;

// ---------------------------------------------------------------------------------------------
// Encode

/** Shortest exact text of a finite number: "2e-4" rather than "0.0002", "300" rather than "3e+2". */
export function formatNumber(x: number): string {
  const plain = String(x);
  const exp = x.toExponential().replace('e+', 'e');
  return exp.length < plain.length ? exp : plain;
}

function encodeValue(spec: SettingSpec, value: unknown): string {
  if (spec.kind === 'bool') return value ? '1' : '0';
  if (value === null) return 'a';
  return spec.kind === 'number' ? formatNumber(value as number) : String(value);
}

/** `#p=1.` followed by the non-default settings in table order. */
export function encodePresetHash(settings: Settings): string {
  const pairs: string[] = [];
  for (const spec of SETTINGS) {
    const v = settings[spec.key];
    if (v !== spec.default) pairs.push(`${spec.code}:${encodeValue(spec, v)}`);
  }
  return `${HASH_PREFIX}${CODEC_VERSION}.${pairs.join(',')}`;
}

// ---------------------------------------------------------------------------------------------
// Decode

export type HashResult =
  | { ok: true; settings: Settings; /** settings the link changed from the defaults */ changed: string[] }
  | { ok: false; error: string };

function parseValue(spec: SettingSpec, text: string): { value: unknown } | { error: string } {
  switch (spec.kind) {
    case 'bool':
      if (text === '1') return { value: true };
      if (text === '0') return { value: false };
      return { error: `expected 1 (on) or 0 (off), got "${text}"` };
    case 'choice':
      return INT_TEXT.test(text) ? { value: Number(text) } : { error: `expected a whole number, got "${text}"` };
    default:
      if (text === 'a') return spec.auto ? { value: null } : { error: 'auto is not allowed here' };
      if (spec.kind === 'int' && !INT_TEXT.test(text)) return { error: `expected a whole number, got "${text}"` };
      if (spec.kind === 'number' && !NUMBER_TEXT.test(text)) return { error: `expected a number, got "${text}"` };
      return { value: Number(text) };
  }
}

const fail = (error: string): HashResult => ({ ok: false, error: `Preset link refused: ${error}` });

/**
 * Parses a location.hash. Returns null when the hash carries no preset (does not start with `#p=`),
 * otherwise the settings (defaults + the link's values) or the reason the link is refused.
 */
export function decodePresetHash(hash: string): HashResult | null {
  if (typeof hash !== 'string') return fail('not text');
  if (!hash.startsWith(HASH_PREFIX)) return null;
  if (hash.length > MAX_HASH_LENGTH) return fail(`it is ${hash.length} characters long; the limit is ${MAX_HASH_LENGTH}`);
  let body = hash.slice(HASH_PREFIX.length);
  if (body.includes('%')) {
    try {
      body = decodeURIComponent(body);
    } catch {
      return fail('it contains percent-escapes that are not valid UTF-8');
    }
  }
  if (!ALPHABET.test(body)) {
    const bad = [...body].find((c) => !ALPHABET.test(c)) ?? '';
    return fail(`unexpected character ${JSON.stringify(bad)} (allowed: letters, digits and . , : + -)`);
  }
  const dot = body.indexOf('.');
  const version = dot < 0 ? body : body.slice(0, dot);
  if (!/^\d{1,4}$/.test(version)) return fail('it does not start with a version number (expected "#p=1.")');
  if (Number(version) !== CODEC_VERSION) return fail(`version ${version} is not supported (this app reads version ${CODEC_VERSION})`);
  const rest = dot < 0 ? '' : body.slice(dot + 1);

  const values = new Map<SettingSpec, unknown>();
  const unknown: string[] = [];
  const errors: string[] = [];
  for (const pair of rest === '' ? [] : rest.split(',')) {
    const colon = pair.indexOf(':');
    if (colon < 0) {
      errors.push(`"${pair.slice(0, 20)}" is not a code:value pair`);
      continue;
    }
    const code = pair.slice(0, colon);
    const text = pair.slice(colon + 1);
    const spec = SETTING_BY_CODE.get(code);
    if (!spec) {
      unknown.push(code.slice(0, 20));
      continue;
    }
    if (values.has(spec)) {
      errors.push(`${spec.label} is given twice`);
      continue;
    }
    const parsed = parseValue(spec, text);
    if ('error' in parsed) {
      errors.push(`${spec.label}: ${parsed.error}`);
      continue;
    }
    const why = checkValue(spec, parsed.value);
    if (why) errors.push(`${spec.label}: ${why}`);
    else values.set(spec, parsed.value);
  }
  if (unknown.length) errors.unshift(`unknown setting code${unknown.length > 1 ? 's' : ''} ${unknown.map((c) => JSON.stringify(c)).join(', ')}`);
  if (errors.length) {
    const shown = errors.slice(0, 5).join('; ');
    return fail(errors.length > 5 ? `${shown}; and ${errors.length - 5} more problem(s)` : shown);
  }

  const settings = { ...DEFAULTS } as Record<string, unknown>;
  for (const [spec, v] of values) settings[spec.key] = v;
  const changed = SETTINGS.filter((s) => settings[s.key] !== s.default).map((s) => s.key);
  return { ok: true, settings: settings as unknown as Settings, changed };
}

/**
 * What the editor does with a hash: the link's settings when it is valid; otherwise `current`, untouched
 * (the same object), with the error to show.
 */
export function applyPresetHash(current: Settings, hash: string): { settings: Settings; error: string | null; applied: boolean } {
  const r = decodePresetHash(hash);
  if (r === null) return { settings: current, error: null, applied: false };
  if (!r.ok) return { settings: current, error: r.error, applied: false };
  return { settings: r.settings, error: null, applied: true };
}
