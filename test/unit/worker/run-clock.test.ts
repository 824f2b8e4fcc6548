// A run's elapsed time across sessions (src/worker/run-clock.ts) on a hand-driven clock: a fresh run counts from its
// start, a resumed one from the stored elapsed time once training goes on (its set-up not counted), pauses not counted.
import { describe, expect, it } from 'vitest';
import { RunClock } from '../../../src/worker/run-clock.ts';

function manual(start: number) {
  let t = start;
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}

describe('RunClock', () => {
  it('a fresh run counts from its start, set-up included', () => {
    const c = manual(1000);
    const clock = new RunClock(0, false, c.now);
    c.advance(119_000); // frozen pass, importance, step-0 evaluation
    clock.begin(); // training starts: changes nothing for a fresh run
    c.advance(7000);
    expect(clock.elapsed()).toBe(126_000);
    expect(clock.session()).toBe(126_000);
  });

  it('a resumed run goes on from the stored elapsed time, not counting its loading and restoring', () => {
    const c = manual(50);
    const clock = new RunClock(42_500, true, c.now);
    c.advance(30_000); // loading the model, restoring the checkpoint
    expect(clock.elapsed()).toBe(42_500);
    clock.begin();
    c.advance(7000); // the first resumed step
    expect(clock.elapsed()).toBe(49_500);
    expect(clock.session()).toBe(7000);
    clock.begin(); // a second call does not restart it
    c.advance(1000);
    expect(clock.elapsed()).toBe(50_500);
  });

  it('time paused is not counted; hold and release pair up', () => {
    const c = manual(0);
    const clock = new RunClock(100, false, c.now);
    c.advance(500);
    clock.hold();
    c.advance(60_000);
    expect(clock.elapsed()).toBe(600);
    clock.hold(); // already held: the first hold counts
    c.advance(1000);
    clock.release();
    c.advance(250);
    expect(clock.elapsed()).toBe(850);
    clock.release(); // not held: nothing
    expect(clock.elapsed()).toBe(850);
  });

  it('a resumed run paused before training goes on counts nothing of it', () => {
    const c = manual(0);
    const clock = new RunClock(9000, true, c.now);
    clock.hold();
    c.advance(5000);
    clock.release();
    expect(clock.elapsed()).toBe(9000);
  });
});
