/**
 * One mounted image: the blob caches, the chunk fetcher over a backend, the ImageFilesystem, and the
 * FUSE session serving it — opened together, closed in reverse (unmount, stop fetching and let cache
 * commits finish, close files).
 */
import { type FuseMountOptions, FuseSession } from '../fuse/index.js';
import type { DecodedBootstrap } from '../image/format/index.js';
import type { Logger } from '../observability/index.js';
import { BlobCache } from './blob-cache.js';
import type { ChunkBackend } from './chunk-backend.js';
import { ChunkFetcher, type ChunkFetcherOptions } from './chunk-fetcher.js';
import { ChunkReader } from './chunk-reader.js';
import { ImageFilesystem } from './image-filesystem.js';

/** The tree never changes while mounted: let the kernel cache names and attributes for an hour. */
const METADATA_TIMEOUT_S = 3600;

export type FetchTuning = Pick<
  ChunkFetcherOptions,
  'minFetchSize' | 'maxFetchSize' | 'maxGap' | 'concurrency'
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
  fuse?: Partial<Omit<FuseMountOptions, 'fsName' | 'logger'>>;
}

export class MountedImage {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly session: FuseSession,
    readonly fetcher: ChunkFetcher,
    readonly reader: ChunkReader,
    private readonly caches: readonly BlobCache[],
    private readonly backend: ChunkBackend,
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
    const fs = new ImageFilesystem(options.decoded, reader, options.logger);
    try {
      const session = await FuseSession.mount(options.mountpoint, fs, {
        entryTimeout: METADATA_TIMEOUT_S,
        attrTimeout: METADATA_TIMEOUT_S,
        negativeTimeout: METADATA_TIMEOUT_S,
        ...options.fuse,
        fsName: options.name.replace(/[\s\0]/g, '_') || 'damselfly',
        logger: options.logger,
      });
      return new MountedImage(session, fetcher, reader, caches, options.backend);
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

  /** Unmounts (if still mounted), then lets cache commits finish and closes every file. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.session.unmount();
      await this.fetcher.close();
      await closeAll(this.caches);
      await this.backend.close?.();
    })();
    return this.closing;
  }
}

/** One cache per blob index; a digest listed twice shares one cache. */
async function openCaches(cacheDir: string, blobs: DecodedBootstrap['image']['blobs']): Promise<BlobCache[]> {
  const byDigest = new Map<string, Promise<BlobCache>>();
  for (const blob of blobs) {
    if (!byDigest.has(blob.digest)) byDigest.set(blob.digest, BlobCache.open(cacheDir, blob));
  }
  const opened = await Promise.allSettled(byDigest.values());
  const failure = opened.find((result) => result.status === 'rejected');
  if (failure) {
    await closeAll(opened.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : [])));
    throw failure.reason;
  }
  return Promise.all(blobs.map((blob) => byDigest.get(blob.digest)!));
}

async function closeAll(caches: readonly BlobCache[]): Promise<void> {
  await Promise.allSettled([...new Set(caches)].map((cache) => cache.close()));
}
