// runTraining over a pipelined trainer (runStep returns the step before, flush the last one): the log keeps the order
// and step numbers of a step-by-step run — each step's record before its evaluation, the final step's record before
// the final evaluation (the fake refuses to evaluate with a step unread) — and a pause puts the last step's record out
// before the run waits.
import { describe, expect, it } from 'vitest';
import { runTraining } from '../../../src/engine/train/run.ts';
import type { Trainer } from '../../../src/engine/train/trainer.ts';
import type { SampleSet, StepRecord } from '../../../src/engine/train/types.ts';

const data: SampleSet = { count: 4, seq: 4, fill() {} };

/** A trainer whose step s has loss 10 + s and is skipped when s is in `bad`; its record comes a step late. */
function fakeTrainer(steps: number, bad: number[], events: string[]) {
  let pending: StepRecord | null = null;
  const t = {
    s: { steps, evalEvery: 2, evalWindows: null, nImportance: 1, microbatch: 1, accum: 1, seq: 4, seed: 1 },
    step: 0, skipped: 0, streamed: false, turnovers: [], trainableParams: 1, data,
    async init() {},
    async runStep() {
      const done = pending;
      if (done) t.skipped += done.finite ? 0 : 1;
      t.step++;
      pending = { step: t.step, loss: 10 + t.step, lr: 1, finite: !bad.includes(t.step), sec: 1, tok_s: 1 };
      events.push(`run ${t.step}`);
      return { done, reselect: null };
    },
    async flush() {
      const done = pending;
      pending = null;
      if (done) t.skipped += done.finite ? 0 : 1;
      return done;
    },
    async evaluate() {
      if (pending) throw new Error(`evaluate with step ${pending.step} unread`);
      return { loss: 1, ppl: Math.E, tokens: 4 };
    },
    async snapshot() {
      if (pending) throw new Error(`snapshot with step ${pending.step} unread`);
      events.push(`snapshot ${t.step}`);
      return {};
    },
  };
  return t as unknown as Trainer;
}

describe('runTraining with pipelined steps', () => {
  it('logs every step once, in order, before the evaluations of its step', async () => {
    const events: string[] = [];
    const log: object[] = [];
    const t = fakeTrainer(5, [3], events);
    const summary = await runTraining(t, {
      inDomain: data, heldout: null, sink: null, checkpointEvery: 2, settings: {},
      events: { onLog: (r) => void log.push(r) },
    });
    const kinds = log.map((r) => ('eval_ppl' in r ? `eval ${(r as unknown as { step: number }).step}` : `step ${(r as StepRecord).step}`));
    expect(kinds).toEqual(['eval 0', 'step 1', 'step 2', 'eval 2', 'step 3', 'step 4', 'eval 4', 'step 5', 'eval 5']);
    const steps = log.filter((r): r is StepRecord => 'loss' in r);
    expect(steps.map((r) => r.loss)).toEqual([11, 12, 13, 14, 15]);
    expect(steps.map((r) => r.finite)).toEqual([true, true, false, true, true]);
    expect(summary.skipped).toBe(1);
    expect(events).toEqual(['run 1', 'run 2', 'run 3', 'run 4', 'run 5']);
  });

  it('puts the last step out before waiting on a pause', async () => {
    const events: string[] = [];
    const seen: number[] = [];
    let release: () => void = () => {};
    let calls = 0;
    const control = async (): Promise<'go' | 'stop'> => {
      if (++calls === 3) {
        // paused before step 3: step 2's record must be out while the run waits
        await new Promise<void>((r) => (release = r));
      }
      return 'go';
    };
    const t = fakeTrainer(4, [], events);
    const run = runTraining(t, { inDomain: data, heldout: null, sink: null, checkpointEvery: 0, settings: {}, control, events: { onStep: (r) => void seen.push(r.step) } });
    for (let i = 0; i < 50 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 1));
    expect(seen).toEqual([1, 2]);
    expect(t.step).toBe(2);
    release();
    await run;
    expect(seen).toEqual([1, 2, 3, 4]);
  });
});
