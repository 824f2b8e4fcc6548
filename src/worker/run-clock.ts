// Contract: a run's elapsed time across sessions. A fresh run counts from its start (its set-up phases are part of it);
// a resumed one goes on from the elapsed time stored with its checkpoint and counts again only once training goes on
// (loading and restoring are not counted), and no session counts the time it stays paused. Pure (the clock is given).

export class RunClock {
  private t0: number | null;
  private heldAt: number | null = null;

  /** `before`: the elapsed time so far (ms); `resumed`: the clock starts at begin(), else now. */
  constructor(private readonly before: number, resumed: boolean, private readonly now: () => number = () => performance.now()) {
    this.t0 = resumed ? null : now();
  }

  /** Training begins (or goes on after a resume's set-up): from now on, time counts. */
  begin(): void {
    this.t0 ??= this.now();
  }

  /** Paused: time stops counting until release(). */
  hold(): void {
    if (this.t0 !== null) this.heldAt ??= this.now();
  }

  release(): void {
    if (this.heldAt === null || this.t0 === null) return;
    this.t0 += this.now() - this.heldAt;
    this.heldAt = null;
  }

  /** Time counted in this session (ms). */
  session(): number {
    if (this.t0 === null) return 0;
    return (this.heldAt ?? this.now()) - this.t0;
  }

  /** The run's elapsed time (ms): before + this session's. */
  elapsed(): number {
    return this.before + this.session();
  }
}
