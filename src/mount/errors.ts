/** Typed failures of the lazy image filesystem; `code` lets the CLI print one line. */

/** Fetched bytes that did not decode or hash to the chunk table's digest: never served, never cached. */
export class ChunkVerificationError extends Error {
  override readonly name = 'ChunkVerificationError';
  readonly code = 'ECHUNKVERIFY';
}

/** The backend could not deliver a range of a blob (network, missing blob, short file). */
export class ChunkFetchError extends Error {
  override readonly name = 'ChunkFetchError';
  readonly code = 'ECHUNKFETCH';
}

/** A cache file could not be created, read or written. */
export class BlobCacheError extends Error {
  override readonly name = 'BlobCacheError';
  readonly code = 'EBLOBCACHE';
}

export type ImageMountErrorCode =
  /** Mounting needs root (mount(8) with our /dev/fuse fd). */
  | 'ENOTROOT'
  /** /dev/fuse is missing or cannot be opened. */
  | 'ENOFUSE'
  /** The mountpoint does not exist or is not a directory. */
  | 'EMOUNTPOINT'
  /** The image's node numbering cannot be served (a non-root inode at FUSE's root id). */
  | 'ELAYOUT';

export class ImageMountError extends Error {
  override readonly name = 'ImageMountError';
  constructor(
    readonly code: ImageMountErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The kernel mode could not make every blob's cache complete. */
export class CacheFillError extends Error {
  override readonly name = 'CacheFillError';
  readonly code = 'ECACHEFILL';
}

/** losetup / mount -t erofs / umount failed. */
export class KernelMountError extends Error {
  override readonly name = 'KernelMountError';
  readonly code = 'EKERNELMOUNT';
}
