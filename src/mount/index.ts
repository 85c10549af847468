/**
 * The lazy image filesystem behind `damselfly mount`: an image's tree over FUSE, file bytes fetched
 * on demand as verified chunks and kept in per-blob cache files. See docs/mount.md.
 */
export { type AccessRecord, AccessTrace } from './access-trace.js';
export { type ApiRoutes, MountApiServer } from './api-server.js';
export { BlobCache, blobCachePaths } from './blob-cache.js';
export { writeBootstrapFile } from './bootstrap-file.js';
export { cacheDataPaths, fillCaches, isFullyCached } from './cache-fill.js';
export type { ChunkBackend } from './chunk-backend.js';
export { ChunkBitmap } from './chunk-bitmap.js';
export { ChunkFetcher, type ChunkFetcherOptions, type FetchStats } from './chunk-fetcher.js';
export { ChunkReader, type ChunkReadStats } from './chunk-reader.js';
export {
  BlobCacheError,
  CacheFillError,
  ChunkFetchError,
  ChunkVerificationError,
  ImageMountError,
  type ImageMountErrorCode,
  KernelMountError,
} from './errors.js';
export { type FetchPlanOptions, type PlannedFetch, planFetches } from './fetch-plan.js';
export { FetchSlots, FetchTicket } from './fetch-slots.js';
export { type FileContent, type FilesystemObserver, ImageFilesystem } from './image-filesystem.js';
export { type FetchTuning, MountedImage, type MountImageOptions } from './image-mount.js';
export { erofsMountedAt, KernelMount } from './kernel-mount.js';
export { LocalBackend } from './local-backend.js';
export { type MetricSources, MountMetrics, type MountMetricsSnapshot } from './mount-metrics.js';
export { type MountState, MountStatus } from './mount-status.js';
export { NodePaths } from './node-paths.js';
export { chunksInStoredOrder, type PrefetchPlan, planPrefetch } from './prefetch-plan.js';
export { Prefetcher, type PrefetchProgress, type PrefetchState } from './prefetcher.js';
export { checkCanMount } from './preflight.js';
export { ByteRateLimit } from './rate-limit.js';
export { planFileRead, type ReadPiece } from './read-plan.js';
export { RegistryBackend } from './registry-backend.js';
export { TraceFileWriter } from './trace-file.js';
