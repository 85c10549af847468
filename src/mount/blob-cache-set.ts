/** The blob caches of one image, by blob index (a digest listed twice shares one cache). */
import type { DecodedBootstrap, ImageBootstrap } from '../image/format/index.js';
import { BlobCache } from './blob-cache.js';

/** One cache per blob index; a digest listed twice shares one cache. */
export async function openCaches(
  cacheDir: string,
  blobs: DecodedBootstrap['image']['blobs'],
): Promise<BlobCache[]> {
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

export async function closeAll(caches: readonly BlobCache[]): Promise<void> {
  await Promise.allSettled([...new Set(caches)].map((cache) => cache.close()));
}

/** Whether every chunk of the chunk table is in its blob's cache. */
export function everyChunkCached(image: ImageBootstrap, caches: readonly BlobCache[]): boolean {
  return image.chunks.every((chunk) => caches[chunk.blobIndex]!.has(chunk));
}
