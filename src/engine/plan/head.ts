// The LM head's token chunk from the run's memory budget: each chunk of tokens reads all of the head's weight W [V, H]
// twice (logits, then dh), so the fewest chunks whose logits [rows, V] f32 fit the plan's headroom and one binding.

import type { ModelSpec } from '../model/spec.ts';
import { xentDefaultRows, xentMaxRows, xentTokenChunk } from '../ops/xent.ts';
import { planMemory, type PlanSettings } from './memory.ts';

/**
 * The most token rows of logits the head holds at once: the largest chunk (fewest chunks) whose plan fits `gpuBytes` and
 * whose logits fit a binding of `maxBinding` bytes (and 2 GiB); the default (xentDefaultRows) when no larger one does.
 */
export function chooseHeadRows(spec: ModelSpec, s: PlanSettings, gpuBytes: number, maxBinding = Infinity): number {
  const T = s.microbatch * s.seq, V = spec.vocab;
  const base = xentDefaultRows(V);
  const cap = Math.min(T, xentMaxRows(V, maxBinding));
  for (let n = Math.ceil(T / cap); ; n++) {
    const rows = xentTokenChunk(T, V, Math.ceil(T / n));
    if (rows <= base) return base;
    if (planMemory(spec, { ...s, headRows: rows }).fits(gpuBytes)) return rows;
  }
}

/** `s` with the head's rows chooseHeadRows picks for a budget (unchanged without one: the default chunk). */
export function withHeadRows(spec: ModelSpec, s: PlanSettings, gpuBytes?: number, maxBinding?: number): PlanSettings {
  if (s.headRows !== undefined || gpuBytes === undefined) return s;
  const rows = chooseHeadRows(spec, s, gpuBytes, maxBinding);
  return rows > xentDefaultRows(spec.vocab) ? { ...s, headRows: rows } : s;
}
