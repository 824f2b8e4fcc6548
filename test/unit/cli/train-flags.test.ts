// usaf train's flags: every setting of the engine's table is a flag and an env var (improvement flags off by default);
// every bad value the issue found by hand is refused with the flag, the value and what is allowed, before the GPU is
// touched (nodeGpu throws here if called); hostile flag names are unknown flags; token ids are checked against
// config.json's vocab_size on a model without a tokenizer.
import { mkdtemp, readdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseArgs, UsageError } from '../../../src/cli/args.ts';
import { train, TRAIN_FLAGS, trainSettingsFromFlags } from '../../../src/cli/commands/train.ts';
import { DEFAULTS, defaultRunSettings, envName, flagName, RUN_SETTINGS, SETTINGS } from '../../../src/presets/index.ts';
import { readDataset } from '../../../src/cli/dataset.ts';
import { readSpec } from '../../../src/cli/load-model.ts';
import { saveTrainCheckpoint } from '../../../src/engine/train/checkpoint-file.ts';
import { setupRun } from '../../../src/engine/train/setup.ts';
import { nodeFileSink } from '../../../src/node/file-sink.ts';

vi.mock('../../../src/node/gpu.ts', () => ({ nodeGpu: () => { throw new Error('the GPU was touched'); } }));

const DEMO = 'public/models/usaf-demo-moe';
const DATA = 'public/data/finetune.jsonl';

const FLAGS = [
  ['train-shared', 'TRAIN_SHARED'],
  ['keep-adam-state', 'KEEP_ADAM_STATE'],
  ['per-entry-step', 'PER_ENTRY_STEP'],
  ['accumulated-reselect', 'ACCUMULATED_RESELECT'],
] as const;

const settingsOf = (argv: string[], env: Record<string, string> = {}) => trainSettingsFromFlags(parseArgs(argv, TRAIN_FLAGS, env).flags);

/** The refusal of `usaf train <argv>` on the demo model (a UsageError), or null when it got as far as the GPU. */
async function refusal(argv: string[]): Promise<string | null> {
  const e = await train.run(['--model', DEMO, '--dataset', DATA, '--out', join(tmpdir(), 'usaf-never-written'), ...argv]).then(() => null, (err: unknown) => err as Error);
  if (e && /the GPU was touched/.test(e.message)) return null;
  return e ? `${e.name}: ${e.message}` : 'no error';
}

describe('usaf train flags', () => {
  afterEach(() => vi.restoreAllMocks());

  for (const [flag, env] of FLAGS) {
    it(`--${flag} is off by default, on with the flag or ${env}=1, off with ${env}=0`, () => {
      expect(parseArgs([], TRAIN_FLAGS, {}).flags[flag]).toBe(false);
      expect(settingsOf([]).settings).toEqual(DEFAULTS);
      const key = SETTINGS.find((s) => flagName(s) === flag)!.key;
      expect(settingsOf([`--${flag}`]).settings[key]).toBe(true);
      expect(settingsOf([], { [env]: '1' }).settings[key]).toBe(true);
      expect(settingsOf([], { [env]: '0' }).settings[key]).toBe(false);
      expect(settingsOf([`--${flag}=false`], { [env]: '1' }).settings[key]).toBe(false);
    });
  }

  it('every setting of the table is a flag and an env var; no flag is the CLI\'s own copy of one', () => {
    const table = [...SETTINGS, ...RUN_SETTINGS];
    for (const s of table) expect(TRAIN_FLAGS[flagName(s)]).toMatchObject({ env: envName(s) });
    expect(Object.keys(TRAIN_FLAGS).filter((f) => !table.some((s) => flagName(s) === f)).sort()).toEqual(['base', 'dataset', 'heldout', 'model', 'no-export', 'out', 'resume']);
    expect(settingsOf(['--seq', '96', '--lr-peak', '1e-3', '--group-size', '64', '--window-samples', '--eval-windows', '4'], { STEPS: '7', GPU_GIB: '2.5' })).toEqual({
      settings: { ...DEFAULTS, seq: 96, lrPeak: 1e-3, quantGroupSize: 64, windowSampling: true, steps: 7 },
      run: { ...defaultRunSettings(), evalWindows: 4, gpuGib: 2.5 },
    });
  });

  it('usaf train --help lists every setting with its env var and range', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((s: unknown) => void lines.push(String(s)));
    expect(await train.run(['--help'])).toBe(0);
    const help = lines.join('\n');
    for (const s of [...SETTINGS, ...RUN_SETTINGS]) expect(help).toContain(`--${flagName(s)}`);
    expect(help).toMatch(/--microbatch <number> .*\[a whole number from 1 to 1024\] \(default 2\) \[env MICROBATCH\]/);
  });

  it('refuses each bad value before the GPU is touched, naming the flag, the value and what is allowed', async () => {
    const cases: [string[], string][] = [
      [['--microbatch', '0'], '--microbatch (MICROBATCH): 0 is out of range: expected a whole number from 1 to 1024'],
      [['--steps', '0'], '--steps (STEPS): 0 is out of range'],
      [['--accum', '0'], '--accum (ACCUM): 0 is out of range'],
      [['--train-from', '1.5'], '--train-from (TRAIN_FROM): expected a whole number, got 1.5'],
      [['--frac', '2'], '--frac (FRAC): 2 is out of range: expected a number above 0 and at most 1'],
      [['--steps', '2.5'], '--steps (STEPS): expected a whole number, got 2.5'],
      [['--frac', '0'], '--frac (FRAC): 0 is out of range'],
      [['--frac', '-1'], '--frac (FRAC): -1 is out of range'],
      [['--seq', '1'], '--seq (SEQ): 1 is out of range: expected a whole number from 2 to'],
      [['--seq', '4096'], '--seq (SEQ): 4096 is not allowed: this model handles at most 2048 positions'],
      [['--train-from', '8'], '--train-from (TRAIN_FROM): 8 is not allowed: this model has 8 layers (0–7)'],
      [['--eval-windows', '0'], '--eval-windows (EVAL_WINDOWS): 0 is out of range'],
      [['--lr-peak', '-1'], '--lr-peak (LR_PEAK): -1 is out of range'],
      [['--n-importance', '0'], '--n-importance (N_IMPORTANCE): 0 is out of range'],
      [['--frozen-cache-n', '-1'], '--frozen-cache-n (FROZEN_CACHE_N): -1 is out of range'],
      [['--eval-split', '1'], '--eval-split (EVAL_SPLIT): 1 is out of range: expected a number from 0 to below 1'],
      [['--group-size', '100'], '--group-size (GROUP_SIZE): expected one of 128, 64, got 100'],
      [['--gpu-gib', '0'], '--gpu-gib (GPU_GIB): 0 is out of range'],
      [['--steps', 'many'], '--steps must be a number, got "many"'],
      [['--__proto__', '1'], 'unknown flag --__proto__'],
      [['--constructor', '1'], 'unknown flag --constructor'],
      [['--toString'], 'unknown flag --toString'],
    ];
    for (const [argv, message] of cases) {
      const r = await refusal(argv);
      expect(r, argv.join(' ')).toContain('UsageError');
      expect(r, argv.join(' ')).toContain(message);
    }
    // two bad values: both named
    expect(await refusal(['--steps', '0', '--accum', '0.5'])).toMatch(/--steps \(STEPS\): 0 is out of range.*; --accum \(ACCUM\): expected a whole number, got 0.5/);
    // an env var is checked like its flag
    vi.stubEnv('MICROBATCH', '0');
    expect(await refusal([])).toContain('--microbatch (MICROBATCH): 0 is out of range');
    vi.unstubAllEnvs();
    // good values get as far as the GPU
    expect(await refusal(['--steps', '1', '--seq', '16'])).toBeNull();
  });

  it('a model without a tokenizer: token ids at or above config.json\'s vocab_size are refused before the GPU', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usaf-notok-'));
    for (const f of await readdir(DEMO)) if (!f.startsWith('tokenizer')) await symlink(resolve(DEMO, f), join(dir, f));
    const rec = (ids: number[]) => JSON.stringify({ input_ids: ids, labels: ids });
    await writeFile(join(dir, 'ok.jsonl'), [rec([1, 2, 3, 4095]), rec([5, 6])].join('\n'));
    await writeFile(join(dir, 'bad.jsonl'), [rec([1, 2, 3]), rec([5, 4096, 7])].join('\n'));
    const run = (data: string) => train.run(['--model', dir, '--dataset', join(dir, data), '--out', join(dir, 'out')]).then(() => null, (e: Error) => e.message);
    expect(await run('bad.jsonl')).toMatch(/bad.jsonl line 2: token id 4096 is outside the model's vocabulary \(4096 ids\)/);
    expect(await run('ok.jsonl')).toMatch(/the GPU was touched/);
  });

  it('--resume with other settings or data is refused before the GPU, each difference listed; the same run goes on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'usaf-resume-'));
    const spec = await readSpec(DEMO);
    const ds = await readDataset(DEMO, DATA, { vocabSize: spec.vocab });
    const saved = setupRun({
      settings: { ...DEFAULTS, seq: 16, steps: 2 }, run: defaultRunSettings(), spec, padId: 0, maxBufferSize: null,
      data: { train: ds.train, eval: null, heldout: null, pretokenized: false },
    }).checkpoint;
    await saveTrainCheckpoint(nodeFileSink(dir, { fsync: false }), '', {
      version: 1, settings: saved as unknown as Record<string, unknown>, step: 1, rng: { seed: 0, state: [1] },
      dataOrder: { epoch: 0, cursor: 0, order: new Uint32Array(0) }, frozenCacheId: '', skipped: 0, turnovers: [], adamT: 1, layers: [], log: [],
    });
    const base = ['--out', dir, '--resume', '--seq', '16', '--steps', '2'];
    expect(await refusal([...base, '--lr-peak', '1e-3', '--wd', '0.01', '--dataset', 'public/data/heldout.jsonl'])).toMatch(
      /SettingsError: the run cannot resume: .*3 things differ.*:\n {2}- LR_PEAK: 0.0002 in the checkpoint, 0.001 now\n {2}- WD: 0.005 in the checkpoint, 0.01 now\n {2}- training data: 100912 tokens .* 131690 tokens/s);
    expect(await refusal([...base, '--eval-every', '1', '--checkpoint-every', '1'])).toBeNull();
  });

  it('UsageError is what main() prints without a stack and exits 2 for', () => {
    expect(() => settingsOf(['--microbatch', '0'])).toThrow(UsageError);
  });
});
