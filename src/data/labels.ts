// Contract: labels of pre-tokenized records. Hugging Face convention: labels[i] = input_ids[i] (or -100, ignored) and
// the model shifts. Some recipes (the seed's README) write labels[i] = input_ids[i + 1]; detect that and shift back.

import { IGNORE } from '../engine/train/token-stream.ts';

export interface LabelStats {
  /** Positions with a label other than IGNORE (that have a next token to compare with). */
  compared: number;
  /** labels[i] === ids[i]. */
  same: number;
  /** labels[i] === ids[i + 1]. */
  shifted: number;
}

export type LabelConvention = 'hf' | 'shifted' | 'custom';

export function labelStats(records: readonly { ids: readonly number[]; labels: readonly number[] | null }[]): LabelStats {
  const s: LabelStats = { compared: 0, same: 0, shifted: 0 };
  for (const r of records) {
    const { ids, labels } = r;
    if (!labels) continue;
    const n = Math.min(labels.length, ids.length - 1);
    for (let i = 0; i < n; i++) {
      const l = labels[i]!;
      if (l === IGNORE) continue;
      s.compared++;
      if (l === ids[i]) s.same++;
      if (l === ids[i + 1]) s.shifted++;
    }
  }
  return s;
}

/**
 * Which convention the labels follow: 'shifted' when (nearly) every label equals the next input id and clearly more
 * of them do than equal their own; 'hf' when (nearly) every label equals its own input id; else 'custom'.
 */
export function labelConvention(s: LabelStats): LabelConvention {
  if (s.compared === 0) return 'hf';
  if (s.shifted >= 0.98 * s.compared && s.shifted > 1.5 * s.same) return 'shifted';
  if (s.same >= 0.98 * s.compared) return 'hf';
  return 'custom';
}

/** Shifted labels (labels[i] = ids[i + 1]) → Hugging Face labels of ids.length entries (first one ignored). */
export function unshiftLabels(ids: readonly number[], shifted: readonly number[]): number[] {
  const out = new Array<number>(ids.length);
  out[0] = IGNORE;
  for (let i = 1; i < ids.length; i++) out[i] = shifted[i - 1] ?? IGNORE;
  return out;
}
