/**
 * Requests being served, by unique, so that FUSE_INTERRUPT can abort the right one and a reply is
 * sent exactly once. With several reader threads an INTERRUPT can reach the main thread before the
 * request it names (both were read, by different threads, in the kernel's order): such interrupts are
 * kept for a while and applied when the request arrives.
 */

/** How long an interrupt for a request we have not seen yet is remembered. */
const EARLY_INTERRUPT_TTL_MS = 10_000;

export class InFlightRequest {
  private readonly controller = new AbortController();
  private replied = false;

  constructor(
    readonly unique: number | bigint,
    /** EINTR is sent as soon as the kernel interrupts (the operation hands out no reference). */
    readonly answersInterruptAtOnce: boolean,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(reason?: unknown): void {
    this.controller.abort(reason);
  }

  /** True for the first caller only: the one that sends the reply. */
  claimReply(): boolean {
    if (this.replied) return false;
    this.replied = true;
    return true;
  }
}

export class InFlightRequests {
  private readonly requests = new Map<number | bigint, InFlightRequest>();
  private readonly earlyInterrupts = new Map<number | bigint, number>();

  /** Called for an interrupted request that answers EINTR at once (and has not replied yet). */
  constructor(private readonly answerInterrupted: (request: InFlightRequest) => void) {}

  get size(): number {
    return this.requests.size;
  }

  start(unique: number | bigint, answersInterruptAtOnce: boolean): InFlightRequest {
    const request = new InFlightRequest(unique, answersInterruptAtOnce);
    this.requests.set(unique, request);
    if (this.earlyInterrupts.delete(unique)) request.abort(interrupted());
    return request;
  }

  finish(request: InFlightRequest): void {
    if (this.requests.get(request.unique) === request) this.requests.delete(request.unique);
  }

  /** FUSE_INTERRUPT for `unique`. Returns whether the request was found. */
  interrupt(unique: number | bigint, now = Date.now()): boolean {
    const request = this.requests.get(unique);
    if (!request) {
      this.rememberEarlyInterrupt(unique, now);
      return false;
    }
    request.abort(interrupted());
    if (request.answersInterruptAtOnce && request.claimReply()) this.answerInterrupted(request);
    return true;
  }

  /** The session ends: every filesystem call still running is told to stop. */
  abortAll(reason: unknown): void {
    for (const request of this.requests.values()) request.abort(reason);
    this.earlyInterrupts.clear();
  }

  private rememberEarlyInterrupt(unique: number | bigint, now: number): void {
    // Most of these are for requests already answered; they expire instead of accumulating.
    for (const [key, at] of this.earlyInterrupts) {
      if (now - at <= EARLY_INTERRUPT_TTL_MS) break;
      this.earlyInterrupts.delete(key);
    }
    this.earlyInterrupts.set(unique, now);
  }
}

function interrupted(): DOMException {
  return new DOMException('interrupted by the kernel (FUSE_INTERRUPT)', 'AbortError');
}
