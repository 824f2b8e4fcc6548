// The worker's run bookkeeping (src/worker/runs.ts) with a fake engine: events forwarded to the page, the record
// kept (steps, loss, perplexities before/after, checkpoint), the log stored in order, and endings reported in words.
import { describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../../src/presets/index.ts';
import type { RunCallbacks, RunError, RunSummary } from '../../../src/worker/protocol.ts';
import { ActiveRun, describeRunError, type RunRecords } from '../../../src/worker/runs.ts';
import type { RunHandle } from '../../../src/worker/engine-binding.ts';

function summary(): RunSummary {
  return {
    id: 'run-1', name: 'run-1', modelId: 'm', trainDatasetId: 'd', heldoutDatasetId: null, settings: { ...DEFAULTS },
    status: 'running', createdAt: 0, updatedAt: 0, steps: 3, stepsDone: 0, checkpointStep: 0, lastLoss: null,
    pplBefore: null, pplAfter: null, error: null,
  };
}

function harness() {
  const written: RunSummary[] = [];
  const log: string[] = [];
  const records: RunRecords = {
    write: async (r) => { written.push(r); },
    appendLog: async (_id, lines) => { log.push(...lines); },
  };
  const seen: string[] = [];
  let done: RunSummary | null = null;
  let error: RunError | null = null;
  const page: RunCallbacks = {
    onStep: (e) => seen.push(`step ${e.step}`),
    onEval: (e) => seen.push(`eval ${e.step}`),
    onReselect: (e) => seen.push(`reselect ${e.step}`),
    onLog: () => seen.push('log'),
    onDone: (s) => { done = s; },
    onError: (e) => { error = e; },
  };
  return { written, log, seen, page, records, done: () => done, error: () => error };
}

function fakeHandle(): RunHandle & { finish(how: 'done' | 'stopped'): void; fail(e: Error): void } {
  let ok!: (v: 'done' | 'stopped') => void;
  let ko!: (e: Error) => void;
  const done = new Promise<'done' | 'stopped'>((a, b) => { ok = a; ko = b; });
  return { pause() {}, resume() {}, stop() {}, done, finish: (how) => ok(how), fail: (e) => ko(e) };
}

const step = (n: number, loss: number) => ({ step: n, steps: 3, loss, lr: 1e-4, tokensPerSecond: 100, elapsedMs: n * 10, etaMs: 0, gpuMemoryBytes: null, gpuPeakBytes: null, skippedSteps: 0, activeFraction: 0.005 });

describe('a run in the worker', () => {
  it('forwards events, keeps the record and the log, and reports the end', async () => {
    const h = harness();
    const run = new ActiveRun(summary(), h.records, h.page);
    const ev = run.events();
    const handle = fakeHandle();
    const following = run.follow(handle);
    ev.onEval({ step: 0, inDomainPpl: 14.54, heldoutPpl: 16.39 });
    ev.onLog('{"step":1,"loss":2.7}');
    ev.onStep(step(1, 2.7));
    ev.onReselect({ step: 2, activeFraction: 0.005, turnover: 0.92 });
    ev.onStep(step(2, 2.65));
    ev.onCheckpoint(2);
    ev.onLog('{"step":3,"loss":2.6}');
    ev.onStep(step(3, 2.6));
    ev.onEval({ step: 3, inDomainPpl: 14.3, heldoutPpl: 16.37 });
    handle.finish('done');
    await following;
    expect(h.seen).toEqual(['eval 0', 'log', 'step 1', 'reselect 2', 'step 2', 'log', 'step 3', 'eval 3']);
    expect(h.log).toEqual(['{"step":1,"loss":2.7}', '{"step":3,"loss":2.6}']);
    const last = h.written.at(-1)!;
    expect(last).toMatchObject({
      status: 'done', stepsDone: 3, lastLoss: 2.6, checkpointStep: 2,
      pplBefore: { inDomain: 14.54, heldout: 16.39 }, pplAfter: { inDomain: 14.3, heldout: 16.37 },
    });
    expect(h.done()).toMatchObject({ status: 'done', stepsDone: 3 });
    expect(h.error()).toBeNull();
  });

  it('a lost device ends the run as failed, in words, resumable from its checkpoint', async () => {
    const h = harness();
    const run = new ActiveRun(summary(), h.records, h.page);
    const handle = fakeHandle();
    const following = run.follow(handle);
    run.events().onCheckpoint(15);
    const lost = new Error('GPU device lost (unknown): the GPU process crashed');
    lost.name = 'DeviceLostError';
    handle.fail(lost);
    await following;
    expect(h.error()).toMatchObject({ kind: 'device-lost', resumable: true });
    expect(h.error()!.message).toMatch(/The GPU device was lost .* resume from step 15/);
    expect(h.written.at(-1)).toMatchObject({ status: 'failed', checkpointStep: 15 });
  });

  it('keeps the elapsed time of the last step and of the checkpoint, forwards phases, and keeps a rename', async () => {
    const h = harness();
    const phases: string[] = [];
    const run = new ActiveRun(summary(), h.records, { ...h.page, onPhase: (e) => phases.push(`${e.phase} ${e.done}/${e.total}`) });
    const ev = run.events();
    const handle = fakeHandle();
    const following = run.follow(handle);
    ev.onPhase!({ phase: 'evaluation', step: 0, done: 1, total: 2 });
    ev.onStep({ ...step(1, 2.7), elapsedMs: 4321 });
    ev.onCheckpoint(1, 5678);
    run.rename('baseline');
    ev.onStep({ ...step(2, 2.6), elapsedMs: 9876 });
    handle.finish('stopped');
    await following;
    expect(phases).toEqual(['evaluation 1/2']);
    expect(h.written.at(-1)).toMatchObject({ status: 'stopped', name: 'baseline', elapsedMs: 9876, checkpointStep: 1, checkpointElapsedMs: 5678 });
  });

  it('describes other endings', () => {
    expect(describeRunError(new Error('Out of memory while allocating'), 0)).toMatchObject({ kind: 'out-of-memory', resumable: false });
    expect(describeRunError('boom', 3)).toEqual({ kind: 'error', message: 'The run failed: boom', resumable: true });
    expect(describeRunError(Object.assign(new Error('x'), { name: 'DeviceLostError' }), 0).message).toMatch(/must start again/);
  });
});
