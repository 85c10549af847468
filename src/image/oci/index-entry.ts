import { PlatformNotFoundError, UnsupportedMediaTypeError } from './errors.js';
import type { Descriptor, ImageIndex } from './manifest.js';
import { isImageManifestMediaType } from './media-types.js';
import { choosePlatform, formatPlatform, type Platform } from './platform.js';

/**
 * The index entry to run on `wanted`: the best platform match among image manifests; failing that,
 * an image manifest with no platform at all (as containerd accepts). Nested indexes and artifacts
 * (attestations, signatures) are never chosen.
 */
export function pickIndexEntry(index: ImageIndex, wanted: Platform, subject: string): Descriptor {
  const images = index.manifests.filter((m) => isImageManifestMediaType(m.mediaType));
  const chosen = choosePlatform(
    wanted,
    images.map((m) => m.platform),
  );
  if (chosen >= 0) return images[chosen]!;
  const unlabelled = images.find((m) => m.platform === undefined);
  if (unlabelled) return unlabelled;
  if (images.length === 0 && index.manifests.length > 0) {
    throw new UnsupportedMediaTypeError(index.manifests[0]!.mediaType, `entry of index ${subject}`);
  }
  const available = images.map((m) => formatPlatform(m.platform!));
  throw new PlatformNotFoundError(formatPlatform(wanted), available, subject);
}
