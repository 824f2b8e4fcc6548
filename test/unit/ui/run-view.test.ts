// What the Run screen says and plots (src/ui/run-view.ts): phases with their progress, the status while pausing and
// setting up, and the chart series with a second run overlaid (distinct labels, each run's own points).
import { describe, expect, it } from 'vitest';
import type { PhaseEvent, RunHistory } from '../../../src/worker/protocol.ts';
import { phaseText, runCharts, statusText, type StatusOf } from '../../../src/ui/run-view.ts';

const phase = (p: PhaseEvent['phase'], step = 0, done = 1, total = 2): PhaseEvent => ({ phase: p, step, done, total });
const base: StatusOf = { status: 'running', finished: false, failed: false, paused: false, pausing: false, phase: null };

describe('phaseText', () => {
  it('names each phase with its progress', () => {
    expect(phaseText(phase('evaluation', 0, 1, 2))).toBe('Evaluating before training: window 1 of 2');
    expect(phaseText(phase('evaluation', 40, 3, 8))).toBe('Evaluating after step 40: window 3 of 8');
    expect(phaseText(phase('importance', 0, 0, 4))).toBe('Importance pass (picks the weights to train): microbatch 0 of 4');
    expect(phaseText(phase('frozen', 0, 5, 40))).toMatch(/^Frozen pass .*: layer 5 of 40$/);
    expect(phaseText(phase('restoring', 12, 0, 1))).toBe('Restoring the checkpoint of step 12');
    expect(phaseText(phase('checkpoint', 12, 0, 1))).toBe('Writing the checkpoint of step 12');
    expect(phaseText(phase('loading'))).toBe('Loading the model onto the GPU');
  });
});

describe('statusText', () => {
  it('pausing names what the run finishes first, until it has paused', () => {
    expect(statusText({ ...base, pausing: true, phase: phase('evaluation', 3) })).toBe('pausing — finishing the evaluation');
    expect(statusText({ ...base, pausing: true, phase: phase('checkpoint', 3) })).toBe('pausing — finishing the checkpoint');
    expect(statusText({ ...base, pausing: true, phase: null })).toBe('pausing — finishing the step');
    expect(statusText({ ...base, paused: true, phase: phase('paused', 3) })).toBe('paused');
  });

  it('set-up phases say "setting up"; a later evaluation is part of running', () => {
    for (const p of ['loading', 'frozen', 'restoring', 'warming', 'importance'] as const) expect(statusText({ ...base, phase: phase(p) })).toBe('setting up');
    expect(statusText({ ...base, phase: phase('evaluation', 0) })).toBe('setting up');
    expect(statusText({ ...base, phase: phase('evaluation', 5) })).toBe('running');
    expect(statusText({ ...base, finished: true, status: 'interrupted', phase: phase('loading') })).toBe('interrupted');
    expect(statusText({ ...base, failed: true, finished: true })).toBe('failed');
  });
});

function history(seed: number, steps: number): RunHistory {
  const r = (i: number) => Math.abs(Math.sin(seed * 97 + i));
  return {
    steps: Array.from({ length: steps }, (_, i) => ({ step: i + 1, steps, loss: 3 - r(i), lr: r(i + 50) * 1e-3, tokensPerSecond: 100 * r(i + 9), elapsedMs: i, etaMs: null, gpuMemoryBytes: null, gpuPeakBytes: null, skippedSteps: 0, activeFraction: null })),
    evals: [0, steps].map((s, i) => ({ step: s, inDomainPpl: 10 + r(i + 20), heldoutPpl: seed % 2 ? null : 12 + r(i + 30) })),
    reselects: [],
  };
}

describe('runCharts', () => {
  it('one run: its points as they are, the step-0 perplexity included', () => {
    const a = history(2, 5);
    const c = runCharts({ name: 'a', ...a }, null);
    expect(c.loss).toHaveLength(1);
    expect(c.loss[0]!.points).toEqual(a.steps.map((s) => ({ x: s.step, y: s.loss })));
    expect(c.ppl.map((s) => s.label)).toEqual(['in-domain', 'held-out']);
    expect(c.ppl[0]!.points[0]).toEqual({ x: 0, y: a.evals[0]!.inDomainPpl });
    expect(c.ppl[1]!.points[0]).toEqual({ x: 0, y: a.evals[0]!.heldoutPpl });
  });

  it('two runs: each chart holds both, with distinct labels, the second dashed', () => {
    const a = history(2, 5);
    const b = history(3, 2);
    const c = runCharts({ name: 'mine', ...a }, { name: 'baseline', ...b });
    for (const chart of [c.loss, c.lr, c.ppl, c.tps]) {
      expect(new Set(chart.map((s) => s.label)).size).toBe(chart.length);
      expect(chart.some((s) => s.dashed && /baseline/.test(s.label))).toBe(true);
    }
    expect(c.loss.map((s) => s.label)).toEqual(['mine', 'baseline']);
    expect(c.loss[1]!.points).toEqual(b.steps.map((s) => ({ x: s.step, y: s.loss })));
    expect(c.ppl.map((s) => s.label)).toEqual(['in-domain (mine)', 'held-out (mine)', 'in-domain (baseline)']); // b has no held-out
    expect(c.ppl[2]!.points).toEqual(b.evals.map((e) => ({ x: e.step, y: e.inDomainPpl })));
    const same = runCharts({ name: 'x', ...a }, { name: 'x', ...b });
    expect(new Set(same.loss.map((s) => s.label)).size).toBe(2);
  });
});
