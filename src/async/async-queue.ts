/**
 * An unbounded single-consumer queue bridging event handlers to a gRPC stream (the scheduler's responses,
 * a daemon's AnnouncePeer requests). The volume per stream is small (control messages, batched digests,
 * piece reports), so no backpressure is needed on this side; the HTTP/2 stream applies its own.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private failWaiter: ((err: unknown) => void) | undefined;
  private done = false;
  private error: unknown;

  get closed(): boolean {
    return this.done;
  }

  /** Returns false once the queue is closed (the item is dropped). */
  push(item: T): boolean {
    if (this.done) return false;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      this.failWaiter = undefined;
      w({ value: item, done: false });
    } else {
      this.items.push(item);
    }
    return true;
  }

  /** Ends the stream after the queued items; with an error, the consumer throws it instead. */
  close(error?: unknown): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    if (error !== undefined) this.items.length = 0;
    if (this.waiter) {
      const w = this.waiter;
      const f = this.failWaiter!;
      this.waiter = undefined;
      this.failWaiter = undefined;
      if (error !== undefined) f(error);
      else w({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.items.length > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
        if (this.done) {
          return this.error !== undefined
            ? Promise.reject(this.error)
            : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise<IteratorResult<T>>((resolve, reject) => {
          this.waiter = resolve;
          this.failWaiter = reject;
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
      // Connect calls throw() on a request stream when the call fails: just stop producing.
      throw: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
