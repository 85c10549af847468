/**
 * Super-seeding for seed peers. Every piece enters the swarm through the seed, and children fetch the
 * rarest pieces first, so without a rule every child takes every new piece from the seed: the seed's
 * upload carried 3.7 of the 5 GiB five peers received (docs/benchmarks.md), and it alone bounded the run.
 * With the gate the seed uploads a piece once, then for `holdMs` after that upload sends other askers
 * away (they get the piece from the child that has it, and meanwhile take other pieces); after `holdMs`
 * it serves the piece again, so a child that lost or never shared its copy does not strand anyone.
 * Pure bookkeeping: the upload server asks and reports.
 */
export type GateAnswer = { serve: true } | { serve: false; retryAfterMs: number };

/** Entries kept before expired ones are swept. */
const SWEEP_ABOVE = 4096;

export class SpreadGate {
  /** "<task>/<piece>" → until when others are sent away (Infinity while the first upload runs). */
  private readonly held = new Map<string, number>();

  constructor(
    private readonly holdMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether to upload the piece now; a `serve: true` must be followed by `finished`. */
  ask(taskId: string, piece: number): GateAnswer {
    if (this.holdMs <= 0) return { serve: true };
    const key = `${taskId}/${piece}`;
    const now = this.now();
    const until = this.held.get(key);
    if (until !== undefined && now < until) {
      return { serve: false, retryAfterMs: Math.ceil(Math.min(until - now, this.holdMs)) };
    }
    if (this.held.size >= SWEEP_ABOVE) this.sweep(now);
    this.held.set(key, Number.POSITIVE_INFINITY);
    return { serve: true };
  }

  /** The upload ended: held for `holdMs` if it completed, free again if it failed. */
  finished(taskId: string, piece: number, completed: boolean): void {
    if (this.holdMs <= 0) return;
    const key = `${taskId}/${piece}`;
    if (completed) this.held.set(key, this.now() + this.holdMs);
    else this.held.delete(key);
  }

  private sweep(now: number): void {
    for (const [key, until] of this.held) if (until <= now) this.held.delete(key);
  }
}
