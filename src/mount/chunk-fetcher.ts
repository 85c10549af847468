/**
 * Fetches missing chunks: plans range requests over the blob's stored order (merged, amplified; see
 * fetch-plan.ts), runs them through the backend with bounded concurrency, splits each range into
 * chunks, verifies every chunk (decompress + sha256 against the chunk table) and only then hands it
 * to waiters and to the blob cache.
 *
 * - One fetch per chunk however many readers want it: a chunk is "pending" from the moment it is
 *   planned until its cache commit finished (or it failed); later requests join the same promise.
 * - A chunk that fails verification is logged (blob, chunk, offsets), rejected with
 *   ChunkVerificationError, never cached, and forgotten: the next read fetches it again.
 * - Fetches are shared, so they run on the fetcher's own lifetime, not on a reader's signal: a
 *   reader that gives up stops waiting, the fetch still fills the cache for the next one.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { prepareCompressor } from '../image/build/index.js';
import type { ChunkInfo, ImageBootstrap } from '../image/format/index.js';
import type { Logger } from '../observability/index.js';
import type { BlobCache } from './blob-cache.js';
import type { ChunkBackend } from './chunk-backend.js';
import { verifyStoredChunk } from './chunk-verifier.js';
import { ChunkFetchError, ChunkVerificationError } from './errors.js';
import { type FetchPlanOptions, type PlannedFetch, planFetches } from './fetch-plan.js';
import { FetchSlots, FetchTicket } from './fetch-slots.js';
import { ByteRateLimit } from './rate-limit.js';

const MiB = 1024 * 1024;

export interface ChunkFetcherOptions {
  image: ImageBootstrap;
  backend: ChunkBackend;
  /** The cache of each blob, by blob index. */
  caches: readonly BlobCache[];
  logger: Logger;
  /** Small reads grow to about this many bytes of neighbouring missing chunks (default 1 MiB; 0 = off). */
  minFetchSize?: number;
  /** No range request is longer (default 8 MiB, at least minFetchSize). */
  maxFetchSize?: number;
  /** Unneeded bytes a merged request may carry between two chunks (default 16 KiB). */
  maxGap?: number;
  /** Backend requests in flight at once (default 8). */
  concurrency?: number;
  /** Background (prefetch) requests in flight at once (default: all but the reserved quarter). */
  backgroundConcurrency?: number;
  /** Stored bytes per second background requests may fetch (default 0 = unlimited). */
  backgroundRate?: number;
}

export interface FetchRequestOptions {
  /** Prefetch: yields to foreground reads (reserved slots, queued behind them, rate-limited). */
  background?: boolean;
}

export interface FetchStats {
  /** Range requests sent to the backend, and the stored bytes they returned. */
  requests: number;
  bytes: number;
  /** Of those, background (prefetch) requests and bytes. */
  backgroundRequests: number;
  backgroundBytes: number;
  /** Chunks verified and handed out. */
  chunks: number;
  verifyFailures: number;
  fetchFailures: number;
  cacheWriteFailures: number;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Amplified chunks may have no waiter: their failures must not become unhandled rejections.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** One blob's chunks in stored (compressedOffset) order. */
interface StoredOrder {
  chunks: number[];
  extents: ChunkInfo[];
}

export class ChunkFetcher {
  readonly stats: FetchStats = {
    requests: 0,
    bytes: 0,
    backgroundRequests: 0,
    backgroundBytes: 0,
    chunks: 0,
    verifyFailures: 0,
    fetchFailures: 0,
    cacheWriteFailures: 0,
  };
  private readonly pending = new Map<number, Promise<Buffer>>();
  /** The request each pending chunk waits for, until its bytes arrived (for promotion). */
  private readonly ticketOf = new Map<number, FetchTicket>();
  private readonly orders: StoredOrder[];
  /** Chunk index → its position in its blob's stored order. */
  private readonly positionOf: Int32Array;
  private readonly plan: FetchPlanOptions;
  private readonly slots: FetchSlots;
  private readonly rate: ByteRateLimit;
  private readonly lifetime = new AbortController();
  private readonly work = new Set<Promise<void>>();
  private readonly logger: Logger;

  constructor(private readonly options: ChunkFetcherOptions) {
    const minFetchSize = options.minFetchSize ?? MiB;
    this.plan = {
      minFetchSize,
      maxFetchSize: Math.max(options.maxFetchSize ?? 8 * MiB, minFetchSize),
      maxGap: options.maxGap ?? 16 * 1024,
    };
    this.slots = new FetchSlots({
      limit: options.concurrency ?? 8,
      backgroundLimit: options.backgroundConcurrency,
    });
    this.rate = new ByteRateLimit(options.backgroundRate ?? 0);
    this.logger = options.logger;
    ({ orders: this.orders, positionOf: this.positionOf } = storedOrders(options.image));
  }

  /** Whether a fetch of chunk `index` is under way (or its bytes await their cache commit). */
  isPending(index: number): boolean {
    return this.pending.has(index);
  }

  /**
   * The verified bytes of each chunk, in order. Chunks not pending are fetched (with neighbours,
   * per the plan); callers read chunks the cache has from the cache instead of asking here.
   */
  fetch(indexes: readonly number[], options: FetchRequestOptions = {}): Array<Promise<Buffer>> {
    if (this.lifetime.signal.aborted) throw new ChunkFetchError('the chunk fetcher is closed');
    const background = options.background === true;
    const fresh = new Map<number, number[]>();
    for (const index of indexes) {
      if (this.pending.has(index)) {
        if (!background) this.promote(index);
        continue;
      }
      const blobIndex = this.options.image.chunks[index]!.blobIndex;
      const positions = fresh.get(blobIndex) ?? [];
      positions.push(this.positionOf[index]!);
      fresh.set(blobIndex, positions);
    }
    for (const [blobIndex, positions] of fresh) {
      const order = this.orders[blobIndex]!;
      const cache = this.options.caches[blobIndex]!;
      const available = (position: number) => {
        const index = order.chunks[position]!;
        return this.pending.has(index) || cache.has(order.extents[position]!);
      };
      for (const planned of planFetches(order.extents, positions, available, this.plan)) {
        this.start(blobIndex, planned, new FetchTicket(background));
      }
    }
    return indexes.map((index) => this.pending.get(index)!);
  }

  /** A reader waits for a chunk a prefetch request is fetching: that request now counts as a read. */
  private promote(index: number): void {
    const ticket = this.ticketOf.get(index);
    if (ticket?.background) this.slots.promote(ticket);
  }

  /** Resolves once every fetch under way has finished and its chunks are committed to the cache. */
  async settled(): Promise<void> {
    while (this.work.size > 0) await Promise.allSettled([...this.work]);
  }

  /** Stops fetching (waiters get an abort error) and waits for running work and cache writes. */
  async close(): Promise<void> {
    this.lifetime.abort(new ChunkFetchError('the chunk fetcher is closed'));
    await this.settled();
  }

  private start(blobIndex: number, planned: PlannedFetch, ticket: FetchTicket): void {
    const order = this.orders[blobIndex]!;
    const waiters = planned.positions.map((position) => {
      const index = order.chunks[position]!;
      const waiter = deferred<Buffer>();
      this.pending.set(index, waiter.promise);
      this.ticketOf.set(index, ticket);
      return { index, waiter };
    });
    this.track(this.runFetch(blobIndex, planned, waiters, ticket));
  }

  private track(work: Promise<void>): void {
    this.work.add(work);
    void work.finally(() => this.work.delete(work));
  }

  private async runFetch(
    blobIndex: number,
    planned: PlannedFetch,
    waiters: Array<{ index: number; waiter: Deferred<Buffer> }>,
    ticket: FetchTicket,
  ): Promise<void> {
    let stored: Buffer;
    try {
      stored = await this.readRange(blobIndex, planned, ticket);
    } catch (err) {
      if (!this.lifetime.signal.aborted) {
        this.stats.fetchFailures++;
        const { offset, length, positions } = planned;
        const blob = this.blobDigest(blobIndex);
        this.logger.error({ err, blob, offset, length, chunks: positions.length }, 'chunk fetch failed');
      }
      for (const { index, waiter } of waiters) this.fail(index, waiter, err);
      return;
    } finally {
      for (const { index } of waiters) if (this.ticketOf.get(index) === ticket) this.ticketOf.delete(index);
    }
    for (const { index, waiter } of waiters) {
      this.deliver(blobIndex, index, waiter, stored, planned.offset);
      // Verifying a range is CPU work: let FUSE requests in between chunks.
      await nextTurn();
    }
  }

  private async readRange(blobIndex: number, planned: PlannedFetch, ticket: FetchTicket): Promise<Buffer> {
    const blob = this.options.image.blobs[blobIndex]!;
    await prepareCompressor(blob.compressor);
    if (ticket.background) await this.takeRate(planned.length, ticket);
    const stored = await this.slots.run(ticket, () => {
      this.lifetime.signal.throwIfAborted();
      this.stats.requests++;
      if (ticket.background) this.stats.backgroundRequests++;
      return this.options.backend.readRange(blob, planned.offset, planned.length, this.lifetime.signal);
    });
    if (ticket.background) this.stats.backgroundBytes += stored.length;
    if (stored.length !== planned.length) {
      throw new ChunkFetchError(
        `${this.options.backend.name}: asked ${planned.length} bytes at ${planned.offset} of blob ${blob.digest}, got ${stored.length}`,
      );
    }
    this.stats.bytes += stored.length;
    return stored;
  }

  /** Waits for the prefetch rate limit; a promoted request (a reader waits for it) stops waiting. */
  private async takeRate(bytes: number, ticket: FetchTicket): Promise<void> {
    try {
      await this.rate.take(bytes, AbortSignal.any([this.lifetime.signal, ticket.promoted]));
    } catch (err) {
      if (!ticket.promoted.aborted) throw err;
    }
  }

  private deliver(
    blobIndex: number,
    index: number,
    waiter: Deferred<Buffer>,
    stored: Buffer,
    rangeOffset: number,
  ) {
    const blob = this.options.image.blobs[blobIndex]!;
    const chunk = this.options.image.chunks[index]!;
    const start = chunk.compressedOffset - rangeOffset;
    let data: Buffer;
    try {
      data = verifyStoredChunk(blob, chunk, stored.subarray(start, start + chunk.compressedSize));
    } catch (err) {
      this.stats.verifyFailures++;
      this.logger.error(
        {
          blob: blob.digest,
          chunk: index,
          compressedOffset: chunk.compressedOffset,
          compressedSize: chunk.compressedSize,
          uncompressedOffset: chunk.uncompressedOffset,
          reason: (err as Error).message,
        },
        'chunk failed verification: not served, not cached; the next read fetches it again',
      );
      this.fail(index, waiter, err);
      return;
    }
    this.stats.chunks++;
    waiter.resolve(data);
    this.track(this.persist(blobIndex, index, chunk, data));
  }

  /** Into the cache; the chunk stays pending (served from memory) until its bit is durable. */
  private async persist(blobIndex: number, index: number, chunk: ChunkInfo, data: Buffer): Promise<void> {
    try {
      await this.options.caches[blobIndex]!.store(chunk, data);
    } catch (err) {
      this.stats.cacheWriteFailures++;
      this.logger.warn({ err, blob: this.blobDigest(blobIndex), chunk: index }, 'chunk not cached');
    } finally {
      this.pending.delete(index);
    }
  }

  private fail(index: number, waiter: Deferred<Buffer>, err: unknown): void {
    this.pending.delete(index);
    waiter.reject(err instanceof ChunkVerificationError || err instanceof ChunkFetchError ? err : wrap(err));
  }

  private blobDigest(blobIndex: number): string | undefined {
    return this.options.image.blobs[blobIndex]?.digest;
  }
}

function wrap(err: unknown): ChunkFetchError {
  return new ChunkFetchError((err as Error)?.message ?? String(err), { cause: err });
}

/** Every blob's chunks sorted by stored offset, and each chunk's place in that order. */
export function storedOrders(image: ImageBootstrap): { orders: StoredOrder[]; positionOf: Int32Array } {
  const byBlob: number[][] = image.blobs.map(() => []);
  image.chunks.forEach((chunk, index) => {
    byBlob[chunk.blobIndex]?.push(index);
  });
  const positionOf = new Int32Array(image.chunks.length);
  const orders = byBlob.map((chunks) => {
    chunks.sort((a, b) => image.chunks[a]!.compressedOffset - image.chunks[b]!.compressedOffset);
    chunks.forEach((index, position) => {
      positionOf[index] = position;
    });
    return { chunks, extents: chunks.map((index) => image.chunks[index]!) };
  });
  return { orders, positionOf };
}
