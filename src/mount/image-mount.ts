/**
 * One mounted image: the blob caches, the chunk fetcher over a backend, the ImageFilesystem, and the
 * FUSE session serving it — opened together, closed in reverse (unmount, stop fetching and let cache
 * commits finish, close files).
 */
import { type FuseMountOptions, FuseSession } from '../fuse/index.js';
import type { DecodedBootstrap } from '../image/format/index.js';
import type { Logger } from '../observability/index.js';
import type { BlobCache } from './blob-cache.js';
import { closeAll, openCaches } from './blob-cache-set.js';
import type { ChunkBackend } from './chunk-backend.js';
import { ChunkFetcher, type ChunkFetcherOptions } from './chunk-fetcher.js';
import { ChunkReader } from './chunk-reader.js';
import { type FilesystemObserver, ImageFilesystem } from './image-filesystem.js';
import type { PrefetchPlan } from './prefetch-plan.js';
import { Prefetcher } from './prefetcher.js';

/** The tree never changes while mounted: let the kernel cache names and attributes for an hour. */
const METADATA_TIMEOUT_S = 3600;

export type FetchTuning = Pick<
  ChunkFetcherOptions,
  'minFetchSize' | 'maxFetchSize' | 'maxGap' | 'concurrency' | 'backgroundConcurrency' | 'backgroundRate'
>;

export interface MountImageOptions {
  /** For `mount`/`df` and logs: the source's path or reference. */
  name: string;
  decoded: DecodedBootstrap;
  backend: ChunkBackend;
  cacheDir: string;
  mountpoint: string;
  logger: Logger;
  fetch?: FetchTuning;
  /** Sees opens and reads (access trace, read metrics). */
  observer?: FilesystemObserver;
  fuse?: Partial<Omit<FuseMountOptions, 'fsName' | 'logger'>>;
}

export class MountedImage {
  private closing: Promise<void> | undefined;
  private readonly lifetime = new AbortController();
  private prefetching: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly session: FuseSession,
    readonly fetcher: ChunkFetcher,
    readonly reader: ChunkReader,
    readonly caches: readonly BlobCache[],
    private readonly backend: ChunkBackend,
    private readonly logger: Logger,
  ) {}

  static async mount(options: MountImageOptions): Promise<MountedImage> {
    const { image } = options.decoded;
    const caches = await openCaches(options.cacheDir, image.blobs);
    const fetcher = new ChunkFetcher({
      image,
      backend: options.backend,
      caches,
      logger: options.logger,
      ...options.fetch,
    });
    const reader = new ChunkReader(image, caches, fetcher);
    const fs = new ImageFilesystem(options.decoded, reader, options.logger, options.observer);
    try {
      const session = await FuseSession.mount(options.mountpoint, fs, {
        entryTimeout: METADATA_TIMEOUT_S,
        attrTimeout: METADATA_TIMEOUT_S,
        negativeTimeout: METADATA_TIMEOUT_S,
        ...options.fuse,
        fsName: options.name.replace(/[\s\0]/g, '_') || 'damselfly',
        logger: options.logger,
      });
      return new MountedImage(session, fetcher, reader, caches, options.backend, options.logger);
    } catch (err) {
      await fetcher.close();
      await closeAll(caches);
      throw err;
    }
  }

  /** Resolves when the session is over (unmounted from outside, or by `close`). */
  get unmounted(): Promise<void> {
    return this.session.closed;
  }

  /**
   * Fetches `plan` in the background (yielding to reads, at the fetcher's background rate) until it
   * is done or the image is closed. Returns the running Prefetcher (for its progress).
   */
  startPrefetch(plan: PrefetchPlan): Prefetcher {
    const prefetcher = new Prefetcher({
      image: this.reader.image,
      caches: this.caches,
      fetcher: this.fetcher,
      logger: this.logger,
    });
    const run = prefetcher.run(plan, this.lifetime.signal).then((progress) => {
      this.logger.info({ ...progress }, 'prefetch finished');
    });
    this.prefetching = Promise.all([this.prefetching, run]);
    return prefetcher;
  }

  /** Unmounts (if still mounted), then lets cache commits finish and closes every file. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.lifetime.abort(new Error('unmounting'));
      await this.session.unmount();
      // The fetcher first: closing it ends rate-limit waits, so the prefetch winds down at once.
      await this.fetcher.close();
      await this.prefetching;
      await closeAll(this.caches);
      await this.backend.close?.();
    })();
    return this.closing;
  }
}
