/**
 * GETs over keep-alive HTTP/1.1 connections whose bodies land straight in a buffer the caller picks,
 * each socket read written into it (net's `onread`): no buffer allocated per read, no copy into an HTTP
 * parser's memory and none out of it. Through undici those three cost more CPU than the kernel's receive
 * itself (a third of a peer's main thread in a profile, much of it in the garbage collector);
 * `bench/piece-transfer.ts` (1 GiB in 4 MiB pieces, both ends in one process) used 1.66 CPU-seconds
 * this way against 4.76 through undici (docs/benchmarks.md, "Hashing workers, super-seeding, piece
 * client"). Used for pieces from parents' upload servers and for ranges of plain-HTTP origins
 * (source/http.ts). The protocol is the small part of HTTP/1.1 those need: GET, and answers framed by
 * Content-Length. Anything else is an error and the connection is dropped (an origin's caller then
 * falls back to undici); the bytes are verified by the caller in any case.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { connect, type Socket } from 'node:net';

/** Longest response head accepted (status line and headers). */
const HEAD_LIMIT = 16 * 1024;
/** Refusals with bodies up to this size are read to their end, keeping the connection. */
const DRAIN_LIMIT = 64 * 1024;
/** Idle connections kept per parent address. */
const IDLE_PER_ADDRESS = 16;
/** An idle connection unused this long is closed (the server's keep-alive timeout is 60 s). */
const IDLE_TIMEOUT_MS = 30_000;

export class PieceClientError extends Error {}

/** A request that must not be sent as asked (a path or header that would break the request head). */
export class InvalidRequestError extends TypeError {}

export interface PieceRequest {
  host: string;
  port: number;
  path: string;
  /**
   * Request headers besides Host (names and values without CR/LF, checked). A `host` entry replaces the
   * default `host:port`.
   */
  headers?: Record<string, string>;
  /** The whole exchange, connecting included. */
  timeoutMs: number;
  signal?: AbortSignal;
  /**
   * Sees the status and headers; returns the buffer the body must fill exactly, or throws to refuse the
   * answer (the promise then rejects with what was thrown).
   */
  accept: (status: number, headers: IncomingHttpHeaders) => Buffer;
  /** Gets the buffer back when the body then fails. */
  release?: (buffer: Buffer) => void;
}

/** Keep-alive connections to parents, by "host:port". */
export class PieceClient {
  private readonly idle = new Map<string, PieceConnection[]>();

  async get(request: PieceRequest): Promise<Buffer> {
    request.signal?.throwIfAborted();
    const key = `${request.host}:${request.port}`;
    const host = `${request.host.includes(':') ? `[${request.host}]` : request.host}:${request.port}`;
    const head = requestHead(request.path, host, request.headers);
    const reused = this.takeIdle(key);
    if (reused) {
      try {
        return await this.exchange(key, reused, request, head);
      } catch (err) {
        // The parent may have closed the idle connection just as it was reused: one more try on a new one.
        if (!(err instanceof StaleConnectionError)) throw err;
      }
    }
    return this.exchange(key, new PieceConnection(request.host, request.port), request, head);
  }

  close(): void {
    for (const list of this.idle.values()) for (const c of list) c.destroy();
    this.idle.clear();
  }

  private async exchange(
    key: string,
    conn: PieceConnection,
    request: PieceRequest,
    head: string,
  ): Promise<Buffer> {
    const body = await conn.request(request, head);
    if (conn.reusable) this.putIdle(key, conn);
    else conn.destroy();
    return body;
  }

  private takeIdle(key: string): PieceConnection | undefined {
    const list = this.idle.get(key);
    for (let c = list?.pop(); c; c = list?.pop()) if (c.reusable) return c;
    return undefined;
  }

  private putIdle(key: string, conn: PieceConnection): void {
    const list = this.idle.get(key) ?? [];
    if (list.length >= IDLE_PER_ADDRESS) {
      conn.destroy();
      return;
    }
    list.push(conn);
    this.idle.set(key, list);
    conn.onIdleEnd(() => {
      const i = list.indexOf(conn);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0 && this.idle.get(key) === list) this.idle.delete(key);
    });
  }
}

/** The connection failed before any byte of the answer arrived (a closed keep-alive connection). */
class StaleConnectionError extends PieceClientError {}

type State =
  | { kind: 'idle' }
  | { kind: 'head' }
  | { kind: 'body'; into: Buffer; at: number; keep: boolean }
  | { kind: 'drain'; left: number; refusal: Error };

interface Pending {
  request: PieceRequest;
  resolve: (body: Buffer) => void;
  reject: (err: Error) => void;
  answered: boolean;
}

/** One keep-alive connection; one request at a time. */
class PieceConnection {
  private readonly socket: Socket;
  private readonly head = Buffer.allocUnsafe(HEAD_LIMIT);
  private headLength = 0;
  private state: State = { kind: 'idle' };
  private pending: Pending | null = null;
  private closed = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private onIdleClose: (() => void) | null = null;
  /** Whether the last answer allows another request on this connection. */
  reusable = false;

  constructor(host: string, port: number) {
    this.socket = connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: () => this.nextReadBuffer(),
        callback: (n: number) => {
          this.onRead(n);
          return true;
        },
      },
    });
    this.socket.on('error', (err) => this.fail(err, true));
    this.socket.on('close', () => this.fail(new PieceClientError('the parent closed the connection'), true));
  }

  request(request: PieceRequest, head: string): Promise<Buffer> {
    clearTimeout(this.idleTimer);
    this.onIdleClose = null;
    this.socket.ref();
    this.reusable = false;
    const timer = setTimeout(
      () => this.fail(new PieceClientError(`no complete answer within ${request.timeoutMs} ms`)),
      request.timeoutMs,
    );
    const onAbort = () => this.fail(request.signal!.reason as Error);
    request.signal?.addEventListener('abort', onAbort, { once: true });
    const answer = new Promise<Buffer>((resolve, reject) => {
      this.pending = { request, resolve, reject, answered: false };
    });
    this.state = { kind: 'head' };
    this.headLength = 0;
    this.socket.write(head);
    return answer.finally(() => {
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', onAbort);
    });
  }

  /** Runs `onClose` if the connection ends while idle (so the pool forgets it); closes it after a while. */
  onIdleEnd(onClose: () => void): void {
    this.onIdleClose = onClose;
    this.socket.unref(); // an idle keep-alive connection must not keep the process alive
    this.idleTimer = setTimeout(() => this.destroy(), IDLE_TIMEOUT_MS);
    this.idleTimer.unref();
  }

  destroy(): void {
    this.fail(new PieceClientError('connection closed'));
  }

  /** Where the socket's next read goes: the rest of the piece, or the head buffer (heads, refusals). */
  private nextReadBuffer(): Uint8Array {
    const s = this.state;
    if (s.kind === 'body') return s.into.subarray(s.at);
    return this.head.subarray(this.headLength);
  }

  private onRead(n: number): void {
    const s = this.state;
    if (s.kind === 'body') {
      s.at += n;
      if (s.at === s.into.length) this.bodyDone(s.keep);
      return;
    }
    if (s.kind === 'idle') {
      this.fail(new PieceClientError('the parent sent bytes nobody asked for'));
      return;
    }
    if (this.pending) this.pending.answered = true;
    this.headLength += n;
    if (s.kind === 'drain') {
      const taken = Math.min(this.headLength, s.left);
      s.left -= taken;
      this.shiftHead(taken);
      if (s.left === 0) this.refusalDone(s.refusal);
      return;
    }
    this.parseHead();
  }

  private parseHead(): void {
    const end = this.head.subarray(0, this.headLength).indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.headLength === HEAD_LIMIT) this.fail(new PieceClientError('response head too large'));
      return;
    }
    const parsed = parseHead(this.head.toString('latin1', 0, end));
    if (parsed instanceof Error) {
      this.fail(parsed);
      return;
    }
    this.shiftHead(end + 4);
    const { status, headers, contentLength } = parsed;
    const keep = !/\bclose\b/i.test(String(headers.connection ?? ''));
    const pending = this.pending!;
    let into: Buffer;
    try {
      into = pending.request.accept(status, headers);
    } catch (err) {
      if (contentLength > DRAIN_LIMIT || !keep) {
        this.fail(err as Error);
        return;
      }
      this.state = { kind: 'drain', left: contentLength, refusal: err as Error };
      this.onRead(0);
      return;
    }
    if (into.length !== contentLength) {
      pending.request.release?.(into);
      this.fail(new PieceClientError(`parent sent ${contentLength} bytes where ${into.length} were asked`));
      return;
    }
    // Body bytes that came with the head.
    const early = Math.min(this.headLength, into.length);
    this.head.copy(into, 0, 0, early);
    this.shiftHead(early);
    if (this.headLength > 0) {
      pending.request.release?.(into);
      this.fail(new PieceClientError('the parent sent more than the body'));
      return;
    }
    this.state = { kind: 'body', into, at: early, keep };
    if (early === into.length) this.bodyDone(keep);
  }

  private shiftHead(bytes: number): void {
    this.head.copy(this.head, 0, bytes, this.headLength);
    this.headLength -= bytes;
  }

  private bodyDone(keep: boolean): void {
    const s = this.state as Extract<State, { kind: 'body' }>;
    const pending = this.pending!;
    this.pending = null;
    this.state = { kind: 'idle' };
    this.reusable = keep && !this.closed;
    pending.resolve(s.into);
  }

  private refusalDone(refusal: Error): void {
    const pending = this.pending!;
    this.pending = null;
    this.state = { kind: 'idle' };
    this.reusable = this.headLength === 0 && !this.closed;
    pending.reject(refusal);
  }

  /** Ends the connection; `byPeer` when the socket failed or closed (not a timeout, abort or bad answer). */
  private fail(err: Error, byPeer = false): void {
    const pending = this.pending;
    this.pending = null;
    if (pending) {
      const s = this.state;
      if (s.kind === 'body') pending.request.release?.(s.into);
      const stale = byPeer && !pending.answered;
      pending.reject(stale ? new StaleConnectionError(err.message, { cause: err }) : err);
    }
    this.state = { kind: 'idle' };
    this.reusable = false;
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.socket.destroy();
    this.onIdleClose?.();
  }
}

/** Request line and headers; neither the path nor a header may smuggle a line break (InvalidRequestError). */
export function requestHead(path: string, host: string, headers: Record<string, string> = {}): string {
  if (!/^\/[\x21-\x7e]*$/.test(path))
    throw new InvalidRequestError(`invalid request path ${JSON.stringify(path)}`);
  let hostHeader = host;
  let extra = '';
  for (const [name, value] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value))
      throw new InvalidRequestError(`invalid request header ${JSON.stringify(name)}`);
    if (name.toLowerCase() === 'host') hostHeader = value;
    else extra += `${name}: ${value}\r\n`;
  }
  return `GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\n${extra}\r\n`;
}

type ParsedHead = { status: number; headers: IncomingHttpHeaders; contentLength: number };

/** The status line and headers of an answer framed by Content-Length; an Error for anything else. */
export function parseHead(text: string): ParsedHead | Error {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0] ?? '');
  if (!m)
    return new PieceClientError(`not an HTTP/1.1 answer: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const headers: IncomingHttpHeaders = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return new PieceClientError(`bad header line ${JSON.stringify(line.slice(0, 80))}`);
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  if (headers['transfer-encoding'] !== undefined)
    return new PieceClientError('chunked answers are not expected');
  const length = Number(headers['content-length']);
  if (headers['content-length'] === undefined || !Number.isSafeInteger(length) || length < 0) {
    return new PieceClientError('the answer has no valid content-length');
  }
  return { status: Number(m[1]), headers, contentLength: length };
}
