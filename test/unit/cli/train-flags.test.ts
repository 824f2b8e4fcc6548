// usaf train's improvement flags (--train-shared, --keep-adam-state, --per-entry-step, --accumulated-reselect): off by
// default, on from the flag or from the seed-style env var, and listed by `usaf train --help`.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseArgs } from '../../../src/cli/args.ts';
import { train, TRAIN_FLAGS } from '../../../src/cli/commands/train.ts';

const FLAGS = [
  ['train-shared', 'TRAIN_SHARED'],
  ['keep-adam-state', 'KEEP_ADAM_STATE'],
  ['per-entry-step', 'PER_ENTRY_STEP'],
  ['accumulated-reselect', 'ACCUMULATED_RESELECT'],
] as const;

describe('usaf train improvement flags', () => {
  afterEach(() => vi.restoreAllMocks());

  for (const [flag, env] of FLAGS) {
    it(`--${flag} is off by default, on with the flag or ${env}=1, off with ${env}=0`, () => {
      expect(parseArgs([], TRAIN_FLAGS, {}).flags[flag]).toBe(false);
      expect(parseArgs([], TRAIN_FLAGS, { [env]: '' }).flags[flag]).toBe(false);
      expect(parseArgs([`--${flag}`], TRAIN_FLAGS, {}).flags[flag]).toBe(true);
      expect(parseArgs([], TRAIN_FLAGS, { [env]: '1' }).flags[flag]).toBe(true);
      expect(parseArgs([], TRAIN_FLAGS, { [env]: '0' }).flags[flag]).toBe(false);
      expect(parseArgs([`--${flag}=false`], TRAIN_FLAGS, { [env]: '1' }).flags[flag]).toBe(false);
    });
  }

  it('usaf train --help lists every improvement flag', async () => {
    const lines: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((s: unknown) => void lines.push(String(s)));
    expect(await train.run(['--help'])).toBe(0);
    const help = lines.join('\n');
    for (const [flag] of FLAGS) expect(help).toContain(`--${flag}`);
    for (const flag of ['--quantize-experts', '--group-size', '--gpu-gib']) expect(help).toContain(flag);
  });
});
