// A run's charts from its log (src/worker/run-history.ts): the seed's records in a random order of kinds, a torn last
// line, and the elapsed time known from the record at its step.
import { describe, expect, it } from 'vitest';
import { historyFromLog, parseLog } from '../../../src/worker/run-history.ts';

function randomLog(seed: number) {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const records: Record<string, unknown>[] = [];
  const want = { steps: [] as { step: number; loss: number; sec: number; finite: boolean }[], evals: [] as { step: number; ppl: number; heldout: number | null }[], reselects: [] as { step: number; turnover: number }[] };
  const evalAt = (step: number) => {
    const ppl = 10 + rnd() * 5;
    const heldout = rnd() < 0.5 ? null : 12 + rnd();
    records.push({ step, eval_loss: Math.log(ppl), eval_ppl: ppl, heldout_loss: heldout && Math.log(heldout), heldout_ppl: heldout });
    want.evals.push({ step, ppl, heldout });
  };
  evalAt(0);
  for (let step = 1; step <= 12; step++) {
    if (rnd() < 0.3) {
      const turnover = rnd();
      records.push({ step, turnover, turnovers: [turnover] });
      want.reselects.push({ step, turnover });
    }
    const rec = { step, loss: 3 - step * 0.1 + rnd() * 0.01, lr: 1e-4 * rnd(), finite: rnd() > 0.2, sec: 1 + rnd() * 5, tok_s: 100 * rnd() };
    records.push(rec);
    want.steps.push(rec);
    if (rnd() < 0.4) evalAt(step);
  }
  return { records, want };
}

describe('parseLog', () => {
  it('reads JSON lines, skipping blank lines, a torn last line and non-objects', () => {
    const text = '{"step":0,"eval_ppl":14.5}\n\n{"step":1,"loss":2.7}\n[1,2]\n{"step":2,"lo';
    expect(parseLog(text)).toEqual([{ step: 0, eval_ppl: 14.5 }, { step: 1, loss: 2.7 }]);
  });
});

describe('historyFromLog', () => {
  it('steps, evaluations and reselections in order, elapsed = the logged step times summed, skipped steps counted', () => {
    for (const seed of [1, 7, 1234]) {
      const { records, want } = randomLog(seed);
      const text = records.map((r) => JSON.stringify(r)).join('\n');
      const h = historyFromLog(parseLog(text), 12);
      expect(h.steps.map((s) => [s.step, s.loss])).toEqual(want.steps.map((s) => [s.step, s.loss]));
      let sum = 0;
      let skipped = 0;
      want.steps.forEach((s, i) => {
        sum += s.sec * 1000;
        if (!s.finite) skipped++;
        expect(h.steps[i]!.elapsedMs).toBeCloseTo(sum, 9);
        expect(h.steps[i]!.skippedSteps).toBe(skipped);
        expect(h.steps[i]!.steps).toBe(12);
      });
      expect(h.evals).toEqual(want.evals.map((e) => ({ step: e.step, inDomainPpl: e.ppl, heldoutPpl: e.heldout })));
      expect(h.reselects).toEqual(want.reselects.map((x) => ({ ...x, activeFraction: null })));
    }
  });

  it('the elapsed time the record knows replaces the sum at its step only', () => {
    const { records } = randomLog(5);
    const plain = historyFromLog(records, 12);
    const h = historyFromLog(records, 12, { step: 12, elapsedMs: 987_654 });
    expect(h.steps.at(-1)!.elapsedMs).toBe(987_654);
    expect(h.steps.slice(0, -1).map((s) => s.elapsedMs)).toEqual(plain.steps.slice(0, -1).map((s) => s.elapsedMs));
    expect(historyFromLog(records, 12, { step: 99, elapsedMs: 1 }).steps).toEqual(plain.steps);
  });
});
