/** Bounds on what one untrusted layer may make us hold in memory. */
export interface LayerLimits {
  /** Largest PAX extended header or GNU long name/link accepted, in bytes (Go's archive/tar: 1 MiB). */
  maxMetaHeaderBytes: number;
  /** Most entries (of any kind) in one layer: the tree of one layer lives in memory. */
  maxEntries: number;
}

export const DEFAULT_LAYER_LIMITS: LayerLimits = {
  maxMetaHeaderBytes: 1024 * 1024,
  maxEntries: 4 * 1024 * 1024,
};

/** Linux NAME_MAX: the longest path component, in bytes. */
export const MAX_NAME_BYTES = 255;
/** Linux PATH_MAX: the longest entry path (after normalization) or hard link target, in bytes. */
export const MAX_PATH_BYTES = 4096;
/** symlink(2) refuses targets of PATH_MAX bytes or more (the NUL counts). */
export const MAX_SYMLINK_TARGET_BYTES = MAX_PATH_BYTES - 1;
/** Linux XATTR_NAME_MAX and XATTR_SIZE_MAX. */
export const MAX_XATTR_NAME_BYTES = 255;
export const MAX_XATTR_VALUE_BYTES = 64 * 1024;
