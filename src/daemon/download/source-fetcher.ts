import type { Semaphore } from '../../async/index.js';
import { fetchRange, fetchWhole, SourceError } from '../../source/index.js';
import { type PieceRange, pieceRange } from '../../task/index.js';
import { pieceBuffers } from '../buffer-pool.js';
import type { DaemonMetrics } from '../metrics.js';
import { pieceHasher } from '../piece-hasher.js';
import type { TokenBucket } from '../rate-limiter.js';
import type { TaskStorage } from '../storage/index.js';

export interface SourceFetcherDeps {
  storage: TaskStorage;
  downloadLimiter: TokenBucket;
  metrics: DaemonMetrics;
  /** Ranged GETs at once for this task. */
  concurrency: number;
  /**
   * Ranged GETs at once for all tasks of this host, taken in turn. Without it a seed fetching five layers
   * at once ran twenty ranges over one slow link, and its first piece was stored after 13 s instead of 3.
   */
  hostSlots: Semaphore;
  /** Retries per piece; 4xx answers are final. */
  retries: number;
}

/** A piece stored from the source, with the digest other peers will verify it against. */
export interface SourcePiece extends PieceRange {
  digest: string;
  costMs: number;
}

/**
 * Back-to-source for one task: fetches pieces from the origin, hashes and stores each, and hands every
 * stored piece to `onPiece` (which counts it and reports its digest to the scheduler).
 */
export class SourceFetcher {
  constructor(
    private readonly taskId: string,
    private readonly source: { url: string; headers: Record<string, string> },
    private readonly deps: SourceFetcherDeps,
    private readonly onPiece: (piece: SourcePiece) => void,
  ) {}

  /**
   * Ranged GETs with `concurrency` workers. Each worker fetches its next piece while the previous one is
   * being hashed, written and fsynced, so the origin connection never waits on the disk.
   */
  async fetchRanges(numbers: number[], contentLength: number, pieceLength: number): Promise<void> {
    const queue = [...numbers].sort((a, b) => a - b);
    const worker = async () => {
      let storing: Promise<void> = Promise.resolve();
      for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
        const range = pieceRange(n, contentLength, pieceLength);
        const started = performance.now();
        const data = await this.fetchRange(range);
        await storing; // at most one piece per worker waits for the disk
        storing = this.store(range, data, Math.round(performance.now() - started));
      }
      await storing;
    };
    await Promise.all(Array.from({ length: this.deps.concurrency }, worker));
  }

  /**
   * For origins without range support or length: one GET, cut into pieces as it streams. `onLength`
   * learns the total before the last (short) piece is stored; `expectedLength` (if known) is enforced.
   */
  async fetchSequential(
    pieceLength: number,
    expectedLength: number | null,
    onLength: (total: number) => void,
  ): Promise<void> {
    const body = await fetchWhole(this.source.url, this.source.headers);
    // Chunks are copied straight into a pooled piece buffer: no concatenation, no per-piece allocation.
    // `piece` is null once handed to `flush` (which gives it back): nothing is given back twice.
    let piece: Buffer | null = pieceBuffers.take(pieceLength);
    let at = 0;
    let number = 0;
    const flush = async (data: Buffer) => {
      const range = { number, offset: number * pieceLength, length: data.length };
      number++;
      if (!this.deps.storage.hasPiece(this.taskId, range.number)) await this.store(range, data, 0);
      else pieceBuffers.give(data);
    };
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        await this.deps.downloadLimiter.take(chunk.length);
        for (let used = 0; used < chunk.length; ) {
          piece ??= pieceBuffers.take(pieceLength);
          const n = Math.min(chunk.length - used, pieceLength - at);
          chunk.copy(piece, at, used, used + n);
          used += n;
          at += n;
          if (at === pieceLength) {
            const full: Buffer = piece;
            piece = null;
            at = 0;
            await flush(full);
          }
        }
      }
      const total = number * pieceLength + at;
      if (expectedLength !== null && total !== expectedLength) {
        throw new SourceError(`origin sent ${total} bytes, expected ${expectedLength}`);
      }
      onLength(total);
      if (piece && at > 0) {
        const last = piece.subarray(0, at);
        piece = null;
        await flush(last);
      }
    } finally {
      pieceBuffers.give(piece);
    }
  }

  /**
   * One piece's bytes from the origin, retried with backoff, in a pooled buffer (`store` gives it back).
   * A host slot is held for each attempt's transfer, not during the backoff.
   */
  private async fetchRange(range: PieceRange): Promise<Buffer> {
    const into = pieceBuffers.take(range.length);
    for (let attempt = 0; ; attempt++) {
      let failure: unknown;
      const release = await this.deps.hostSlots.acquire();
      try {
        await this.deps.downloadLimiter.take(range.length);
        const { url, headers } = this.source;
        return await fetchRange(url, headers, range.offset, range.length, undefined, into);
      } catch (err) {
        failure = err;
      } finally {
        release();
      }
      this.deps.metrics.pieceFailures.inc({ type: 'back_to_source' });
      if ((failure instanceof SourceError && failure.permanent) || attempt >= this.deps.retries) {
        pieceBuffers.give(into);
        throw failure;
      }
      await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
    }
  }

  /** Hashes and stores a piece, then gives its buffer back to the pool (the write has completed). */
  private async store(range: PieceRange, data: Buffer, costMs: number): Promise<void> {
    try {
      const digest = await pieceHasher.digest(data);
      await this.deps.storage.writePiece(this.taskId, { ...range, digest }, data);
      this.onPiece({ ...range, digest, costMs });
    } finally {
      pieceBuffers.give(data);
    }
  }
}
