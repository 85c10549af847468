/**
 * Errors of the bootstrap codec. The writer rejects an `ImageBootstrap` it cannot encode with an
 * `InvalidImageError`; the reader rejects bytes that are not a well-formed Damselfly bootstrap with a
 * `BootstrapFormatError` (bootstraps come from registries and peers: every field is untrusted).
 */

export class BootstrapFormatError extends Error {
  override readonly name = 'BootstrapFormatError';
  readonly code = 'EBOOTSTRAP';
}

export class InvalidImageError extends Error {
  override readonly name = 'InvalidImageError';
  readonly code = 'EIMAGE';
}
