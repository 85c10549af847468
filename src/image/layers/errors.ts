/** What went wrong with an untrusted layer blob; every code names one class of bad input. */
export type LayerFormatErrorCode =
  /** A tar header block or PAX record is malformed (checksum, number, record syntax, UTF-8 names). */
  | 'EHEADER'
  /** A PAX or GNU long-name header is larger than `limits.maxMetaHeaderBytes`. */
  | 'EHEADER_TOO_LARGE'
  /** The tar, or the compressed stream around it, ends early (no end-of-archive marker counts as early). */
  | 'ETRUNCATED'
  /** The compressed stream is corrupt, or not in the compression the media type names. */
  | 'ECOMPRESSION'
  /** An entry path is absolute or has a `..` component. */
  | 'EPATH'
  /** A path component is longer than 255 bytes, or a path or symlink target longer than the limit. */
  | 'ENAME_TOO_LONG'
  /** An entry's parent path (or a hard link's target path) goes through a symlink. */
  | 'ESYMLINK_PARENT'
  /** An entry's parent path goes through something that is neither a directory nor a symlink. */
  | 'ENOTDIR'
  /** A whiteout naming nothing (`.wh.`, `.wh..`, `.wh...`), or an entry below a whiteout name. */
  | 'EWHITEOUT'
  /** A hard link to a missing target or to a directory. */
  | 'ELINK'
  /** An empty symlink target, or uid/gid/device numbers out of range. */
  | 'EATTRIBUTE'
  /** Sparse files (GNU `S` entries, PAX `GNU.sparse.*`): not supported. */
  | 'EUNSUPPORTED_ENTRY'
  /** More entries than `limits.maxEntries`, or an extended attribute larger than Linux allows. */
  | 'ELIMIT';

/** The layer blob is not a well-formed, safe OCI layer. */
export class LayerFormatError extends Error {
  override readonly name = 'LayerFormatError';
  constructor(
    readonly code: LayerFormatErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type UnsupportedLayerErrorCode = 'EMEDIATYPE' | 'ECOMPRESSION_UNSUPPORTED';

/** A layer we recognise but cannot read yet (zstd, encrypted), or a media type that is not a layer. */
export class UnsupportedLayerError extends Error {
  override readonly name = 'UnsupportedLayerError';
  constructor(
    readonly code: UnsupportedLayerErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The FileContentSink broke its contract: it resolved without reading the content stream to its end. */
export class LayerSinkError extends Error {
  override readonly name = 'LayerSinkError';
  readonly code = 'ESINK_INCOMPLETE';
}
