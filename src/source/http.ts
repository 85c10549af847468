import { Agent, type Dispatcher, interceptors, request } from 'undici';
import { ShortBodyError } from './body.js';
import { getIntoBuffer } from './into-buffer.js';
import { InvalidRequestError, PieceClient, PieceClientError } from './piece-client.js';

/** One keep-alive pool for all origins; follows redirects like curl -L. */
const dispatcher = new Agent({ connections: 64 }).compose(interceptors.redirect({ maxRedirections: 5 }));

/**
 * Ranges of plain-HTTP origins go through the piece client: the body lands in the piece buffer with no
 * per-read allocation or copy (half the daemon's main-thread time for a back-to-source GiB through undici
 * was the garbage collector and that copy; docs/benchmarks.md). An origin that answers in a way it does
 * not speak (a redirect, chunked, no length, an oversized head) is remembered and left to undici.
 */
const rangeClient = new PieceClient();
const undiciOnly = new Set<string>();
/** Whole-exchange limit of one range through the piece client (undici's own timeouts are per idle gap). */
const RANGE_TIMEOUT_MS = 300_000;

class NeedsUndici extends Error {}

export class SourceError extends Error {
  readonly code = 'ESOURCE';
  constructor(
    message: string,
    /** HTTP status from the origin, 0 for network errors. */
    readonly status = 0,
  ) {
    super(message);
  }
  /** 4xx answers will not change on retry. */
  get permanent(): boolean {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
}

export interface SourceInfo {
  /** -1 when the origin does not say. */
  contentLength: number;
  supportsRange: boolean;
}

export type Headers = Record<string, string>;

function describe(url: string, status: number, statusText?: string): string {
  return `origin returned ${status}${statusText ? ` ${statusText}` : ''} for ${url}`;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  410: 'Gone',
  416: 'Range Not Satisfiable',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

async function send(url: string, headers: Headers, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
  try {
    return await request(url, { method: 'GET', headers, signal, dispatcher });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new SourceError(`cannot reach origin for ${url}: ${(err as Error).message}`);
  }
}

function fail(url: string, res: Dispatcher.ResponseData): never {
  res.body.resume();
  throw new SourceError(describe(url, res.statusCode, STATUS_TEXT[res.statusCode]), res.statusCode);
}

/**
 * Learns the content length and range support with `GET Range: bytes=0-0` (one byte from the origin);
 * an origin that ignores ranges answers 200 and we stop reading after the headers.
 */
export async function statSource(url: string, headers: Headers, signal?: AbortSignal): Promise<SourceInfo> {
  const res = await send(url, { ...headers, range: 'bytes=0-0' }, signal);
  if (res.statusCode === 206) {
    res.body.resume();
    const total = /\/(\d+)\s*$/.exec(String(res.headers['content-range'] ?? ''));
    return { contentLength: total ? Number(total[1]) : -1, supportsRange: Boolean(total) };
  }
  if (res.statusCode === 416) {
    // An empty file cannot satisfy bytes=0-0.
    res.body.resume();
    return { contentLength: 0, supportsRange: true };
  }
  if (res.statusCode !== 200) fail(url, res);
  res.body.destroy();
  const length = res.headers['content-length'];
  return { contentLength: length === undefined ? -1 : Number(length), supportsRange: false };
}

/** Bytes [start, start + length) of the source, exactly (into `into` when given: exactly `length` bytes). */
export async function fetchRange(
  url: string,
  headers: Headers,
  start: number,
  length: number,
  signal?: AbortSignal,
  into?: Buffer,
): Promise<Buffer> {
  if (into && into.length !== length)
    throw new RangeError(`fetchRange: buffer of ${into.length} bytes for ${length}`);
  const target = new URL(url);
  if (target.protocol === 'http:' && !undiciOnly.has(target.host)) {
    try {
      return await fetchRangeDirect(target, headers, start, length, signal, into);
    } catch (err) {
      if (err instanceof SourceError || signal?.aborted) throw err;
      if (err instanceof InvalidRequestError) throw new SourceError(`cannot ask ${url}: ${err.message}`, 400);
      // A protocol surprise: this origin goes through undici from now on. A network failure: undici
      // tries once more and reports it in its words.
      if (err instanceof NeedsUndici || err instanceof PieceClientError) undiciOnly.add(target.host);
    }
  }
  let answered = false;
  try {
    return await getIntoBuffer(dispatcher, url, {
      headers: { ...headers, range: `bytes=${start}-${start + length - 1}` },
      signal,
      accept: (status) => {
        answered = true;
        if (status !== 206) throw new SourceError(describe(url, status, STATUS_TEXT[status]), status);
        return into ?? Buffer.allocUnsafe(length);
      },
    });
  } catch (err) {
    if (err instanceof SourceError || signal?.aborted) throw err;
    if (err instanceof ShortBodyError) throw new SourceError(`origin range of ${url}: ${err.message}`);
    if (!answered) throw new SourceError(`cannot reach origin for ${url}: ${(err as Error).message}`);
    throw new SourceError(`origin range of ${url}: ${(err as Error).message}`);
  }
}

function fetchRangeDirect(
  target: URL,
  headers: Headers,
  start: number,
  length: number,
  signal: AbortSignal | undefined,
  into: Buffer | undefined,
): Promise<Buffer> {
  const url = target.href;
  return rangeClient.get({
    host: target.hostname.replace(/^\[|\]$/g, ''),
    port: Number(target.port || 80),
    path: `${target.pathname}${target.search}`,
    headers: { host: target.host, ...headers, range: `bytes=${start}-${start + length - 1}` },
    timeoutMs: RANGE_TIMEOUT_MS,
    signal,
    accept: (status, answer) => {
      if (status >= 300 && status < 400) throw new NeedsUndici(`redirect ${status}`);
      if (status !== 206) throw new SourceError(describe(url, status, STATUS_TEXT[status]), status);
      const range = /^bytes (\d+)-(\d+)\//.exec(String(answer['content-range'] ?? ''));
      if (!range || Number(range[1]) !== start || Number(range[2]) !== start + length - 1)
        throw new SourceError(
          `origin range of ${url}: asked bytes ${start}-${start + length - 1}, got ${answer['content-range']}`,
        );
      return into ?? Buffer.allocUnsafe(length);
    },
  });
}

/** The whole body as a stream, for origins without range support. */
export async function fetchWhole(url: string, headers: Headers, signal?: AbortSignal) {
  const res = await send(url, headers, signal);
  if (res.statusCode !== 200) fail(url, res);
  return res.body;
}
