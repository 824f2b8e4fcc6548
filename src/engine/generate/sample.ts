// Next-token sampling on the host from one row of logits: repetition penalty, then greedy (temperature 0) or
// temperature → top-k → top-p (nucleus) → a draw from the seeded RNG. Pure functions; the GPU only gives the logits.

import { Rng } from '../train/rng.ts';

export interface SampleSettings {
  maxNewTokens: number;
  /** 0: greedy (argmax). */
  temperature: number;
  /** Keep the k most likely tokens; 0: all. */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1: all. */
  topP: number;
  /** > 1 discourages tokens already in the prompt or output (CTRL / transformers rule); 1: off. */
  repetitionPenalty: number;
  seed: number;
}

/** Why a setting cannot be used, or null when all are fine. */
export function checkSampleSettings(s: SampleSettings): string | null {
  if (!Number.isSafeInteger(s.maxNewTokens) || s.maxNewTokens < 1) return `max new tokens must be a whole number >= 1, got ${s.maxNewTokens}`;
  if (!(Number.isFinite(s.temperature) && s.temperature >= 0)) return `temperature must be >= 0, got ${s.temperature}`;
  if (!Number.isSafeInteger(s.topK) || s.topK < 0) return `top-k must be a whole number >= 0 (0: off), got ${s.topK}`;
  if (!(s.topP > 0 && s.topP <= 1)) return `top-p must be in (0, 1], got ${s.topP}`;
  if (!(Number.isFinite(s.repetitionPenalty) && s.repetitionPenalty > 0)) return `repetition penalty must be > 0, got ${s.repetitionPenalty}`;
  if (!Number.isSafeInteger(s.seed)) return `seed must be a whole number, got ${s.seed}`;
  return null;
}

/** In place: each logit of a token in `seen` divided by `penalty` when positive, multiplied when negative. */
export function applyRepetitionPenalty(logits: Float32Array | Float64Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(seen)) {
    const x = logits[id]!;
    logits[id] = x > 0 ? x / penalty : x * penalty;
  }
}

/** Index of the largest value (the first on ties). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/**
 * The distribution sampling draws from, as (token, probability) pairs, most likely first: softmax(logits / T) over the
 * top-k tokens, cut to the smallest prefix reaching top-p (the token crossing p included), renormalized.
 */
export function sampleDistribution(logits: ArrayLike<number>, s: Pick<SampleSettings, 'temperature' | 'topK' | 'topP'>): { ids: number[]; probs: number[] } {
  const n = logits.length;
  let ids = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  if (s.topK > 0 && s.topK < n) ids = ids.slice(0, s.topK);
  const m = logits[ids[0]!]!;
  let probs = ids.map((i) => Math.exp((logits[i]! - m) / s.temperature));
  let z = probs.reduce((a, b) => a + b, 0);
  if (s.topP < 1) {
    let acc = 0, keep = 0;
    while (keep < probs.length && acc < s.topP * z) acc += probs[keep++]!;
    ids = ids.slice(0, Math.max(1, keep));
    probs = probs.slice(0, ids.length);
    z = acc;
  }
  return { ids, probs: probs.map((p) => p / z) };
}

/** A seeded sampler: next(logits, seen) → token id (logits are modified by the repetition penalty). */
export class Sampler {
  private readonly rng: Rng;
  constructor(readonly s: SampleSettings) {
    this.rng = new Rng(s.seed >>> 0);
  }

  next(logits: Float32Array, seen: Iterable<number>): number {
    applyRepetitionPenalty(logits, seen, this.s.repetitionPenalty);
    if (this.s.temperature === 0) return argmax(logits);
    const { ids, probs } = sampleDistribution(logits, this.s);
    let u = this.rng.next();
    for (let i = 0; i < ids.length; i++) {
      u -= probs[i]!;
      if (u < 0) return ids[i]!;
    }
    return ids[ids.length - 1]!;
  }
}
