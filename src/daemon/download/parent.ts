import { createInterface } from 'node:readline';
import { Agent, request } from 'undici';
import { HostType, type Peer } from '../../rpc/index.js';
import { PieceClient, PieceClientError } from '../../source/piece-client.js';
import { MAX_PIECE_LENGTH } from '../../task/index.js';
import { pieceBuffers } from '../buffer-pool.js';
import { PIECE_DEFERRED_HEADER, type PieceSyncMessage } from '../upload/server.js';

/** Keep-alive connections to parents' upload servers, shared by all downloads of this daemon: */
/** for the piece sync streams, */
const agent = new Agent({ connections: 16, keepAliveTimeout: 30_000, pipelining: 0 });
/** and for piece bodies. */
const pieceClient = new PieceClient();

export class PieceFetchError extends Error {
  constructor(
    message: string,
    /** The parent refused for now (busy); try it again later. */
    readonly busy = false,
    /** The parent refused this piece only, for this long (a seed that just uploaded it elsewhere). */
    readonly deferredMs = 0,
  ) {
    super(message);
  }
}

/** A candidate parent as this download sees it: what it holds and how fast it has been. */
export class Parent {
  readonly id: string;
  readonly baseUrl: string;
  private readonly host: string;
  private readonly port: number;
  /** Seed peers serve the pieces nobody else has; children prefer other parents for the rest. */
  readonly seed: boolean;
  readonly pieces = new Set<number>();
  /** performance.now() when `pieces` last grew (or the parent was added): a parent still downloading grows. */
  grewAt = performance.now();
  inFlight = 0;
  failures = 0;
  busyUntil = 0;
  /** Piece → Date.now() until which this parent refuses it (PIECE_DEFERRED_HEADER). */
  private readonly deferred = new Map<number, number>();
  /** Bytes/s, exponentially weighted; 0 until the first piece. */
  speed = 0;
  done = false;
  closed = false;
  layout: { contentLength: number; pieceLength: number; pieceCount: number } | null = null;
  private readonly abort = new AbortController();

  constructor(peer: Peer) {
    this.id = peer.id;
    const host = peer.host!;
    this.seed = host.type === HostType.SEED;
    this.host = host.ip;
    this.port = host.uploadPort;
    const ip = host.ip.includes(':') ? `[${host.ip}]` : host.ip;
    this.baseUrl = `http://${ip}:${host.uploadPort}`;
  }

  /**
   * Follows the parent's piece list until it has everything or the connection ends.
   * `onUpdate` runs after every message; resolves when the stream ends (rejects on error).
   */
  async sync(taskId: string, onUpdate: () => void): Promise<void> {
    const res = await request(`${this.baseUrl}/tasks/${taskId}/pieces`, {
      dispatcher: agent,
      signal: this.abort.signal,
      headersTimeout: 10_000,
      bodyTimeout: 0,
    });
    if (res.statusCode !== 200) {
      res.body.resume();
      throw new PieceFetchError(`parent answered ${res.statusCode} to piece sync`);
    }
    for await (const line of createInterface({ input: res.body, crlfDelay: Infinity })) {
      if (!line) continue;
      const msg = JSON.parse(line) as PieceSyncMessage;
      if (msg.contentLength !== undefined && msg.pieceLength !== undefined && msg.pieceCount !== undefined) {
        this.layout = {
          contentLength: msg.contentLength,
          pieceLength: msg.pieceLength,
          pieceCount: msg.pieceCount,
        };
      }
      const before = this.pieces.size;
      for (const n of msg.pieces ?? []) this.pieces.add(n);
      if (this.pieces.size > before) this.grewAt = performance.now();
      if (msg.done) this.done = true;
      if (msg.error) throw new PieceFetchError(`parent: ${msg.error}`);
      onUpdate();
    }
    if (!this.done) throw new PieceFetchError('parent closed the piece sync stream');
  }

  /** The bytes of one piece, in a pooled buffer the caller gives back (pieceBuffers); the caller verifies them. */
  async fetchPiece(taskId: string, number: number, timeoutMs: number, signal: AbortSignal): Promise<Buffer> {
    try {
      return await pieceClient.get({
        host: this.host,
        port: this.port,
        path: `/tasks/${taskId}/pieces/${number}`,
        signal: AbortSignal.any([signal, this.abort.signal]),
        timeoutMs,
        accept: (status, headers) => {
          const deferredMs = Number(headers[PIECE_DEFERRED_HEADER]);
          if (status === 429 && deferredMs > 0) {
            throw new PieceFetchError(
              `piece ${number} deferred by the parent`,
              false,
              Math.min(deferredMs, 60_000),
            );
          }
          if (status === 429) throw new PieceFetchError('parent is busy', true);
          if (status !== 200) throw new PieceFetchError(`parent answered ${status} for piece ${number}`);
          const length = Number(headers['content-length']);
          if (!Number.isSafeInteger(length) || length < 0 || length > MAX_PIECE_LENGTH) {
            throw new PieceFetchError(`parent sent a bad content-length for piece ${number}`);
          }
          return pieceBuffers.take(length);
        },
        release: (buffer) => pieceBuffers.give(buffer),
      });
    } catch (err) {
      if (err instanceof PieceClientError) throw new PieceFetchError(`piece ${number}: ${err.message}`);
      throw err;
    }
  }

  defer(piece: number, ms: number): void {
    this.deferred.set(piece, Date.now() + ms);
  }

  /** Holds the piece and would serve it now. */
  offers(piece: number, now: number): boolean {
    if (!this.pieces.has(piece)) return false;
    const until = this.deferred.get(piece);
    if (until === undefined) return true;
    if (until > now) return false;
    this.deferred.delete(piece);
    return true;
  }

  recordSpeed(bytes: number, ms: number): void {
    const sample = (bytes / Math.max(ms, 1)) * 1000;
    this.speed = this.speed === 0 ? sample : this.speed * 0.7 + sample * 0.3;
  }

  close(): void {
    this.closed = true;
    this.abort.abort();
  }
}
