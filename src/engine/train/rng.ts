// The run's seeded random numbers: sample order, random sample positions and importance microbatches.

/** Seeded PRNG (mulberry32); its state is one u32, saved in checkpoints. */
export class Rng {
  constructor(public state: number) {}
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  shuffle(n: number): Uint32Array {
    const a = Uint32Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
}

/** The importance microbatches' own stream: seeded from the run's seed with this salt (run.ts importanceBatches). */
export const importanceRng = (seed: number): Rng => new Rng((seed ^ 0x9e3779b9) >>> 0);

/** n microbatches of `microbatch` sample indices drawn uniformly from `count` samples (importance passes). */
export function drawBatches(rng: Rng, n: number, microbatch: number, count: number): number[][] {
  return Array.from({ length: n }, () => Array.from({ length: microbatch }, () => Math.floor(rng.next() * count)));
}
