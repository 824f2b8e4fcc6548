// usaf train's --train-shared flag: off by default, on from the flag or from the seed-style env var TRAIN_SHARED=1.
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../../src/cli/args.ts';
import { TRAIN_FLAGS } from '../../../src/cli/commands/train.ts';

describe('usaf train --train-shared', () => {
  it('is off by default, on with the flag or TRAIN_SHARED=1, off with TRAIN_SHARED=0', () => {
    expect(!!parseArgs([], TRAIN_FLAGS, {}).flags['train-shared']).toBe(false);
    expect(parseArgs(['--train-shared'], TRAIN_FLAGS, {}).flags['train-shared']).toBe(true);
    expect(parseArgs([], TRAIN_FLAGS, { TRAIN_SHARED: '1' }).flags['train-shared']).toBe(true);
    expect(parseArgs([], TRAIN_FLAGS, { TRAIN_SHARED: '0' }).flags['train-shared']).toBe(false);
    expect(parseArgs(['--train-shared=false'], TRAIN_FLAGS, { TRAIN_SHARED: '1' }).flags['train-shared']).toBe(false);
  });
});
