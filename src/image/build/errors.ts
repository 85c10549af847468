export type ImageBuildErrorCode =
  /** An option is out of range: chunk size, compressor, paths. */
  | 'EINVAL'
  /** A file's content was shorter or longer than the size it was announced with. */
  | 'ESIZEMISMATCH'
  /** A name in the source directory is not valid UTF-8 (image names are UTF-8 strings). */
  | 'ENONUTF8NAME'
  /** Extended attributes could not be read (getfattr failed or printed something unexpected). */
  | 'EXATTR'
  /** The `--chunk-dict` bootstrap cannot be read or decoded. */
  | 'ECHUNKDICT'
  /** The blob builder was used after `finish()`, `abort()` or an earlier failure. */
  | 'ECLOSED'
  /** The model handed in is inconsistent (a chunk index that does not exist, a pending blob). */
  | 'EMODEL';

export class ImageBuildError extends Error {
  override readonly name = 'ImageBuildError';
  constructor(
    readonly code: ImageBuildErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
