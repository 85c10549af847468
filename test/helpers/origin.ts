import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline, Transform, type TransformCallback } from 'node:stream';

const GENERATE_CHUNK = 1024 * 1024;

/**
 * Writes `size` pseudo-random bytes derived from `seed` to `dest` and returns their sha256 (hex).
 * AES-128-CTR over zeros: native speed (a 256 MiB file takes well under a second), never held in memory.
 */
export async function writeDeterministicFile(dest: string, size: number, seed: string): Promise<string> {
  const keyMaterial = createHash('sha256').update(`damselfly-test-origin:${seed}`).digest();
  const cipher = createCipheriv('aes-128-ctr', keyMaterial.subarray(0, 16), keyMaterial.subarray(16, 32));
  const hash = createHash('sha256');
  const zeros = Buffer.alloc(GENERATE_CHUNK);
  const file = await open(dest, 'w');
  try {
    for (let written = 0; written < size; ) {
      const n = Math.min(GENERATE_CHUNK, size - written);
      const block = cipher.update(zeros.subarray(0, n));
      hash.update(block);
      await file.write(block, 0, block.length);
      written += n;
    }
  } finally {
    await file.close();
  }
  return hash.digest('hex');
}

export interface OriginFile {
  /** URL path on the origin, e.g. "/files/big.bin". */
  path: string;
  /** Full URL to hand to `damselfly get`. */
  url: string;
  size: number;
  /** sha256 of the content, hex. */
  sha256: string;
  /** The content on local disk (for byte comparisons). */
  localPath: string;
}

export interface OriginRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** The request target as sent (path + query). */
  target: string;
  range: string | undefined;
  headers: IncomingHttpHeaders;
  /** Status the origin answered with (set once the head is written). */
  status: number;
  at: number;
}

export interface OriginOptions {
  /** Bytes per second per TCP connection for bodies; 0 or absent = unlimited. */
  rateLimit?: number;
  /** Serve https with this certificate and key (PEM) instead of http. */
  tls?: { cert: string; key: string };
}

interface Route {
  file?: OriginFile;
  status?: number;
  /** Answer every GET with the whole body (200) and no length, like an origin streaming chunked data. */
  noRangesNoLength?: boolean;
  requiredHeaders?: Record<string, string>;
}

interface Bucket {
  /** Time (ms, performance.now) from which the connection may send again. */
  readyAt: number;
}

const THROTTLE_SLICE = 16 * 1024;

/** Delays each slice of the body so one connection never exceeds `rate` bytes/s. */
class ConnectionThrottle extends Transform {
  constructor(
    private readonly bucket: Bucket,
    private readonly rate: () => number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    void this.send(chunk).then(() => done(), done);
  }

  private async send(chunk: Buffer): Promise<void> {
    for (let off = 0; off < chunk.length; off += THROTTLE_SLICE) {
      const slice = chunk.subarray(off, off + THROTTLE_SLICE);
      const rate = this.rate();
      if (rate > 0) {
        const wait = this.bucket.readyAt - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        this.bucket.readyAt = Math.max(performance.now(), this.bucket.readyAt) + (slice.length / rate) * 1000;
      }
      this.push(slice);
    }
  }
}

/** Counts body bytes handed to the response (what the origin actually served). */
class ByteCounter extends Transform {
  constructor(private readonly onBytes: (n: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.onBytes(chunk.length);
    done(null, chunk);
  }
}

type ParsedRange = { start: number; end: number } | 'unsatisfiable' | undefined;

/** Single `bytes=a-b`, `bytes=a-` or `bytes=-n`; anything else is ignored (RFC 9110 allows that). */
function parseRange(header: string | undefined, size: number): ParsedRange {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

/**
 * A test HTTP origin on 127.0.0.1: deterministic files, byte counting, HEAD and Range, failing routes,
 * header requirements, an optional per-connection rate limit and a request log.
 */
export class TestOrigin {
  readonly requests: OriginRequest[] = [];
  private readonly routes = new Map<string, Route>();
  private readonly served = new Map<string, number>();
  private readonly buckets = new WeakMap<Socket, Bucket>();
  private rate: number;
  private readonly scheme: 'http' | 'https';
  private totalServed = 0;

  private constructor(
    private readonly server: Server,
    private readonly dir: string,
    readonly port: number,
    options: OriginOptions,
  ) {
    this.rate = options.rateLimit ?? 0;
    this.scheme = options.tls ? 'https' : 'http';
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.handle(req, res));
  }

  static async start(options: OriginOptions = {}): Promise<TestOrigin> {
    const dir = await mkdtemp(join(tmpdir(), 'damselfly-origin-'));
    const server = options.tls
      ? createHttpsServer({ keepAlive: true, ...options.tls })
      : createServer({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('origin: no TCP address');
    return new TestOrigin(server, dir, address.port, options);
  }

  get baseUrl(): string {
    return `${this.scheme}://127.0.0.1:${this.port}`;
  }

  url(path: string): string {
    return `${this.baseUrl}${path.startsWith('/') ? path : `/${path}`}`;
  }

  /** Generates a file of `size` bytes from `seed` (default: the path) and serves it at `path`. */
  async addFile(path: string, size: number, seed = path): Promise<OriginFile> {
    const localPath = join(this.dir, `${createHash('sha256').update(path).digest('hex').slice(0, 16)}.bin`);
    const sha256 = await writeDeterministicFile(localPath, size, seed);
    const file: OriginFile = { path, url: this.url(path), size, sha256, localPath };
    this.route(path).file = file;
    return file;
  }

  /** `path` ignores Range and sends no Content-Length (chunked), like a dynamic origin. */
  disableRangesAndLength(path: string): void {
    this.route(path).noRangesNoLength = true;
  }

  /** Every request for `path` (any method) is answered with `status` and a short text body. */
  setStatus(path: string, status: number | undefined): void {
    this.route(path).status = status;
  }

  /** Requests for `path` lacking this header value are answered 403 (like a real origin needing auth). */
  requireHeader(path: string, name: string, value: string): void {
    const route = this.route(path);
    route.requiredHeaders = { ...route.requiredHeaders, [name.toLowerCase()]: value };
  }

  /** Body bytes per TCP connection per second; 0 = unlimited. Applies to responses started afterwards. */
  setRateLimit(bytesPerSecond: number): void {
    this.rate = bytesPerSecond;
  }

  /** Body bytes served for `path`, or in total when no path is given. */
  bytesServed(path?: string): number {
    return path === undefined ? this.totalServed : (this.served.get(path) ?? 0);
  }

  requestsFor(path: string): OriginRequest[] {
    return this.requests.filter((r) => r.path === path);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  private route(path: string): Route {
    let route = this.routes.get(path);
    if (!route) {
      route = {};
      this.routes.set(path, route);
    }
    return route;
  }

  private count(path: string, n: number): void {
    this.served.set(path, (this.served.get(path) ?? 0) + n);
    this.totalServed += n;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const target = req.url ?? '/';
    const path = target.split('?')[0] ?? '/';
    const rangeHeader = req.headers.range;
    const entry: OriginRequest = {
      method: req.method ?? 'GET',
      path,
      target,
      range: rangeHeader,
      headers: req.headers,
      status: 0,
      at: Date.now(),
    };
    this.requests.push(entry);
    const answer = (status: number, headers: Record<string, string | number> = {}, text?: string) => {
      entry.status = status;
      const body = text === undefined ? undefined : Buffer.from(text);
      res.writeHead(status, body ? { ...headers, 'Content-Length': body.length } : headers);
      if (body && req.method !== 'HEAD') {
        this.count(path, body.length);
        res.end(body);
      } else {
        res.end();
      }
    };

    const route = this.routes.get(path);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      answer(405, { Allow: 'GET, HEAD' }, 'method not allowed\n');
      return;
    }
    if (route?.status !== undefined) {
      answer(route.status, {}, `status ${route.status}\n`);
      return;
    }
    for (const [name, value] of Object.entries(route?.requiredHeaders ?? {})) {
      if (req.headers[name] !== value) {
        answer(403, {}, `missing header ${name}\n`);
        return;
      }
    }
    const file = route?.file;
    if (!file) {
      answer(404, {}, 'not found\n');
      return;
    }

    const plain = route?.noRangesNoLength === true;
    const common = {
      'Content-Type': 'application/octet-stream',
      ...(plain ? {} : { 'Accept-Ranges': 'bytes' }),
      ETag: `"${file.sha256.slice(0, 32)}"`,
      'Last-Modified': new Date(0).toUTCString(),
    };
    const range = plain ? undefined : parseRange(rangeHeader, file.size);
    if (range === 'unsatisfiable') {
      answer(416, { ...common, 'Content-Range': `bytes */${file.size}` }, 'range not satisfiable\n');
      return;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? file.size - 1;
    const length = file.size === 0 ? 0 : end - start + 1;
    entry.status = range ? 206 : 200;
    res.writeHead(entry.status, {
      ...common,
      ...(plain ? {} : { 'Content-Length': length }),
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${file.size}` } : {}),
    });
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    const socket = req.socket;
    let bucket = this.buckets.get(socket);
    if (!bucket) {
      bucket = { readyAt: 0 };
      this.buckets.set(socket, bucket);
    }
    const rateAtStart = this.rate;
    const stages: (NodeJS.ReadableStream | NodeJS.ReadWriteStream | NodeJS.WritableStream)[] = [
      createReadStream(file.localPath, { start, end, highWaterMark: 64 * 1024 }),
    ];
    if (rateAtStart > 0) stages.push(new ConnectionThrottle(bucket, () => rateAtStart));
    stages.push(new ByteCounter((n) => this.count(path, n)), res);
    // A client that hangs up mid-body is normal (a peer cancelling a piece); nothing to report.
    pipeline(stages, () => {});
  }
}

export function startOrigin(options: OriginOptions = {}): Promise<TestOrigin> {
  return TestOrigin.start(options);
}
