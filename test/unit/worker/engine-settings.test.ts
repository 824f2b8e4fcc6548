// Contract: the worker's engine binding gives the engine what the preset says (engine-settings.ts): each setting of the
// method in TrainSettings (the improvements over the seed included), 4-bit experts and trained shared experts in loadWeights' options, the checkpoint's settings
// read back for resume and export, and resume refused when the base weights or the trained tensors would differ.
import { describe, expect, it } from 'vitest';
import { BUILTIN_PRESETS, DEFAULTS, type Settings } from '../../../src/presets/index.ts';
import { checkResume, runConfig, savedLoadOptions, savedSettings, type Resolved } from '../../../src/worker/engine-settings.ts';

const resolved: Resolved = { steps: 37, trainFrom: 5, evalWindows: 3, frozenCacheN: 11 };
const LAYERS = 9;
const config = (over: Partial<Settings>) => runConfig({ ...DEFAULTS, ...over }, resolved, LAYERS);
/** What a checkpoint's settings look like after the run folder's JSON round trip. */
const stored = (over: Partial<Settings>) => JSON.parse(JSON.stringify(config(over).checkpoint)) as Record<string, unknown>;

describe('settings → TrainSettings', () => {
  it('carries every setting of the method, resolved values from the worker', () => {
    const s: Settings = {
      ...DEFAULTS, frac: 0.03, microbatch: 3, accum: 2, seq: 96, lrPeak: 1e-3, wd: 0.01, reselectEvery: 7, evalEvery: 4,
      nImportance: 5, seed: 1234,
    };
    expect(runConfig(s, resolved, LAYERS).train).toEqual({
      frac: 0.03, steps: 37, microbatch: 3, accum: 2, seq: 96, lrPeak: 1e-3, wd: 0.01, trainFrom: 5, reselectEvery: 7,
      evalEvery: 4, nImportance: 5, frozenCacheN: 11, seed: 1234, evalWindows: 3, keepAdamState: false, trainShared: false,
      perEntryStep: false, accumulatedReselect: false, sampling: 'random',
    });
    expect(runConfig({ ...s, windowSampling: true }, resolved, LAYERS).train.sampling).toBe('windows');
  });

  it('KEEP_ADAM_STATE, TRAIN_SHARED, PER_ENTRY_STEP and ACCUMULATED_RESELECT reach the Trainer, each on its own', () => {
    const keys = ['keepAdamState', 'trainShared', 'perEntryStep', 'accumulatedReselect'] as const;
    for (const on of keys) {
      const t = config({ [on]: true }).train;
      expect(Object.fromEntries(keys.map((k) => [k, t[k]]))).toEqual(Object.fromEntries(keys.map((k) => [k, k === on])));
    }
  });
});

describe('settings → loadWeights options', () => {
  const trained = new Set([5, 6, 7, 8]);

  it('METHOD.md defaults: trained layers\' routed experts in f32, nothing quantized, shared experts frozen', () => {
    const c = config({});
    expect(c.load).toEqual({ f32ExpertLayers: trained });
    expect(c.quant).toBeNull();
  });

  it('QUANTIZE_EXPERTS loads 4-bit experts in groups of QUANT_GROUP', () => {
    expect(config({ quantizeExperts: true, quantGroupSize: 64 }).load).toEqual({ f32ExpertLayers: trained, quantizeExperts: { groupSize: 64 } });
    expect(config({ quantizeExperts: true }).load.quantizeExperts).toEqual({ groupSize: 128 });
    // QUANT_GROUP alone changes nothing
    expect(config({ quantGroupSize: 64 }).load).toEqual({ f32ExpertLayers: trained });
  });

  it('STREAM_FROZEN leaves the layers below TRAIN_FROM in storage (streamFrozenBelow); exports always do', () => {
    expect(config({ streamFrozen: true }).load).toEqual({ f32ExpertLayers: trained, streamFrozenBelow: resolved.trainFrom });
    const c = config({});
    expect(savedLoadOptions(c.checkpoint, LAYERS)).toEqual({ f32ExpertLayers: trained, streamFrozenBelow: resolved.trainFrom });
    expect(runConfig({ ...DEFAULTS, streamFrozen: true }, { ...resolved, trainFrom: 0 }, LAYERS).load.streamFrozenBelow).toBeUndefined();
  });

  it('TRAIN_SHARED loads the trained layers\' shared experts in f32', () => {
    expect(config({ trainShared: true }).load).toEqual({ f32ExpertLayers: trained, f32SharedLayers: trained });
  });

  it('the Qwen3-30B-A3B presets load 4-bit experts with their group sizes; the demo does not', () => {
    const groups = BUILTIN_PRESETS.map((p) => runConfig(p.settings, resolved, LAYERS).load.quantizeExperts?.groupSize ?? null);
    expect(BUILTIN_PRESETS.map((p) => p.id)).toEqual(['demo', 'qwen3-30b-a3b-12gb', 'qwen3-30b-a3b-24gb']);
    expect(groups).toEqual([null, 64, 64]);
  });
});

describe('checkpoints: what resume and export read back', () => {
  it('the checkpoint keeps the 4-bit setting and TRAIN_SHARED; export loads the same weights as the run (frozen layers left in storage)', () => {
    for (const over of [{}, { quantizeExperts: true, quantGroupSize: 64 }, { trainShared: true }, { quantizeExperts: true, trainShared: true }] as Partial<Settings>[]) {
      const c = config(over);
      const saved = savedSettings(stored(over));
      expect(saved.quantizeExperts).toEqual(c.quant);
      expect(saved.trainShared).toBe(c.train.trainShared);
      expect(savedLoadOptions(saved, LAYERS)).toEqual({ ...c.load, streamFrozenBelow: resolved.trainFrom });
    }
  });

  it('checkpoints written before 4-bit experts and TRAIN_SHARED existed read as unquantized, shared experts frozen', () => {
    const old = stored({});
    delete old.quantizeExperts;
    delete old.trainShared;
    delete old.perEntryStep;
    const saved = savedSettings(old);
    expect([saved.quantizeExperts, saved.trainShared, saved.perEntryStep]).toEqual([null, false, false]);
    expect(() => checkResume(saved, config({}).train, null)).not.toThrow();
  });

  it('refuses a malformed stored setting, naming it', () => {
    expect(() => savedSettings({ ...stored({}), quantizeExperts: { groupSize: 'x' } })).toThrow(/no valid quantizeExperts setting/);
    expect(() => savedSettings({ ...stored({}), frac: null })).toThrow(/no valid frac setting/);
  });
});

describe('resume', () => {
  const cases: [string, Partial<Settings>, Partial<Settings>, RegExp][] = [
    ['4-bit run resumed unquantized', { quantizeExperts: true }, {}, /4-bit experts \(QUANTIZE_EXPERTS on, QUANT_GROUP 128\) and would resume with unquantized/],
    ['unquantized run resumed in 4 bits', {}, { quantizeExperts: true, quantGroupSize: 64 }, /unquantized experts .* would resume with 4-bit experts \(QUANTIZE_EXPERTS on, QUANT_GROUP 64\)/],
    ['another group size', { quantizeExperts: true, quantGroupSize: 64 }, { quantizeExperts: true, quantGroupSize: 128 }, /QUANT_GROUP 64.*QUANT_GROUP 128/],
    ['TRAIN_SHARED switched on', {}, { trainShared: true }, /TRAIN_SHARED was off .* is on now/],
    ['PER_ENTRY_STEP switched off', { perEntryStep: true }, {}, /PER_ENTRY_STEP was on .* is off now/],
    ['another FRAC', {}, { frac: 0.01 }, /frac was 0.005 .* is 0.01 now/],
  ];
  for (const [what, before, after, message] of cases) {
    it(`refuses: ${what}`, () => {
      const now = config(after);
      expect(() => checkResume(savedSettings(stored(before)), now.train, now.quant)).toThrow(message);
    });
  }

  it('continues with the same settings, and with changes that do not shape the saved state (STEPS, LR_PEAK, KEEP_ADAM_STATE, ACCUMULATED_RESELECT)', () => {
    const over: Partial<Settings> = { quantizeExperts: true, quantGroupSize: 64, trainShared: true, perEntryStep: true, windowSampling: true };
    const now = runConfig({ ...DEFAULTS, ...over, lrPeak: 1e-3, keepAdamState: true, accumulatedReselect: true }, { ...resolved, steps: 90 }, LAYERS);
    expect(() => checkResume(savedSettings(stored(over)), now.train, now.quant)).not.toThrow();
  });

  it('random-position samples depend on STEPS: resuming them with another STEPS is refused; the windows allow it', () => {
    const random = runConfig(DEFAULTS, { ...resolved, steps: 90 }, LAYERS);
    const saved = savedSettings({ ...stored({}), sampling: 'random' });
    expect(() => checkResume(saved, random.train, random.quant)).toThrow(/steps was 37 .* is 90 now; the random-position training sequences depend on it/);
    const same = runConfig(DEFAULTS, resolved, LAYERS);
    expect(() => checkResume(saved, same.train, same.quant)).not.toThrow();
    const windows = runConfig({ ...DEFAULTS, windowSampling: true }, { ...resolved, steps: 90 }, LAYERS);
    expect(() => checkResume(savedSettings({ ...stored({}), sampling: 'windows' }), windows.train, windows.quant)).not.toThrow();
  });
});
