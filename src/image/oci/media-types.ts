import { UnsupportedMediaTypeError } from './errors.js';

/** OCI image-spec media types. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
/** Deprecated by the OCI spec but still found in the wild (Windows base layers). */
export const OCI_LAYER_NONDISTRIBUTABLE_TAR = 'application/vnd.oci.image.layer.nondistributable.v1.tar';
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP =
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD =
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';

/** Docker image manifest v2 schema 2 media types. */
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_TAR_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const DOCKER_FOREIGN_LAYER_TAR_GZIP = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';
/** Schema 1 (signed, pre-2017): recognised only to reject it with a clear message. */
export const DOCKER_MANIFEST_V1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';

export type ImageManifestMediaType = typeof OCI_MANIFEST | typeof DOCKER_MANIFEST;
export type ImageIndexMediaType = typeof OCI_INDEX | typeof DOCKER_MANIFEST_LIST;
export type ManifestMediaType = ImageManifestMediaType | ImageIndexMediaType;

/** What we ask registries for, most preferred first. */
export const MANIFEST_ACCEPT: readonly ManifestMediaType[] = [
  OCI_INDEX,
  DOCKER_MANIFEST_LIST,
  OCI_MANIFEST,
  DOCKER_MANIFEST,
];

export function isImageManifestMediaType(mediaType: string): mediaType is ImageManifestMediaType {
  return mediaType === OCI_MANIFEST || mediaType === DOCKER_MANIFEST;
}

export function isImageIndexMediaType(mediaType: string): mediaType is ImageIndexMediaType {
  return mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST;
}

export function isManifestMediaType(mediaType: string): mediaType is ManifestMediaType {
  return isImageManifestMediaType(mediaType) || isImageIndexMediaType(mediaType);
}

export type LayerCompression = 'none' | 'gzip' | 'zstd';

const LAYER_COMPRESSION: ReadonlyMap<string, LayerCompression> = new Map([
  [OCI_LAYER_TAR, 'none'],
  [OCI_LAYER_TAR_GZIP, 'gzip'],
  [OCI_LAYER_TAR_ZSTD, 'zstd'],
  [OCI_LAYER_NONDISTRIBUTABLE_TAR, 'none'],
  [OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP, 'gzip'],
  [OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD, 'zstd'],
  [DOCKER_LAYER_TAR_GZIP, 'gzip'],
  [DOCKER_FOREIGN_LAYER_TAR_GZIP, 'gzip'],
]);

export function isLayerMediaType(mediaType: string): boolean {
  return LAYER_COMPRESSION.has(mediaType);
}

/** How a tar layer of this media type is compressed; throws for anything that is not a tar layer. */
export function layerCompression(mediaType: string): LayerCompression {
  const compression = LAYER_COMPRESSION.get(mediaType);
  if (!compression) throw new UnsupportedMediaTypeError(mediaType, 'layer');
  return compression;
}
