/**
 * Group commit: callers hand in items and wait until a `flush` covering theirs has finished. One
 * flush runs at a time; items arriving meanwhile wait for the next one, which takes them all, so N
 * concurrent writers cost about two flushes (two fdatasyncs), not N. The first flush starts on the
 * next turn of the event loop, letting the items of one burst (the chunks of one range) share it.
 */

interface Waiter<T> {
  item: T;
  resolve(): void;
  reject(err: unknown): void;
}

export class GroupCommit<T> {
  private queued: Waiter<T>[] = [];
  private running: Promise<void> | undefined;
  /** Flushes run so far (for tests and stats). */
  flushes = 0;

  constructor(private readonly flush: (items: T[]) => Promise<void>) {}

  /** Resolves once a flush that includes `item` succeeded; rejects with that flush's error. */
  commit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queued.push({ item, resolve, reject });
      this.running ??= this.drain();
    });
  }

  /** Resolves when nothing is queued or flushing. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.queued.length > 0) {
      const batch = this.queued;
      this.queued = [];
      this.flushes++;
      try {
        await this.flush(batch.map((waiter) => waiter.item));
        for (const waiter of batch) waiter.resolve();
      } catch (err) {
        for (const waiter of batch) waiter.reject(err);
      }
    }
    this.running = undefined;
  }
}
