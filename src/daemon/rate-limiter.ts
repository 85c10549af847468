import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A token bucket shared by every transfer of a host: `rate` bytes/s with a one-second burst.
 * rate 0 means unlimited. Waiters are served in order, so one large transfer cannot starve others.
 */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly rate: number) {
    this.tokens = rate;
  }

  get unlimited(): boolean {
    return this.rate <= 0;
  }

  /** Resolves once `n` bytes may be sent. */
  take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited || n <= 0) return Promise.resolve();
    const turn = this.queue.then(() => this.wait(n, signal));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  private async wait(n: number, signal?: AbortSignal): Promise<void> {
    this.refill();
    this.tokens -= n;
    if (this.tokens < 0) await sleep((-this.tokens / this.rate) * 1000, undefined, { signal });
  }

  private refill(): void {
    const now = performance.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }
}
