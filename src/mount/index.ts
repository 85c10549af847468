/**
 * The lazy image filesystem behind `damselfly mount`: an image's tree over FUSE, file bytes fetched
 * on demand as verified chunks and kept in per-blob cache files. See docs/mount.md.
 */
export { BlobCache, blobCachePaths } from './blob-cache.js';
export type { ChunkBackend } from './chunk-backend.js';
export { ChunkBitmap } from './chunk-bitmap.js';
export { ChunkFetcher, type ChunkFetcherOptions, type FetchStats } from './chunk-fetcher.js';
export { ChunkReader, type ChunkReadStats } from './chunk-reader.js';
export {
  BlobCacheError,
  ChunkFetchError,
  ChunkVerificationError,
  ImageMountError,
  type ImageMountErrorCode,
} from './errors.js';
export { type FetchPlanOptions, type PlannedFetch, planFetches } from './fetch-plan.js';
export { type FileContent, ImageFilesystem } from './image-filesystem.js';
export { type FetchTuning, MountedImage, type MountImageOptions } from './image-mount.js';
export { LocalBackend } from './local-backend.js';
export { checkCanMount } from './preflight.js';
export { planFileRead, type ReadPiece } from './read-plan.js';
export { RegistryBackend } from './registry-backend.js';
