/**
 * Routes each kernel request: INIT, INTERRUPT, FORGET and DESTROY are handled here; everything else
 * goes to its operation, each request its own promise, so a slow READ never holds up a LOOKUP.
 * Errors become errnos: FuseError → its errno, an aborted request → EINTR, anything else → EIO
 * (logged); nothing thrown by a filesystem reaches the session.
 */
import type { Logger } from '../observability/index.js';
import { Opcode } from './abi.js';
import { errnoName, errnoNumber, FuseError, FuseProtocolError } from './errors.js';
import { type InFlightRequest, InFlightRequests } from './in-flight-requests.js';
import { type InitDecision, type InitLimits, negotiateInit } from './init-negotiation.js';
import type { FilesystemOperations, Operation } from './operations.js';
import { encodeInitOut, type InitOut } from './reply-encoder.js';
import {
  decodeBatchForget,
  decodeForget,
  decodeInit,
  decodeInterrupt,
  decodeRequest,
  type Request,
} from './request-decoder.js';
import { readU64 } from './u64.js';

const EIO = errnoNumber('EIO');
const EINTR = errnoNumber('EINTR');
const EPROTO = errnoNumber('EPROTO');

const OPCODE_NAMES = new Map<number, string>(Object.entries(Opcode).map(([name, code]) => [code, name]));

export function opcodeName(opcode: number): string {
  return OPCODE_NAMES.get(opcode) ?? `opcode ${opcode}`;
}

/** Where replies go: /dev/fuse (ReplyChannel), or a recorder in tests. */
export interface ReplySink {
  send(unique: number | bigint, errno: number, body?: readonly Buffer[]): void;
}

export interface DispatcherEvents {
  /** INIT was answered: the filesystem is usable. */
  initialized(reply: InitOut): void;
  /** INIT could not be accepted; the session must end. */
  initFailed(reason: string): void;
}

/** Counters for tests, benches and metrics. */
export interface FuseStats {
  /** Requests received, by opcode name. */
  requests: Record<string, number>;
  /** Bytes answered to READ. */
  bytesRead: number;
  /** Requests answered with an error other than ENOENT/ENODATA, by errno name. */
  errors: Record<string, number>;
  /** FUSE_INTERRUPTs received. */
  interrupts: number;
  /**
   * READs the reader threads answered themselves from a content map, and their bytes (not part of
   * `requests.READ` / `bytesRead`, which count what the main thread answered).
   */
  fastReads?: number;
  fastBytesRead?: number;
}

/** Errors that are ordinary answers, not failures worth counting. */
const EXPECTED_ERRNOS = new Set([errnoNumber('ENOENT'), errnoNumber('ENODATA')]);

export class RequestDispatcher {
  readonly stats: FuseStats = { requests: {}, bytesRead: 0, errors: {}, interrupts: 0 };
  private readonly inFlight: InFlightRequests;
  private initialized = false;
  private destroyed = false;

  constructor(
    private readonly operations: FilesystemOperations,
    private readonly replies: ReplySink,
    private readonly limits: InitLimits,
    private readonly logger: Logger,
    private readonly events: DispatcherEvents,
  ) {
    this.inFlight = new InFlightRequests((request) => this.replyError(request.unique, EINTR));
  }

  get pending(): number {
    return this.inFlight.size;
  }

  /** The session is over: running filesystem calls see their signal aborted. */
  abortAll(reason: unknown): void {
    this.inFlight.abortAll(reason);
  }

  dispatch(message: Buffer): void {
    let request: Request;
    try {
      request = decodeRequest(message);
    } catch (err) {
      this.rejectUndecodable(message, err);
      return;
    }
    const { opcode, unique } = request.header;
    const name = opcodeName(opcode);
    this.stats.requests[name] = (this.stats.requests[name] ?? 0) + 1;
    if (this.destroyed) return;
    if (opcode === Opcode.INIT) {
      this.init(request);
    } else if (!this.initialized) {
      // The kernel sends nothing before INIT is answered; anything else is answered EIO, as libfuse does.
      this.replyError(unique, EIO);
    } else if (!this.handleControl(request)) {
      const operation = this.operations.resolve(opcode);
      if (typeof operation === 'number') this.replyError(unique, operation);
      else void this.run(request, operation);
    }
  }

  /** INTERRUPT, FORGET, BATCH_FORGET (no reply) and DESTROY; false for any other opcode. */
  private handleControl(request: Request): boolean {
    const { opcode, nodeid, unique } = request.header;
    switch (opcode) {
      case Opcode.INTERRUPT:
        this.stats.interrupts++;
        this.guard(request, () => this.inFlight.interrupt(decodeInterrupt(request.body)));
        return true;
      case Opcode.FORGET:
        this.guard(request, () => this.operations.forget(nodeid, decodeForget(request.body)));
        return true;
      case Opcode.BATCH_FORGET:
        this.guard(request, () => {
          for (const one of decodeBatchForget(request.body)) this.operations.forget(one.ino, one.nlookup);
        });
        return true;
      case Opcode.DESTROY:
        this.destroyed = true;
        this.replies.send(unique, 0);
        return true;
      default:
        return false;
    }
  }

  private init({ header, body }: Request): void {
    let decision: InitDecision;
    try {
      decision = negotiateInit(decodeInit(body), this.limits);
    } catch (err) {
      decision = { kind: 'reject', reason: (err as Error).message };
    }
    if (decision.kind === 'reject') {
      this.replyError(header.unique, EPROTO);
      this.events.initFailed(decision.reason);
      return;
    }
    this.replies.send(header.unique, 0, [encodeInitOut(decision.reply)]);
    if (decision.kind === 'accept') {
      this.initialized = true;
      this.events.initialized(decision.reply);
    }
  }

  private async run(request: Request, operation: Operation): Promise<void> {
    const { header } = request;
    const tracked = this.inFlight.start(header.unique, operation.answersInterruptAtOnce);
    const ctx = { uid: header.uid, gid: header.gid, pid: header.pid, signal: tracked.signal };
    try {
      // Interrupted before it started (the INTERRUPT overtook it): nothing to ask the filesystem.
      if (tracked.signal.aborted) throw tracked.signal.reason;
      const body = await operation.run(request, ctx);
      if (!tracked.claimReply()) return;
      if (header.opcode === Opcode.READ) this.stats.bytesRead += body[0]?.length ?? 0;
      this.replies.send(header.unique, 0, body);
    } catch (err) {
      if (tracked.claimReply()) this.replyError(header.unique, this.errnoFor(err, request, tracked));
    } finally {
      this.inFlight.finish(tracked);
    }
  }

  private errnoFor(err: unknown, { header }: Request, tracked: InFlightRequest): number {
    if (err instanceof FuseError) return err.errno;
    if (tracked.signal.aborted) return EINTR;
    this.logger.error(
      { err, op: opcodeName(header.opcode), ino: String(header.nodeid) },
      'fuse request failed',
    );
    return EIO;
  }

  private replyError(unique: number | bigint, errno: number): void {
    if (!EXPECTED_ERRNOS.has(errno)) {
      const name = errnoName(errno);
      this.stats.errors[name] = (this.stats.errors[name] ?? 0) + 1;
    }
    this.replies.send(unique, errno);
  }

  /** Requests without a reply (FORGET, INTERRUPT): a decoding failure is only logged. */
  private guard(request: Request, handle: () => void): void {
    try {
      handle();
    } catch (err) {
      this.logger.error({ err, op: opcodeName(request.header.opcode) }, 'fuse request ignored');
    }
  }

  private rejectUndecodable(message: Buffer, err: unknown): void {
    this.logger.error({ err, bytes: message.length }, 'fuse request undecodable');
    if (err instanceof FuseProtocolError && message.length >= 16) {
      this.replyError(readU64(message, 8), EIO);
    }
  }
}
