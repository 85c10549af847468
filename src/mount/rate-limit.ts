/**
 * A byte-rate limit for background prefetch (`--prefetch-rate`): a token bucket holding at most one
 * second of tokens. A request takes its bytes up front and waits until the bucket is no longer in
 * debt, so a single request larger than the rate still goes (and makes the next ones wait longer).
 * Waiters are served in order. The clock is injectable for tests.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export class ByteRateLimit {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    /** Bytes per second; 0 or less = unlimited. */
    readonly rate: number,
    private readonly now: () => number = () => performance.now(),
    private readonly wait: (ms: number, signal?: AbortSignal) => Promise<void> = (ms, signal) =>
      sleep(ms, undefined, { signal }),
  ) {
    this.tokens = rate;
    this.last = now();
  }

  get unlimited(): boolean {
    return this.rate <= 0;
  }

  /** Resolves once `bytes` may be fetched; rejects if `signal` aborts first (the bytes stay taken). */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited || bytes <= 0) return Promise.resolve();
    const turn = this.queue.then(() => this.debit(bytes, signal));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  private async debit(bytes: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const now = this.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    this.tokens -= bytes;
    if (this.tokens < 0) await this.wait((-this.tokens / this.rate) * 1000, signal);
  }
}
