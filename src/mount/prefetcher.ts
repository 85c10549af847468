/**
 * Runs a PrefetchPlan through the shared ChunkFetcher: chunks the cache has count as done at once,
 * the rest are requested in batches (a few in flight; the fetcher merges each batch into range
 * requests). As background requests they yield to reads and obey the rate limit; as foreground ones
 * (the kernel mode's cache fill) they do not. A chunk a reader is already fetching is joined, never
 * fetched twice. A failed chunk is counted and skipped (the fetcher logged it); the rest go on.
 */
import type { ImageBootstrap } from '../image/format/index.js';
import type { Logger } from '../observability/index.js';
import type { BlobCache } from './blob-cache.js';
import type { ChunkFetcher } from './chunk-fetcher.js';
import type { PrefetchPlan } from './prefetch-plan.js';

export type PrefetchState = 'idle' | 'running' | 'done' | 'failed' | 'cancelled';

export interface PrefetchProgress {
  state: PrefetchState;
  chunksTotal: number;
  chunksDone: number;
  /** Uncompressed bytes of the planned chunks, and of those now cached (or failed). */
  bytesTotal: number;
  bytesDone: number;
  failedChunks: number;
  /** ms since the epoch, or null. */
  startedAt: number | null;
  finishedAt: number | null;
}

export interface PrefetcherOptions {
  image: ImageBootstrap;
  caches: readonly BlobCache[];
  fetcher: ChunkFetcher;
  logger: Logger;
  /** Background requests (yield to reads, rate-limited); default true. */
  background?: boolean;
  /** Stored bytes per batch (default 8 MiB) and batches in flight (default 4). */
  batchBytes?: number;
  batchesInFlight?: number;
  onProgress?: (progress: PrefetchProgress) => void;
}

const MiB = 1024 * 1024;

export class Prefetcher {
  private state: PrefetchState = 'idle';
  private chunksTotal = 0;
  private chunksDone = 0;
  private bytesTotal = 0;
  private bytesDone = 0;
  private failedChunks = 0;
  private startedAt: number | null = null;
  private finishedAt: number | null = null;

  constructor(private readonly options: PrefetcherOptions) {}

  get progress(): PrefetchProgress {
    return {
      state: this.state,
      chunksTotal: this.chunksTotal,
      chunksDone: this.chunksDone,
      bytesTotal: this.bytesTotal,
      bytesDone: this.bytesDone,
      failedChunks: this.failedChunks,
      startedAt: this.startedAt,
      finishedAt: this.finishedAt,
    };
  }

  /** Fetches the plan; resolves with the final progress (never rejects: failures are counted). */
  async run(plan: PrefetchPlan, signal: AbortSignal): Promise<PrefetchProgress> {
    this.state = 'running';
    this.startedAt = Date.now();
    this.chunksTotal = plan.chunks.length;
    this.bytesTotal = plan.totalBytes;
    const inFlight = new Set<Promise<void>>();
    const limit = this.options.batchesInFlight ?? 4;
    try {
      for (const batch of this.batches(plan.chunks)) {
        signal.throwIfAborted();
        while (inFlight.size >= limit) await Promise.race(inFlight);
        const work = this.fetchBatch(batch);
        inFlight.add(work);
        void work.finally(() => inFlight.delete(work));
      }
      await Promise.all(inFlight);
      // A fetched chunk is served from memory until its group commit: "done" means its bit is durable.
      await this.options.fetcher.settled();
      signal.throwIfAborted();
      this.finish(this.failedChunks > 0 ? 'failed' : 'done');
    } catch (err) {
      await Promise.allSettled(inFlight);
      this.finish('cancelled');
      this.options.logger.info({ reason: (err as Error).message }, 'prefetch stopped');
    }
    return this.progress;
  }

  /** Chunks not cached yet, cut into batches of about `batchBytes` stored bytes; cached ones count as done. */
  private *batches(chunks: readonly number[]): Generator<number[]> {
    const { image, caches } = this.options;
    const batchBytes = this.options.batchBytes ?? 8 * MiB;
    let batch: number[] = [];
    let stored = 0;
    for (const index of chunks) {
      const chunk = image.chunks[index]!;
      if (caches[chunk.blobIndex]!.has(chunk) && !this.options.fetcher.isPending(index)) {
        this.count(index, true);
        continue;
      }
      batch.push(index);
      stored += chunk.compressedSize;
      if (stored >= batchBytes) {
        yield batch;
        batch = [];
        stored = 0;
      }
    }
    if (batch.length > 0) yield batch;
  }

  private async fetchBatch(batch: number[]): Promise<void> {
    const fetched = this.options.fetcher.fetch(batch, { background: this.options.background ?? true });
    await Promise.all(
      fetched.map((promise, i) =>
        promise.then(
          () => this.count(batch[i]!, true),
          () => this.count(batch[i]!, false),
        ),
      ),
    );
  }

  private count(index: number, ok: boolean): void {
    this.chunksDone++;
    this.bytesDone += this.options.image.chunks[index]!.uncompressedSize;
    if (!ok) this.failedChunks++;
    this.options.onProgress?.(this.progress);
  }

  private finish(state: PrefetchState): void {
    this.state = state;
    this.finishedAt = Date.now();
    this.options.onProgress?.(this.progress);
  }
}
