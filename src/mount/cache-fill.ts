/**
 * Makes every blob's cache complete (the kernel mode's precondition): opens the caches, fetches
 * every missing chunk through a ChunkFetcher at foreground priority (verified, merged, coalesced as
 * for reads), and closes everything. Throws CacheFillError when a chunk could not be had.
 */
import type { DecodedBootstrap } from '../image/format/index.js';
import type { Logger } from '../observability/index.js';
import { blobCachePaths } from './blob-cache.js';
import { closeAll, everyChunkCached, openCaches } from './blob-cache-set.js';
import type { ChunkBackend } from './chunk-backend.js';
import { ChunkFetcher } from './chunk-fetcher.js';
import { CacheFillError } from './errors.js';
import type { FetchTuning } from './image-mount.js';
import { planPrefetch } from './prefetch-plan.js';
import { Prefetcher, type PrefetchProgress } from './prefetcher.js';

export interface CacheFillOptions {
  decoded: DecodedBootstrap;
  backend: ChunkBackend;
  cacheDir: string;
  logger: Logger;
  fetch?: FetchTuning;
  signal: AbortSignal;
  onProgress?: (progress: PrefetchProgress) => void;
}

/** Whether every chunk of the image is cached in `cacheDir` (opening creates empty caches). */
export async function isFullyCached(decoded: DecodedBootstrap, cacheDir: string): Promise<boolean> {
  const caches = await openCaches(cacheDir, decoded.image.blobs);
  try {
    return everyChunkCached(decoded.image, caches);
  } finally {
    await closeAll(caches);
  }
}

/** The cache data file of each blob, in blob order: the kernel's `device=` list. */
export function cacheDataPaths(decoded: DecodedBootstrap, cacheDir: string): string[] {
  return decoded.image.blobs.map((blob) => blobCachePaths(cacheDir, blob).data);
}

export async function fillCaches(options: CacheFillOptions): Promise<PrefetchProgress> {
  const { image } = options.decoded;
  const caches = await openCaches(options.cacheDir, image.blobs);
  const fetcher = new ChunkFetcher({
    image,
    backend: options.backend,
    caches,
    logger: options.logger,
    ...options.fetch,
  });
  try {
    const prefetcher = new Prefetcher({
      image,
      caches,
      fetcher,
      logger: options.logger,
      background: false,
      onProgress: options.onProgress,
    });
    const progress = await prefetcher.run(planPrefetch(image, [], { all: true }), options.signal);
    await fetcher.settled();
    options.signal.throwIfAborted();
    if (progress.failedChunks > 0 || !everyChunkCached(image, caches)) {
      throw new CacheFillError(
        `${progress.failedChunks} of ${progress.chunksTotal} chunks could not be fetched and verified; ` +
          'the image cannot be mounted by the kernel (see the log)',
      );
    }
    return progress;
  } finally {
    await fetcher.close();
    await closeAll(caches);
  }
}
