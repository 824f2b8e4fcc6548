// Contract: a run's charts from its log records (log.jsonl, the seed's format): the step, evaluation and reselection
// events the page plots, for a past run, a run reopened after a reload and the history a resumed run replays. Pure.

import type { EvalRecord, ReselectRecord, StepRecord } from '../engine/train/types.ts';
import type { RunHistory } from './protocol.ts';

/** The JSON objects of a log.jsonl text; a line cut short by a crash (the last one) is skipped. */
export function parseLog(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as unknown;
      if (r && typeof r === 'object' && !Array.isArray(r)) out.push(r as Record<string, unknown>);
    } catch {
      /* a torn line */
    }
  }
  return out;
}

/**
 * The events of log records, in order. A step's elapsed time is the sum of the logged step times up to it, except at
 * `known.step`, where the run's record says what it was (evaluations and set-up included); GPU memory, ETA and the
 * active fraction are not logged (null).
 */
export function historyFromLog(records: readonly Record<string, unknown>[], steps: number, known?: { step: number; elapsedMs: number }): RunHistory {
  const h: RunHistory = { steps: [], evals: [], reselects: [] };
  let elapsed = 0;
  let skipped = 0;
  for (const r of records) {
    if ('loss' in r && typeof r.step === 'number') {
      const s = r as unknown as StepRecord;
      elapsed += s.sec * 1000;
      if (!s.finite) skipped++;
      h.steps.push({
        step: s.step, steps, loss: s.loss, lr: s.lr, tokensPerSecond: s.tok_s,
        elapsedMs: known && known.step === s.step ? known.elapsedMs : elapsed,
        etaMs: null, gpuMemoryBytes: null, gpuPeakBytes: null, skippedSteps: skipped, activeFraction: null,
      });
    } else if ('eval_ppl' in r && typeof r.step === 'number') {
      const e = r as unknown as EvalRecord;
      h.evals.push({ step: e.step, inDomainPpl: e.eval_ppl, heldoutPpl: e.heldout_ppl });
    } else if ('turnover' in r && typeof r.step === 'number') {
      const x = r as unknown as ReselectRecord;
      h.reselects.push({ step: x.step, activeFraction: null, turnover: x.turnover });
    }
  }
  return h;
}
