/**
 * Super-seeding for seed peers. Every piece enters the swarm through the seed, and children fetch the
 * rarest pieces first, so without a rule every child takes every new piece from the seed: the seed's
 * upload carried 3.7 of the 5 GiB five peers received (docs/benchmarks.md), and it alone bounded the run.
 * With the gate the seed uploads a piece once, then for a while after that upload sends other askers
 * away (they get the piece from the child that has it, and meanwhile take other pieces); after that it
 * serves the piece again, so a child that lost or never shared its copy does not strand anyone. The
 * while is `holdMs`, or, if longer, the time the piece needs to reach every child that follows the task
 * here: log2(children + 1) generations of copies, each as long as a piece takes at this host's send
 * rate, three times over; on a LAN that is milliseconds and `holdMs` applies. Its default is 10 s: at
 * 40 Mbit/s with twenty nodes a 3 s hold let the seed send each piece 3 times (10 s: 2.3), and on
 * loopback the two measured alike (bench/mirror.ts, bench/p2p.ts). The measured rate alone is not
 * enough: a 4 MiB piece fits in the kernel's socket buffer, so writes end before the bytes have left
 * and the rate looks higher than the link's.
 * Pure bookkeeping: the upload server asks and reports.
 */
export type GateAnswer = { serve: true } | { serve: false; retryAfterMs: number };

/** Entries kept before expired ones are swept. */
const SWEEP_ABOVE = 4096;
const HOLD_MARGIN = 3;

export class SpreadGate {
  /** "<task>/<piece>" → until when others are sent away (Infinity while the first upload runs). */
  private readonly held = new Map<string, number>();
  /** "<task>/<piece>" → when its first upload started (tells a waiting asker how long it has taken). */
  private readonly started = new Map<string, number>();

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
      const uploading = this.started.get(key);
      const wait = uploading === undefined ? until - now : Math.max(this.holdMs, now - uploading);
      return { serve: false, retryAfterMs: Math.ceil(wait) };
    }
    if (this.held.size >= SWEEP_ABOVE) this.sweep(now);
    this.held.set(key, Number.POSITIVE_INFINITY);
    this.started.set(key, now);
    return { serve: true };
  }

  /**
   * The upload ended: held (see above) if it completed, free again if it failed. `pieceMs`: how long a
   * piece takes at this host's send rate (0 if unknown); `children`: how many peers follow the task here.
   */
  finished(taskId: string, piece: number, completed: boolean, spread = { pieceMs: 0, children: 1 }): void {
    if (this.holdMs <= 0) return;
    const key = `${taskId}/${piece}`;
    this.started.delete(key);
    if (!completed) {
      this.held.delete(key);
      return;
    }
    const generations = Math.log2(Math.max(spread.children, 1) + 1);
    const spreadMs = HOLD_MARGIN * spread.pieceMs * generations;
    this.held.set(key, this.now() + Math.max(this.holdMs, spreadMs));
  }

  private sweep(now: number): void {
    for (const [key, until] of this.held) if (until <= now) this.held.delete(key);
  }
}
