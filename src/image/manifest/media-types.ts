/**
 * How a Damselfly image looks in a registry (docs/format.md, "Registry layout"): one layer per data
 * blob, in device-table order, then a bootstrap layer — a gzip tar holding `image/image.boot`.
 */

/** A data blob: compressed chunks back to back, never unpacked as a tar. */
export const DAMSELFLY_BLOB_MEDIA_TYPE = 'application/vnd.damselfly.image.blob.v1';
/** The bootstrap layer is an ordinary gzip tar so every tool can copy it. */
export const BOOTSTRAP_LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_MANIFEST_MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX_MEDIA_TYPE = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG_MEDIA_TYPE = 'application/vnd.oci.image.config.v1+json';

export const ANNOTATION_BLOB = 'dev.damselfly.image.blob';
export const ANNOTATION_COMPRESSOR = 'dev.damselfly.image.compressor';
export const ANNOTATION_BOOTSTRAP = 'dev.damselfly.image.bootstrap';
export const ANNOTATION_FORMAT_VERSION = 'dev.damselfly.image.format-version';
/** On the converted manifest: the digest of the OCI manifest it was made from. */
export const ANNOTATION_SOURCE_DIGEST = 'dev.damselfly.image.source-digest';
/** On the converted manifest: `--chunk-size` and `--compressor` used. */
export const ANNOTATION_CHUNK_SIZE = 'dev.damselfly.image.chunk-size';

export const FORMAT_VERSION = '1';
/** Path of the bootstrap inside the bootstrap layer's tar (Nydus uses the same one). */
export const BOOTSTRAP_TAR_PATH = 'image/image.boot';
