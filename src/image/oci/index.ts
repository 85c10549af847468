export { type AccessScope, formatScope } from './auth.js';
export { DEFAULT_UPLOAD_CHUNK } from './blob-upload.js';
export {
  type FetchedImageIndex,
  type FetchedImageManifest,
  type FetchedManifest,
  MAX_IN_MEMORY_BLOB,
  type ManifestHead,
  RegistryClient,
  type RegistryClientOptions,
  type ResolvedImage,
} from './client.js';
export {
  ChainedCredentialStore,
  type CredentialStore,
  DockerConfigCredentialStore,
  type DockerConfigOptions,
  defaultCredentialStore,
  normalizeRegistryKey,
  type RegistryCredentials,
  StaticCredentialStore,
} from './credentials.js';
export { DigestVerifier, isContentDigest, parseContentDigest, sha256Digest } from './digest.js';
export {
  CredentialsError,
  DigestMismatchError,
  InvalidReferenceError,
  ManifestInvalidError,
  PlatformNotFoundError,
  RegistryError,
  UnsupportedMediaTypeError,
} from './errors.js';
export { type ImageConfig, parseImageConfig } from './image-config.js';
export {
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  MAX_MANIFEST_BYTES,
  type ParsedManifest,
  parseManifest,
} from './manifest.js';
export * from './media-types.js';
export {
  choosePlatform,
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  type Platform,
  parsePlatform,
  platformScore,
} from './platform.js';
export {
  DEFAULT_TAG,
  DOCKER_HUB,
  formatReference,
  type ImageReference,
  manifestReference,
  parseReference,
  withDigest,
} from './reference.js';
export { isLoopbackHost } from './registry-transport.js';
export { DEFAULT_RETRY_POLICY } from './retry-policy.js';
export { type AuthChallenge, parseWwwAuthenticate } from './www-authenticate.js';
