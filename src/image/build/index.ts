export { BlobBuilder, type BlobBuilderOptions, type FileChunker } from './blob-builder.js';
export type { CommittedBlobFile } from './blob-file.js';
export {
  type BuildImageOptions,
  type BuildSummary,
  type BuiltBlob,
  buildImage,
  checkBuildOptions,
} from './build.js';
export { ChunkDictionary, type CompactedTables, type DedupFigures } from './chunk-dictionary.js';
export {
  COMPRESSORS,
  CompressionError,
  type CompressionErrorCode,
  compressChunk,
  DEFAULT_ZSTD_LEVEL,
  decompressChunk,
  isCompressor,
  prepareCompressor,
} from './compression.js';
export {
  type FileContentSink,
  type WalkOptions,
  type WalkProgress,
  type WalkResult,
  walkDirectory,
} from './directory-walker.js';
export { ImageBuildError, type ImageBuildErrorCode } from './errors.js';
export { decodeRdev } from './stat-attributes.js';
