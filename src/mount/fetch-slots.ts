/**
 * Backend request slots shared by foreground reads and background prefetch, so reads always win:
 *
 * - a foreground request takes any free slot and queues ahead of every background request;
 * - a background request starts only while no foreground request waits and fewer than
 *   `limit - reserved` slots are busy (and at most `backgroundLimit` background requests run), so a
 *   read arriving during a prefetch finds a free slot at once;
 * - a queued background request that a reader starts waiting for is promoted to the foreground queue.
 */
export interface FetchSlotsOptions {
  limit: number;
  /** Slots background requests never take (default: a quarter of `limit`). */
  reserved?: number;
  /** Background requests running at once (default: `limit - reserved`). */
  backgroundLimit?: number;
}

/** One request's place in line; `FetchSlots.promote` moves a waiting background request up. */
export class FetchTicket {
  private readonly promotion = new AbortController();

  constructor(public background: boolean) {}

  /** Aborts when the request is promoted: a background request stops waiting for its rate limit. */
  get promoted(): AbortSignal {
    return this.promotion.signal;
  }

  markPromoted(): void {
    this.background = false;
    this.promotion.abort();
  }
}

interface Waiter {
  ticket: FetchTicket;
  start(): void;
}

export class FetchSlots {
  private readonly limit: number;
  private readonly backgroundCap: number;
  private active = 0;
  private activeBackground = 0;
  private readonly foreground: Waiter[] = [];
  private readonly background: Waiter[] = [];

  constructor(options: FetchSlotsOptions) {
    const { limit } = options;
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`concurrency limit must be ≥ 1, got ${limit}`);
    const reserved = Math.min(options.reserved ?? Math.floor(limit / 4), limit - 1);
    this.limit = limit;
    this.backgroundCap = Math.max(1, Math.min(options.backgroundLimit ?? limit, limit - reserved));
  }

  /** Requests running now. */
  get running(): number {
    return this.active;
  }

  async run<T>(ticket: FetchTicket, task: () => Promise<T>): Promise<T> {
    const background = await this.acquire(ticket);
    try {
      return await task();
    } finally {
      this.active--;
      if (background) this.activeBackground--;
      this.pump();
    }
  }

  /** A reader now waits for this request: if it is queued as background, it moves to the foreground queue. */
  promote(ticket: FetchTicket): void {
    if (!ticket.background) return;
    ticket.markPromoted();
    const at = this.background.findIndex((waiter) => waiter.ticket === ticket);
    if (at >= 0) {
      this.foreground.push(...this.background.splice(at, 1));
      this.pump();
    }
  }

  /** Resolves with whether the slot was taken as a background slot. */
  private acquire(ticket: FetchTicket): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        ticket,
        start: () => {
          const background = waiter.ticket.background;
          this.active++;
          if (background) this.activeBackground++;
          resolve(background);
        },
      };
      (ticket.background ? this.background : this.foreground).push(waiter);
      this.pump();
    });
  }

  private pump(): void {
    while (this.foreground.length > 0 && this.active < this.limit) this.foreground.shift()!.start();
    while (
      this.background.length > 0 &&
      this.foreground.length === 0 &&
      this.active < this.limit &&
      this.activeBackground < this.backgroundCap
    ) {
      this.background.shift()!.start();
    }
  }
}
