// What a training run consumes and reports: its sample sets, and the records of steps, evaluations and reselections.

/** A fixed set of SEQ-token samples: ids and next-token targets, sample-major. */
export interface SampleSet {
  count: number;
  seq: number;
  /** Writes sample `i`'s ids and targets (IGNORE = 0xffffffff) into the given arrays at `offset`. */
  fill(i: number, ids: Uint32Array, targets: Uint32Array, offset: number): void;
}

export interface StepRecord { step: number; loss: number; lr: number; finite: boolean; sec: number; tok_s: number }
export interface EvalRecord { step: number; eval_loss: number; eval_ppl: number; heldout_loss: number | null; heldout_ppl: number | null }
export interface ReselectRecord { step: number; turnover: number; turnovers: number[] }

/** Progress of a run's phase: `done` of `total` units (windows, microbatches, layers) while it goes on. */
export interface PhaseRecord {
  phase: 'frozen' | 'restoring' | 'warming' | 'evaluation' | 'importance' | 'training' | 'checkpoint';
  /** The step the phase belongs to (the evaluation or checkpoint after it; 0 before the first). */
  step: number;
  done: number;
  total: number;
}

/** Called as a piece of work goes on: `done` of `total` units. */
export type OnProgress = (done: number, total: number) => void;
