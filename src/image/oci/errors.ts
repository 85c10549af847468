/** Every failure of the registry client is one of these, so callers can print one clear line. */

/** The registry answered with an error, or could not be reached (`status` 0). */
export class RegistryError extends Error {
  constructor(
    message: string,
    /** The registry's error code (`MANIFEST_UNKNOWN`, `UNAUTHORIZED`, …), or `NETWORK`, `UNEXPECTED_STATUS`. */
    readonly code: string,
    /** HTTP status; 0 when no answer arrived. */
    readonly status: number,
  ) {
    super(message);
    this.name = 'RegistryError';
  }
}

/** Bytes from the registry do not hash to the digest they were fetched by. */
export class DigestMismatchError extends Error {
  readonly code = 'EDIGEST_MISMATCH';
  constructor(
    readonly expected: string,
    readonly actual: string,
    what: string,
  ) {
    super(`digest mismatch for ${what}: expected ${expected}, got ${actual}`);
    this.name = 'DigestMismatchError';
  }
}

/** A manifest, index or layer of a media type this client does not handle. */
export class UnsupportedMediaTypeError extends Error {
  readonly code = 'EUNSUPPORTED_MEDIA_TYPE';
  constructor(
    readonly mediaType: string,
    what: string,
  ) {
    super(`unsupported ${what} media type "${mediaType}"`);
    this.name = 'UnsupportedMediaTypeError';
  }
}

/** A manifest or index that does not follow the image spec. */
export class ManifestInvalidError extends Error {
  readonly code = 'EMANIFEST_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ManifestInvalidError';
  }
}

/** A string that is not an image reference (`registry/repository[:tag][@digest]`). */
export class InvalidReferenceError extends Error {
  readonly code = 'EINVALID_REFERENCE';
  constructor(
    readonly reference: string,
    reason: string,
  ) {
    super(`invalid image reference "${reference}": ${reason}`);
    this.name = 'InvalidReferenceError';
  }
}

/** An index holds no manifest for the requested platform. */
export class PlatformNotFoundError extends Error {
  readonly code = 'EPLATFORM_NOT_FOUND';
  constructor(
    readonly platform: string,
    readonly available: readonly string[],
    what: string,
  ) {
    super(`${what} has no manifest for platform ${platform} (available: ${available.join(', ') || 'none'})`);
    this.name = 'PlatformNotFoundError';
  }
}

/** Broken credential configuration (an unreadable Docker config.json, a failing credential helper). */
export class CredentialsError extends Error {
  readonly code = 'ECREDENTIALS';
  constructor(message: string) {
    super(message);
    this.name = 'CredentialsError';
  }
}
