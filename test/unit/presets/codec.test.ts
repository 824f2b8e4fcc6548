// Share-link codec: round trips, defaults left out, and every kind of hostile hash refused with a message while the
// current settings stay exactly as they were.
import { describe, expect, it } from 'vitest';
import {
  applyPresetHash, BUILTIN_PRESETS, decodePresetHash, DEFAULTS, defaultSettings, encodePresetHash, formatNumber,
  MAX_HASH_LENGTH, SETTINGS, type Settings,
} from '../../../src/presets/index.ts';

const refused = (hash: string): string => {
  const r = decodePresetHash(hash);
  if (r === null || r.ok) throw new Error(`expected ${hash.slice(0, 60)} to be refused, got ${JSON.stringify(r)}`);
  return r.error;
};

describe('encode', () => {
  it('defaults give an empty, versioned link', () => {
    expect(encodePresetHash(defaultSettings())).toBe('#p=1.');
  });

  it('carries only the non-default values, short', () => {
    const s: Settings = { ...DEFAULTS, steps: 300, lrPeak: 2e-3, quantizeExperts: true, trainFrom: 2 };
    const h = encodePresetHash(s);
    expect(h).toBe('#p=1.st:300,lr:2e-3,tf:2,qe:1');
  });

  it('TRAIN_SHARED travels as sh:1 and reads back', () => {
    expect(encodePresetHash({ ...DEFAULTS, trainShared: true })).toBe('#p=1.sh:1');
    const r = decodePresetHash('#p=1.sh:1,qe:1');
    expect(r && r.ok && [r.settings.trainShared, r.settings.quantizeExperts, r.changed]).toEqual([true, true, ['trainShared', 'quantizeExperts']]);
    expect(decodePresetHash('#p=1.sh:0')).toMatchObject({ ok: true, settings: { trainShared: false } });
    expect(refused('#p=1.sh:2')).toMatch(/TRAIN_SHARED: expected 1 \(on\) or 0 \(off\), got "2"/);
  });

  it('writes numbers in their shortest exact form', () => {
    expect(formatNumber(0.0002)).toBe('2e-4');
    expect(formatNumber(0.05)).toBe('0.05');
    expect(formatNumber(300)).toBe('300');
    expect(formatNumber(0.30000000000000004)).toBe('0.30000000000000004');
  });

  it('auto (the default of TRAIN_FROM and FROZEN_CACHE_N) is left out; "a" reads as auto', () => {
    expect(encodePresetHash({ ...DEFAULTS, frozenCacheN: 0 })).toBe('#p=1.fc:0');
    const r = decodePresetHash('#p=1.tf:a,fc:a');
    expect(r && r.ok && [r.settings.trainFrom, r.settings.frozenCacheN]).toEqual([null, null]);
  });
});

describe('round trip', () => {
  it('every built-in preset', () => {
    for (const p of BUILTIN_PRESETS) {
      const r = decodePresetHash(encodePresetHash(p.settings));
      expect(r).not.toBeNull();
      expect(r!.ok && r!.settings).toEqual(p.settings);
    }
  });

  it('every setting at its extremes and odd values', () => {
    const cases: Partial<Settings>[] = [
      { frac: 1, steps: 1, epochs: 1000, microbatch: 1024, accum: 1024, seq: 131072, lrPeak: 1, wd: 1 },
      { frac: 1e-6, steps: 1_000_000, epochs: 0.25, seq: 8, lrPeak: 3.3e-7, wd: 0, trainFrom: 0 },
      { trainFrom: 1023, reselectEvery: 0, evalEvery: 0, nImportance: 10_000, frozenCacheN: 100_000_000 },
      { quantizeExperts: true, quantGroupSize: 64, seed: 4_294_967_295, keepAdamState: true, perEntryStep: true, accumulatedReselect: true },
      { trainShared: true },
      { trainShared: true, quantizeExperts: true, keepAdamState: true },
      { lrPeak: 0.1 + 0.2, frac: 1 / 3 },
    ];
    for (const c of cases) {
      const s = { ...DEFAULTS, ...c } as Settings;
      const h = encodePresetHash(s);
      expect(h.length).toBeLessThan(MAX_HASH_LENGTH);
      const r = decodePresetHash(h);
      expect(r && r.ok ? r.settings : r).toEqual(s);
    }
  });

  it('reports which settings the link changed', () => {
    const r = decodePresetHash('#p=1.st:300,lr:2e-3');
    expect(r && r.ok && r.changed).toEqual(['steps', 'lrPeak']);
  });

  it('percent-escaped links (as some mail clients rewrite them) still decode', () => {
    const r = decodePresetHash('#p=1.st%3A300%2Clr%3A2e-3');
    expect(r && r.ok && r.settings.steps).toBe(300);
  });
});

describe('hostile links are refused with a message and change nothing', () => {
  const current = Object.freeze({ ...DEFAULTS, steps: 77, lrPeak: 1e-3 } as Settings);
  const snapshot = JSON.stringify(current);

  const hostile: [string, string, RegExp][] = [
    ['huge', `#p=1.st:1,${'x'.repeat(5000)}`, /limit is 2048/],
    ['huge made of valid pairs', `#p=1.${Array.from({ length: 500 }, () => 'st:1').join(',')}`, /limit is 2048/],
    ['unknown key', '#p=1.st:300,zz:1', /unknown setting code "zz"/],
    ['several unknown keys', '#p=1.qq:1,zz:2', /unknown setting codes "qq", "zz"/],
    ['__proto__ key', '#p=1.__proto__:1', /unexpected character "_"/],
    ['constructor key', '#p=1.constructor:1', /unknown setting code "constructor"/],
    ['prototype key', '#p=1.prototype:1,st:3', /unknown setting code "prototype"/],
    ['toString key', '#p=1.toString:1', /unknown setting code "toString"/],
    ['wrong type: text for a number', '#p=1.lr:fast', /LR_PEAK: expected a number, got "fast"/],
    ['wrong type: fraction for a whole number', '#p=1.st:1.5', /STEPS: expected a whole number/],
    ['wrong type: exponent for a whole number', '#p=1.st:1e3', /STEPS: expected a whole number/],
    ['wrong type: number for on/off', '#p=1.qe:2', /QUANTIZE_EXPERTS: expected 1 \(on\) or 0 \(off\)/],
    ['wrong type: auto where not allowed', '#p=1.st:a', /STEPS: auto is not allowed/],
    ['NaN', '#p=1.lr:NaN', /LR_PEAK: expected a number/],
    ['Infinity', '#p=1.lr:Infinity', /LR_PEAK: expected a number/],
    ['overflow to Infinity', '#p=1.lr:1e999', /LR_PEAK: Infinity is out of range|LR_PEAK: expected/],
    ['out of range: negative', '#p=1.wd:-0.1', /WD: -0.1 is out of range/],
    ['out of range: zero LR', '#p=1.lr:0', /LR_PEAK: 0 is out of range: expected a number above 0/],
    ['out of range: too big', '#p=1.mb:100000', /MICROBATCH: 100000 is out of range/],
    ['out of range: group size', '#p=1.qg:32', /QUANT_GROUP: expected one of 128, 64/],
    ['duplicate key', '#p=1.st:10,st:20', /STEPS is given twice/],
    ['pair without value separator', '#p=1.st300', /is not a code:value pair/],
    ['no version', '#p=st:300', /version number/],
    ['future version', '#p=2.st:300', /version 2 is not supported/],
    ['garbage base64', '#p=1.eyJfX3Byb3RvX18iOnsiYSI6MX19', /not a code:value pair/],
    ['base64 padding and slashes', '#p=1.a+b/c==', /unexpected character "\/"/],
    ['non-UTF-8 percent escapes', '#p=1.st%3A%FF%FE', /not valid UTF-8/],
    ['percent-encoded script', '#p=1.%3Cscript%3Ealert(1)%3C%2Fscript%3E', /unexpected character "<"/],
    ['JSON', '#p={"steps":300}', /unexpected character "\{"/],
    ['code-like value', '#p=1.st:process.exit()', /unexpected character "\("/],
    ['unicode look-alike', '#p=1.st:３００', /unexpected character/],
    ['NUL byte', '#p=1.st:1\u0000', /unexpected character/],
  ];

  for (const [what, hash, message] of hostile) {
    it(what, () => {
      expect(refused(hash)).toMatch(message);
      const after = applyPresetHash(current, hash);
      expect(after.applied).toBe(false);
      expect(after.settings).toBe(current);
      expect(after.error).toMatch(/^Preset link refused: /);
      expect(JSON.stringify(current)).toBe(snapshot);
      // Nothing leaked onto shared prototypes.
      expect(({} as Record<string, unknown>).a).toBeUndefined();
      expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'steps')).toBe(false);
    });
  }

  it('one bad pair refuses the whole link (no partial apply)', () => {
    const after = applyPresetHash(current, '#p=1.st:300,lr:-1');
    expect(after.settings).toBe(current);
    expect(after.error).toMatch(/LR_PEAK/);
  });

  it('lists every problem of a link in one message', () => {
    const msg = refused('#p=1.zz:1,st:0,lr:x');
    expect(msg).toMatch(/unknown setting code "zz"/);
    expect(msg).toMatch(/STEPS: 0 is out of range/);
    expect(msg).toMatch(/LR_PEAK: expected a number/);
  });

  it('says how many more problems there are instead of listing hundreds', () => {
    const msg = refused(`#p=1.${Array.from({ length: 300 }, () => 'st:1').join(',')}`);
    expect(msg).toMatch(/STEPS is given twice; and 294 more problem\(s\)$/);
  });

  it('keeps long garbage out of the message', () => {
    const msg = refused(`#p=1.${'q'.repeat(1500)}:1`);
    expect(msg.length).toBeLessThan(200);
  });
});

describe('hashes that are not preset links', () => {
  it('are ignored, not refused', () => {
    for (const h of ['', '#', '#models', '#run', '#q=1.st:3']) {
      expect(decodePresetHash(h)).toBeNull();
      const cur = { ...DEFAULTS } as Settings;
      const r = applyPresetHash(cur, h);
      expect(r).toEqual({ settings: cur, error: null, applied: false });
    }
  });
});

describe('schema', () => {
  it('codes are unique two-letter names', () => {
    const codes = SETTINGS.map((s) => s.code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c).toMatch(/^[a-z]{2}$/);
  });

  it('defaults follow docs/method.md', () => {
    expect(DEFAULTS).toMatchObject({
      frac: 0.005, steps: 180, epochs: 0, microbatch: 2, accum: 1, seq: 512, lrPeak: 2e-4, wd: 0.005,
      trainFrom: null, reselectEvery: 50, evalEvery: 15, nImportance: 3, quantGroupSize: 128,
      keepAdamState: false, perEntryStep: false, accumulatedReselect: false, trainShared: false,
    });
  });
});
