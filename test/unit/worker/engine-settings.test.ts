// Contract: the one run setup (engine/train/setup.ts) that the worker's engine binding and `usaf train` both call: each
// setting of the method reaches TrainSettings (the improvements over the seed included), 4-bit experts and trained shared
// experts reach loadWeights' options, the checkpoint's settings read back for resume and export, and a resume is refused,
// each difference listed, when a setting that changes the math or the data differs.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { TokenStream } from '../../../src/engine/train/token-stream.ts';
import { parseConfig } from '../../../src/engine/model/index.ts';
import {
  checkFits, checkResume, dataFingerprint, resumeDifferences, savedLoadOptions, savedSettings, setupRun, type RunData, type SavedSettings,
} from '../../../src/engine/train/setup.ts';
import { planMemory, PlanError, withExpertChunk } from '../../../src/engine/plan/memory.ts';
import { BUILTIN_PRESETS, DEFAULTS, defaultRunSettings, type RunSettings, type Settings } from '../../../src/presets/index.ts';

const spec = parseConfig(JSON.parse(readFileSync('public/models/usaf-demo-moe/config.json', 'utf8'))); // 8 layers
const LAYERS = spec.numLayers;

/** A token stream of `n` tokens in records of `per` tokens, ids from `seed`. */
function stream(n: number, per: number, seed = 1): TokenStream {
  const ids = Int32Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104_729) % 4000);
  return { ids, labels: null, docStarts: Int32Array.from({ length: Math.ceil(n / per) }, (_, d) => d * per) };
}
const DATA: RunData = { train: stream(5000, 300), eval: null, heldout: stream(900, 300, 2), pretokenized: false };
const RUN: RunSettings = { ...defaultRunSettings(), evalWindows: 3 };

const setup = (over: Partial<Settings>, run: Partial<RunSettings> = {}, data: Partial<RunData> = {}) =>
  setupRun({ settings: { ...DEFAULTS, seq: 64, trainFrom: 5, ...over }, run: { ...RUN, ...run }, spec, data: { ...DATA, ...data }, padId: 0, maxBufferSize: null });
/** What a checkpoint's settings look like after the checkpoint's JSON round trip. */
const stored = (over: Partial<Settings>, run: Partial<RunSettings> = {}, data: Partial<RunData> = {}) =>
  savedSettings(JSON.parse(JSON.stringify(setup(over, run, data).checkpoint)) as Record<string, unknown>);
const resumeWith = (saved: SavedSettings, over: Partial<Settings>, run: Partial<RunSettings> = {}, data: Partial<RunData> = {}) =>
  () => checkResume(saved, setup(over, run, data).checkpoint);

describe('settings → TrainSettings', () => {
  it('carries every setting of the method, resolved against the model and the data', () => {
    const s: Partial<Settings> = { frac: 0.03, microbatch: 3, accum: 2, seq: 96, lrPeak: 1e-3, wd: 0.01, reselectEvery: 7, evalEvery: 4, nImportance: 5, seed: 1234, steps: 37 };
    expect(setup(s).train).toEqual({
      frac: 0.03, steps: 37, microbatch: 3, accum: 2, seq: 96, lrPeak: 1e-3, wd: 0.01, trainFrom: 5, reselectEvery: 7,
      evalEvery: 4, nImportance: 5, frozenCacheN: 37 * 3 * 2, seed: 1234, evalWindows: 3, keepAdamState: false, trainShared: false,
      perEntryStep: false, accumulatedReselect: false, sampling: 'random',
    });
    expect(setup({ windowSampling: true }).train.sampling).toBe('windows');
    // EPOCHS: STEPS from the training tokens; TRAIN_FROM auto: floor(n/2) for ≤ 16 layers
    expect(setup({ epochs: 2, microbatch: 2, accum: 1, trainFrom: null }).train).toMatchObject({ steps: Math.floor((2 * 5000) / (2 * 64)), trainFrom: 4 });
    expect(setup({}, { gpuGib: 1.5, expertChunk: 4 }).train).toMatchObject({ gpuBytes: 1.5 * 2 ** 30, expertChunk: 4 });
  });

  it('KEEP_ADAM_STATE, TRAIN_SHARED, PER_ENTRY_STEP and ACCUMULATED_RESELECT reach the Trainer, each on its own', () => {
    const keys = ['keepAdamState', 'trainShared', 'perEntryStep', 'accumulatedReselect'] as const;
    for (const on of keys) {
      const t = setup({ [on]: true }).train;
      expect(Object.fromEntries(keys.map((k) => [k, t[k]]))).toEqual(Object.fromEntries(keys.map((k) => [k, k === on])));
    }
  });

  it('refuses settings the model cannot take, naming the setting, the value and the limit', () => {
    expect(() => setup({ seq: 4096 })).toThrow(`SEQ: 4096 is not allowed: this model handles at most ${spec.maxPos} positions`);
    expect(() => setup({ trainFrom: 8 })).toThrow('TRAIN_FROM: 8 is not allowed: this model has 8 layers (0–7)');
  });

  it('refuses token ids and labels outside config.json\'s vocabulary in any of the data (text or records, tokenizer or not)', () => {
    const bad = stream(5000, 300);
    bad.ids[4321] = spec.vocab;
    expect(() => setup({}, {}, { train: bad })).toThrow(`training data: token id ${spec.vocab} at token 4321 is outside the model's vocabulary (0–${spec.vocab - 1}, config.json vocab_size ${spec.vocab})`);
    const labels = stream(900, 300).ids.map((x, i) => (i === 3 ? -100 : i === 7 ? -5 : x));
    expect(() => setup({}, {}, { heldout: { ...stream(900, 300), labels } })).toThrow('held-out data: label -5 at token 7 is outside');
    expect(() => setup({}, {}, { eval: { ...stream(10, 10), ids: Int32Array.of(1, 2, -1) } })).toThrow('in-domain eval split: token id -1 at token 2');
    expect(() => setup({}, {}, { heldout: { ...stream(900, 300), labels: labels.map((x) => (x === -5 ? 1 : x)) } })).not.toThrow();
  });
});

describe('settings → loadWeights options', () => {
  const trained = new Set([5, 6, 7]);

  it('the method\'s defaults (docs/method.md): trained layers\' routed experts in f32, nothing quantized, shared experts frozen', () => {
    const c = setup({});
    expect(c.load).toEqual({ f32ExpertLayers: trained });
    expect(c.quant).toBeNull();
  });

  it('QUANTIZE_EXPERTS loads 4-bit experts in groups of QUANT_GROUP; QUANT_GROUP alone changes nothing', () => {
    expect(setup({ quantizeExperts: true, quantGroupSize: 64 }).load).toEqual({ f32ExpertLayers: trained, quantizeExperts: { groupSize: 64 } });
    expect(setup({ quantizeExperts: true }).load.quantizeExperts).toEqual({ groupSize: 128 });
    expect(setup({ quantGroupSize: 64 }).load).toEqual({ f32ExpertLayers: trained });
  });

  it('STREAM_FROZEN leaves the layers below TRAIN_FROM in storage (streamFrozenBelow) and caches every sample; exports always do', () => {
    const s = setup({ streamFrozen: true, frozenCacheN: 3 });
    expect(s.load).toEqual({ f32ExpertLayers: trained, streamFrozenBelow: 5 });
    expect([s.streamed, s.train.frozenCacheN]).toEqual([true, s.trainSet.count]);
    expect(savedLoadOptions(stored({}), LAYERS)).toEqual({ f32ExpertLayers: trained, streamFrozenBelow: 5 });
    expect(setup({ streamFrozen: true, trainFrom: 0 }).load.streamFrozenBelow).toBeUndefined();
  });

  it('GPU_GIB that only hosted 4-bit experts fit: checkFits hosts the trained layers\' experts (plan and load); refused below that; untouched above', () => {
    const over = { quantizeExperts: true, quantGroupSize: 64, streamFrozen: true, trainFrom: 2 } as Partial<Settings>;
    const base = setup(over);
    const resident = planMemory(spec, withExpertChunk(spec, base.plan, 1)).peak; // (chunks of one expert: the least resident)
    const hosted = planMemory(spec, withExpertChunk(spec, { ...base.plan, hostExperts: true }, 1)).peak;
    expect(hosted).toBeLessThan(resident);
    const gib = (b: number) => b / 2 ** 30;
    const fitted = setup(over, { gpuGib: gib(hosted) });
    checkFits(spec, fitted);
    expect(fitted.plan.hostExperts).toBe(true);
    expect([...fitted.load.hostExperts!]).toEqual([2, 3, 4, 5, 6, 7]);
    const roomy = setup(over, { gpuGib: gib(resident) + 1 });
    checkFits(spec, roomy);
    expect(roomy.plan.hostExperts).toBeUndefined();
    expect(roomy.load.hostExperts).toBeUndefined();
    expect(() => checkFits(spec, setup(over, { gpuGib: gib(hosted - 4096) }))).toThrow(PlanError);
    // unquantized: nothing to host, refused as before
    expect(() => checkFits(spec, setup({ trainFrom: 2 }, { gpuGib: gib(hosted) }))).toThrow(PlanError);
  });

  it('TRAIN_SHARED loads the trained layers\' shared experts in f32', () => {
    expect(setup({ trainShared: true }).load).toEqual({ f32ExpertLayers: trained, f32SharedLayers: trained });
  });

  it('the Qwen3-30B-A3B presets load 4-bit experts with their group sizes; the demo does not', () => {
    const groups = BUILTIN_PRESETS.map((p) => setup({ ...p.settings, seq: 64, trainFrom: 5 }).load.quantizeExperts?.groupSize ?? null);
    expect(BUILTIN_PRESETS.map((p) => p.id)).toEqual(['demo', 'quick-demo', 'qwen3-30b-a3b-12gb', 'qwen3-30b-a3b-24gb']);
    expect(groups).toEqual([null, null, 64, 64]);
  });
});

describe('checkpoints: what resume and export read back', () => {
  it('the checkpoint keeps the 4-bit setting, TRAIN_SHARED, the sample rule and the data; export loads the run\'s weights', () => {
    for (const over of [{}, { quantizeExperts: true, quantGroupSize: 64 }, { trainShared: true }, { quantizeExperts: true, trainShared: true }] as Partial<Settings>[]) {
      const c = setup(over);
      const saved = stored(over);
      expect(saved.quantizeExperts).toEqual(c.quant);
      expect(saved.trainShared).toBe(c.train.trainShared);
      expect(saved.samples).toBe('random');
      expect(saved.data).toEqual({ train: dataFingerprint(DATA.train), eval: null, heldout: dataFingerprint(DATA.heldout!) });
      expect(savedLoadOptions(saved, LAYERS)).toEqual({ ...c.load, streamFrozenBelow: 5 });
    }
  });

  it('checkpoints written before 4-bit experts, TRAIN_SHARED, sampling and data fingerprints: read as those runs ran, resume with a warning', () => {
    const old = JSON.parse(JSON.stringify(setup({ windowSampling: true }).checkpoint)) as Record<string, unknown>;
    for (const k of ['quantizeExperts', 'trainShared', 'perEntryStep', 'sampling', 'samples', 'data']) delete old[k];
    const saved = savedSettings(old);
    expect([saved.quantizeExperts, saved.trainShared, saved.perEntryStep, saved.samples, saved.data]).toEqual([null, false, false, 'windows', null]);
    expect(resumeWith(saved, { windowSampling: true })()).toEqual([expect.stringMatching(/written before data fingerprints: its training and evaluation data cannot be compared/)]);
  });

  it('refuses a malformed stored setting, naming it', () => {
    const raw = JSON.parse(JSON.stringify(setup({}).checkpoint)) as Record<string, unknown>;
    expect(() => savedSettings({ ...raw, quantizeExperts: { groupSize: 'x' } })).toThrow(/no valid quantizeExperts setting/);
    expect(() => savedSettings({ ...raw, frac: null })).toThrow(/no valid frac setting/);
  });
});

describe('resume', () => {
  const cases: [string, Partial<Settings>, Partial<Settings>, string][] = [
    ['4-bit run resumed unquantized', { quantizeExperts: true }, {}, 'experts: 4-bit experts (QUANTIZE_EXPERTS on, QUANT_GROUP 128) in the checkpoint, unquantized experts (QUANTIZE_EXPERTS off) now'],
    ['another group size', { quantizeExperts: true, quantGroupSize: 64 }, { quantizeExperts: true, quantGroupSize: 128 }, 'QUANT_GROUP 64) in the checkpoint, 4-bit experts (QUANTIZE_EXPERTS on, QUANT_GROUP 128) now'],
    ['TRAIN_SHARED switched on', {}, { trainShared: true }, 'TRAIN_SHARED: off in the checkpoint, on now'],
    ['PER_ENTRY_STEP switched off', { perEntryStep: true }, {}, 'PER_ENTRY_STEP: on in the checkpoint, off now'],
    ['another FRAC', {}, { frac: 0.01 }, 'FRAC: 0.005 in the checkpoint, 0.01 now'],
    ['another LR_PEAK (another schedule)', {}, { lrPeak: 1e-3 }, 'LR_PEAK: 0.0002 in the checkpoint, 0.001 now'],
    ['another WD', {}, { wd: 0.01 }, 'WD: 0.005 in the checkpoint, 0.01 now'],
    ['another RESELECT_EVERY', {}, { reselectEvery: 7 }, 'RESELECT_EVERY: 50 in the checkpoint, 7 now'],
    ['another N_IMPORTANCE', {}, { nImportance: 5 }, 'N_IMPORTANCE: 3 in the checkpoint, 5 now'],
    ['KEEP_ADAM_STATE switched on', {}, { keepAdamState: true }, 'KEEP_ADAM_STATE: off in the checkpoint, on now'],
    ['another sample rule', {}, { windowSampling: true }, 'training samples: random in the checkpoint, windows now'],
  ];
  for (const [what, before, after, message] of cases) {
    it(`refuses: ${what}`, () => {
      expect(resumeWith(stored(before), after)).toThrow(message);
    });
  }

  it('lists every difference, one per line (STEPS, LR_PEAK, KEEP_ADAM_STATE, ACCUMULATED_RESELECT all change the math)', () => {
    const over: Partial<Settings> = { quantizeExperts: true, quantGroupSize: 64, trainShared: true, perEntryStep: true, windowSampling: true };
    const saved = stored(over);
    const now = setup({ ...over, lrPeak: 1e-3, keepAdamState: true, accumulatedReselect: true, steps: 90 }).checkpoint;
    expect(resumeDifferences(saved, now).differences).toEqual([
      'STEPS: 180 in the checkpoint, 90 now', 'LR_PEAK: 0.0002 in the checkpoint, 0.001 now',
      'KEEP_ADAM_STATE: off in the checkpoint, on now', 'ACCUMULATED_RESELECT: off in the checkpoint, on now',
    ]);
    expect(() => checkResume(saved, now)).toThrow(/4 things differ from its checkpoint .*:\n {2}- STEPS: 180 .*\n {2}- LR_PEAK: .*\n {2}- KEEP_ADAM_STATE: .*\n {2}- ACCUMULATED_RESELECT: off in the checkpoint, on now$/);
  });

  it('refuses other data: another training set, another held-out set, a held-out set dropped, another eval split', () => {
    const saved = stored({});
    expect(resumeWith(saved, {}, {}, { train: stream(5000, 300, 3) })).toThrow(/training data: 5000 tokens in 17 records, hash [0-9a-f]{24} in the checkpoint, 5000 tokens in 17 records, hash [0-9a-f]{24} now/);
    expect(resumeWith(saved, {}, {}, { train: stream(4999, 300) })).toThrow(/training data: 5000 tokens .* 4999 tokens/);
    // same tokens, other record boundaries
    expect(resumeWith(saved, {}, {}, { train: stream(5000, 250) })).toThrow(/training data: 5000 tokens in 17 records.* 5000 tokens in 20 records/);
    expect(resumeWith(saved, {}, {}, { heldout: stream(900, 300, 5) })).toThrow(/held-out data: 900 tokens/);
    expect(resumeWith(saved, {}, {}, { heldout: null })).toThrow(/held-out data: 900 tokens in 3 records, hash [0-9a-f]{24} in the checkpoint, none now/);
    expect(resumeWith(saved, {}, {}, { eval: stream(300, 300, 4) })).toThrow(/in-domain eval split: none in the checkpoint, 300 tokens/);
    const labelled = { ...DATA.train, labels: DATA.train.ids.map((x, i) => (i % 9 ? x : -100)) };
    expect(resumeWith(saved, {}, {}, { train: labelled })).toThrow(/training data/);
  });

  it('continues with the same settings and data, and with changes that leave the math alone', () => {
    const saved = stored({ quantizeExperts: true, windowSampling: true });
    expect(resumeWith(saved, { quantizeExperts: true, windowSampling: true })()).toEqual([]);
    expect(resumeWith(saved, { quantizeExperts: true, windowSampling: true, evalEvery: 3, frozenCacheN: 2, streamFrozen: true }, { gpuGib: 80, expertChunk: 2, checkpointEvery: 1 })()).toEqual([]);
    // EVAL_WINDOWS changes what the evaluations measure: refused
    expect(resumeWith(saved, { quantizeExperts: true, windowSampling: true }, { evalWindows: null })).toThrow('EVAL_WINDOWS: 3 in the checkpoint, all now');
  });

  it('pre-tokenized records are trained record by record whatever WINDOW_SAMPLES says; a text run on the same tokens resumed as records is refused', () => {
    const s = setup({ windowSampling: false }, {}, { pretokenized: true });
    expect([s.rule, s.checkpoint.samples, s.trainSet.count]).toEqual(['records', 'records', 16 * 5 + 4]); // 16 records of 300 tokens (5 windows of 64), the last of 200 (4)
    expect(resumeWith(stored({}), {}, {}, { pretokenized: true })).toThrow('training samples: random in the checkpoint, records now');
  });
});
