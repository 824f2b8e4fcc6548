// The seed's schedule, exactly as docs/method.md writes it: linear warm-up over 5 % of the steps, then cosine from LR_PEAK
// to LR_PEAK/10; and the size of the active set, k(T) = max(1, floor(FRAC · numel(T))).

export function warmupSteps(steps: number): number {
  return Math.max(1, Math.floor(steps * 0.05));
}

/** Learning rate of step s (1-based). */
export function learningRate(s: number, steps: number, peak: number): number {
  const warm = warmupSteps(steps);
  const min = peak / 10;
  if (s <= warm) return (peak * s) / warm;
  const span = Math.max(1, steps - warm);
  return min + (peak - min) * 0.5 * (1 + Math.cos((Math.PI * (s - warm)) / span));
}

export function activeCount(frac: number, numel: number): number {
  return Math.max(1, Math.floor(frac * numel));
}

/** Reselection happens before step s's forward pass when s > 1 and s % every == 0. */
export function isReselectStep(s: number, every: number): boolean {
  return every > 0 && s > 1 && s % every === 0;
}
