import { connect, createServer, type Server, type Socket } from 'node:net';
import { pipeline, Transform, type TransformCallback } from 'node:stream';

/**
 * Paces bytes so that the sum over every caller stays at `rate` bytes/s. Each caller reserves the
 * next free slot of the shared timeline (first come, first served), so concurrent connections
 * interleave fairly and idle time is never banked as a burst.
 */
export class SharedPacer {
  private nextFree = 0;

  constructor(readonly rate: number) {}

  /** Resolves when `n` bytes may be sent. */
  async reserve(n: number): Promise<void> {
    const now = performance.now();
    const start = Math.max(now, this.nextFree);
    this.nextFree = start + (n / this.rate) * 1000;
    const wait = start - now;
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  }
}

const SLICE = 16 * 1024;

class PacedStream extends Transform {
  constructor(
    private readonly pacer: SharedPacer,
    private readonly onBytes: (n: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    void this.send(chunk).then(() => done(), done);
  }

  private async send(chunk: Buffer): Promise<void> {
    for (let off = 0; off < chunk.length; off += SLICE) {
      const slice = chunk.subarray(off, off + SLICE);
      await this.pacer.reserve(slice.length);
      this.onBytes(slice.length);
      this.push(slice);
    }
  }
}

/**
 * A TCP relay on 127.0.0.1 in front of an HTTP origin whose responses (upstream → client) share one
 * rate limit across all connections: "the origin can send U bytes/s in total". The test origin in
 * test/helpers limits each connection separately; the benchmark needs the origin-wide limit, and a
 * relay keeps the origin (and its byte counter) untouched.
 */
export class SharedRateRelay {
  private readonly sockets = new Set<Socket>();
  private relayed = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly pacer: SharedPacer,
  ) {}

  static async start(upstreamPort: number, rate: number): Promise<SharedRateRelay> {
    const pacer = new SharedPacer(rate);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('relay: no TCP address');
    const relay = new SharedRateRelay(server, address.port, pacer);
    server.on('connection', (client) => relay.accept(client, upstreamPort));
    return relay;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Response bytes passed to clients so far. */
  get bytesRelayed(): number {
    return this.relayed;
  }

  private accept(client: Socket, upstreamPort: number): void {
    const upstream = connect({ host: '127.0.0.1', port: upstreamPort });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    }
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    // A client hanging up mid-body (a cancelled piece) is normal: just tear down both sides.
    pipeline(client, upstream, closeBoth);
    pipeline(
      upstream,
      new PacedStream(this.pacer, (n) => {
        this.relayed += n;
      }),
      client,
      closeBoth,
    );
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
