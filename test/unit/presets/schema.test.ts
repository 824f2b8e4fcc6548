// Settings schema: strict validation of untrusted settings objects (stored or uploaded presets) and the resolution of
// auto values against a model and a dataset.
import { describe, expect, it } from 'vitest';
import {
  BUILTIN_PRESETS, checkAgainstModel, checkValue, DEFAULTS, resolveSteps, resolveTrainFrom, SETTING_BY_KEY, SETTINGS,
  plainName, RUN_SETTINGS,
  validateSettings, type Settings,
} from '../../../src/presets/index.ts';

describe('validateSettings', () => {
  it('fills missing keys with defaults and returns a new object', () => {
    const input = { steps: 300 };
    const r = validateSettings(input);
    expect(r.ok && r.settings).toEqual({ ...DEFAULTS, steps: 300 });
    expect(r.ok && r.settings).not.toBe(input);
  });

  it('refuses unknown keys, naming them', () => {
    const r = validateSettings({ steps: 3, turbo: true, mode: 'x' });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors[0]).toBe('unknown settings: "turbo", "mode"');
  });

  it('refuses __proto__ and constructor as own keys (JSON.parse makes them own properties)', () => {
    const r = validateSettings(JSON.parse('{"__proto__": {"steps": 1}, "constructor": 1}'));
    expect(!r.ok && r.errors[0]).toBe('unknown settings: "__proto__", "constructor"');
    expect(({} as Record<string, unknown>).steps).toBeUndefined();
  });

  it('refuses getters (never runs them)', () => {
    let ran = false;
    const evil = Object.defineProperty({}, 'steps', { enumerable: true, get: () => { ran = true; return 5; } });
    const r = validateSettings(evil);
    expect(!r.ok && r.errors[0]).toMatch(/STEPS: must be a plain value/);
    expect(ran).toBe(false);
  });

  it('refuses wrong types and out-of-range values with the setting named', () => {
    const r = validateSettings({ steps: '3', lrPeak: -1, quantizeExperts: 1, quantGroupSize: 100, trainFrom: 2.5 });
    expect(!r.ok && r.errors).toEqual([
      'STEPS: expected a whole number from 1 to 1000000, got "3"',
      'LR_PEAK: -1 is out of range: expected a number above 0 and at most 1',
      'TRAIN_FROM: expected a whole number, got 2.5',
      'QUANTIZE_EXPERTS: expected on or off (true/false), got 1',
      'QUANT_GROUP: expected one of 128, 64, got 100',
    ]);
  });

  it('refuses non-objects', () => {
    for (const v of [null, 3, 'x', [1, 2]]) expect(validateSettings(v).ok).toBe(false);
  });

  it('accepts null only for the auto settings', () => {
    expect(checkValue(SETTING_BY_KEY.get('trainFrom')!, null)).toBeNull();
    expect(checkValue(SETTING_BY_KEY.get('frozenCacheN')!, null)).toBeNull();
    expect(checkValue(SETTING_BY_KEY.get('steps')!, null)).toMatch(/got auto/);
  });

  it('every built-in preset is valid', () => {
    for (const p of BUILTIN_PRESETS) expect(validateSettings(p.settings).ok).toBe(true);
    expect(BUILTIN_PRESETS.map((p) => p.name)).toEqual(['Demo', 'Quick demo', 'Qwen3-30B-A3B on a 12 GB GPU', 'Qwen3-30B-A3B on a 24 GB GPU']);
  });

  it('the Qwen3-30B-A3B presets run with 4-bit experts and streamed frozen layers; the demo follows docs/method.md (all defaults)', () => {
    expect(BUILTIN_PRESETS.map((p) => [p.id, p.settings.quantizeExperts, p.settings.quantGroupSize, p.settings.streamFrozen])).toEqual([
      ['demo', false, 128, false], ['quick-demo', false, 128, false], ['qwen3-30b-a3b-12gb', true, 64, true], ['qwen3-30b-a3b-24gb', true, 64, true],
    ]);
    expect(BUILTIN_PRESETS[0]!.settings).toEqual(DEFAULTS);
  });

  it('the Quick demo differs from the defaults in exactly the settings its description names, each with the default beside it', () => {
    const quick = BUILTIN_PRESETS.find((p) => p.id === 'quick-demo')!;
    const changed = SETTINGS.filter((s) => quick.settings[s.key] !== DEFAULTS[s.key]);
    expect(changed.length).toBeGreaterThan(0);
    const named = [...quick.description.matchAll(/\b([A-Z][A-Z_]+) (\S+) \(not ([^)\s,:]+)/g)];
    expect(named.map((m) => m[1]).sort()).toEqual(changed.map((s) => s.label).sort());
    for (const m of named) {
      const key = SETTINGS.find((s) => s.label === m[1])!.key;
      expect([Number(m[2]), Number(m[3])], m[1]).toEqual([quick.settings[key], DEFAULTS[key]]);
    }
  });

  it('TRAIN_SHARED: an on/off setting of the trained entries, off by default, saying where it applies', () => {
    const spec = SETTING_BY_KEY.get('trainShared')!;
    expect(spec).toMatchObject({ code: 'sh', label: 'TRAIN_SHARED', kind: 'bool', default: false, group: 'selection' });
    expect(spec.description).toMatch(/shared experts of DeepSeek-V3 \/ Qwen2-MoE as sparse selection tensors.*Ignored for families without shared experts/);
    expect(validateSettings({ trainShared: true })).toEqual({ ok: true, settings: { ...DEFAULTS, trainShared: true } });
    expect(validateSettings({ trainShared: 'yes' })).toEqual({ ok: false, errors: ['TRAIN_SHARED: expected on or off (true/false), got "yes"'] });
  });

  it('ACCUMULATED_RESELECT says what the engine does: N_IMPORTANCE microbatches, like the first selection', () => {
    expect(SETTING_BY_KEY.get('accumulatedReselect')!.description).toMatch(/\|gradient\| summed over N_IMPORTANCE microbatches, like the first selection, instead of one microbatch/);
  });
});

describe('resolution', () => {
  it('TRAIN_FROM auto: top half up to 16 layers, top 8 above', () => {
    expect(resolveTrainFrom(DEFAULTS, 8)).toBe(4); // the demo: layers 4-7
    expect(resolveTrainFrom(DEFAULTS, 16)).toBe(8);
    expect(resolveTrainFrom(DEFAULTS, 48)).toBe(40); // Qwen3-30B-A3B
    expect(resolveTrainFrom({ ...DEFAULTS, trainFrom: 2 }, 8)).toBe(2);
  });

  it('EPOCHS > 0 sets STEPS from the training tokens', () => {
    expect(resolveSteps(DEFAULTS, 100_912)).toBe(180);
    const s: Settings = { ...DEFAULTS, epochs: 2 };
    expect(resolveSteps(s, 100_912)).toBe(Math.floor((2 * 100_912) / (2 * 512)));
  });

  it('checks against the model', () => {
    expect(checkAgainstModel({ ...DEFAULTS, trainFrom: 8, seq: 4096 }, { numLayers: 8, maxPos: 2048 })).toEqual({
      trainFrom: 'this model has 8 layers (0–7)',
      seq: 'this model handles at most 2048 positions',
    });
    expect(checkAgainstModel(DEFAULTS, { numLayers: 8, maxPos: 2048 })).toEqual({});
  });
});

describe('plainName', () => {
  it('names every setting in plain words first, the method\'s name second', () => {
    expect(plainName(SETTING_BY_KEY.get('frac')!)).toBe('Trained share of expert weights (FRAC)');
    expect(plainName(SETTING_BY_KEY.get('trainFrom')!)).toBe('First trained layer (TRAIN_FROM)');
    for (const s of [...SETTINGS, ...RUN_SETTINGS]) {
      // the words are not the env name again, and they start with a capitalised word, not an upper-case code
      expect(plainName(s)).toMatch(/^[A-Z][a-z]+[ -]/);
      expect(s.title).not.toContain(s.label);
    }
  });
});
