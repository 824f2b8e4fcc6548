// Contract: what the Run screen says and plots for a run: its phase and status in words, and its chart series — the
// shown run's, with a second run overlaid (dashed) when one is picked for comparison. Pure; tested in test/unit/ui.

import type { EvalEvent, PhaseEvent, RunHistory, RunStatus, StepEvent } from '../worker/protocol.ts';

export interface Point { x: number; y: number }
export interface ChartSeries { label: string; color: string; points: Point[]; dashed?: boolean }

/** A phase in words, with its progress. */
export function phaseText(p: PhaseEvent): string {
  const of = p.total > 0 ? `${p.done} of ${p.total}` : '';
  switch (p.phase) {
    case 'loading': return 'Loading the model onto the GPU';
    case 'frozen': return `Frozen pass (the untrained lower layers, once per sample): layer ${of}`;
    case 'restoring': return `Restoring the checkpoint of step ${p.step}`;
    case 'warming': return 'Preparing the GPU kernels (so that the first resumed step is timed on its own)';
    case 'evaluation': return `${p.step === 0 ? 'Evaluating before training' : `Evaluating after step ${p.step}`}: window ${of}`;
    case 'importance': return `Importance pass (picks the weights to train): microbatch ${of}`;
    case 'training': return `Training: step ${p.step + 1} under way`;
    case 'checkpoint': return `Writing the checkpoint of step ${p.step}`;
    case 'paused': return `Paused after step ${p.step}`;
  }
}

/** The phases before the first step of a session. */
export const SETUP_PHASES: readonly PhaseEvent['phase'][] = ['loading', 'frozen', 'restoring', 'warming', 'importance'];

export interface StatusOf {
  status: RunStatus;
  finished: boolean;
  failed: boolean;
  paused: boolean;
  pausing: boolean;
  phase: PhaseEvent | null;
}

/** The run's status in words: pausing names what it finishes first; set-up phases say "setting up". */
export function statusText(r: StatusOf): string {
  if (r.failed) return 'failed';
  if (r.finished) return r.status;
  if (r.pausing) return `pausing — finishing the ${r.phase?.phase === 'evaluation' ? 'evaluation' : r.phase?.phase === 'checkpoint' ? 'checkpoint' : 'step'}`;
  if (r.paused) return 'paused';
  if (r.phase && (SETUP_PHASES.includes(r.phase.phase) || (r.phase.phase === 'evaluation' && r.phase.step === 0))) return 'setting up';
  return 'running';
}

const stepPoints = (steps: readonly StepEvent[], y: (s: StepEvent) => number): Point[] => steps.map((s) => ({ x: s.step, y: y(s) }));
const pplPoints = (evals: readonly EvalEvent[], heldout: boolean): Point[] => evals
  .filter((e) => !heldout || e.heldoutPpl !== null)
  .map((e) => ({ x: e.step, y: heldout ? e.heldoutPpl! : e.inDomainPpl }));

export interface Charts { loss: ChartSeries[]; lr: ChartSeries[]; ppl: ChartSeries[]; tps: ChartSeries[] }

/**
 * The four charts' series. With `other` (a second run), each chart gets its series too, dashed, labelled with its
 * name (and the shown run's series with the shown run's name, so the legend tells them apart).
 */
export function runCharts(run: RunHistory & { name: string }, other: (RunHistory & { name: string }) | null): Charts {
  const a = other ? ` (${run.name})` : '';
  const bName = other && other.name === run.name ? `${other.name}, compared` : other?.name;
  const b = ` (${bName})`;
  const loss = [{ label: other ? run.name : 'loss', color: 'var(--c1)', points: stepPoints(run.steps, (s) => s.loss) }];
  const lr = [{ label: `learning rate${a}`, color: 'var(--c2)', points: stepPoints(run.steps, (s) => s.lr) }];
  const ppl: ChartSeries[] = [
    { label: `in-domain${a}`, color: 'var(--c1)', points: pplPoints(run.evals, false) },
    { label: `held-out${a}`, color: 'var(--c3)', dashed: true, points: pplPoints(run.evals, true) },
  ];
  const tps = [{ label: `tokens/s${a}`, color: 'var(--c4)', points: stepPoints(run.steps, (s) => s.tokensPerSecond) }];
  if (other) {
    loss.push({ label: bName!, color: 'var(--c2)', points: stepPoints(other.steps, (s) => s.loss), dashed: true } as ChartSeries);
    lr.push({ label: `learning rate${b}`, color: 'var(--c3)', points: stepPoints(other.steps, (s) => s.lr), dashed: true } as ChartSeries);
    ppl.push({ label: `in-domain${b}`, color: 'var(--c2)', dashed: true, points: pplPoints(other.evals, false) });
    if (other.evals.some((e) => e.heldoutPpl !== null)) ppl.push({ label: `held-out${b}`, color: 'var(--c4)', dashed: true, points: pplPoints(other.evals, true) });
    tps.push({ label: `tokens/s${b}`, color: 'var(--c1)', points: stepPoints(other.steps, (s) => s.tokensPerSecond), dashed: true } as ChartSeries);
  }
  return { loss, lr, ppl, tps };
}
