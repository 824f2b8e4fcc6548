// Contract: an engine error in words (describeRunError): a lost device, GPU out of memory and a full browser storage
// each get their own message, saying whether and from which step the run can resume.
import { describe, expect, it } from 'vitest';
import { describeRunError } from '../../../src/worker/runs.ts';

const named = (name: string, message: string): Error => Object.assign(new Error(message), { name });

describe('describeRunError', () => {
  it('a lost device: resumable from the last checkpoint', () => {
    const r = describeRunError(named('DeviceLostError', 'GPU device lost: reset'), 3);
    expect(r).toMatchObject({ kind: 'device-lost', resumable: true });
    expect(r.message).toMatch(/The GPU device was lost .* can resume from step 3/);
    expect(describeRunError(named('DeviceLostError', 'x'), 0).message).toMatch(/no checkpoint yet/);
  });

  it('GPU out of memory: names the settings that lower memory', () => {
    const r = describeRunError(named('GPUOutOfMemoryError', 'createBuffer failed'), 2);
    expect(r.kind).toBe('out-of-memory');
    expect(r.message).toMatch(/QUANTIZE_EXPERTS or STREAM_FROZEN/);
  });

  it('storage full (QuotaExceededError, a DOMException in browsers): the kept checkpoint, and what to do', () => {
    const quota = typeof DOMException === 'function' ? new DOMException('The quota has been exceeded.', 'QuotaExceededError') : named('QuotaExceededError', 'The quota has been exceeded.');
    const r = describeRunError(quota, 4);
    expect(r).toMatchObject({ kind: 'error', resumable: true });
    expect(r.message).toMatch(/storage for this site is full.*checkpoint of step 4 is kept; free space on the Models screen.*then resume/);
    const early = describeRunError(quota, 0);
    expect(early.resumable).toBe(false);
    expect(early.message).toMatch(/Nothing of this run was checkpointed yet.*then start again/);
  });

  it('anything else: the engine message as it is', () => {
    expect(describeRunError(new Error('bad token id 9999'), 0)).toEqual({ kind: 'error', message: 'The run failed: bad token id 9999', resumable: false });
  });
});
