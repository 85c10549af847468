import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { BlobBuilder, ChunkDictionary, type DedupFigures } from '../build/index.js';
import {
  type BlobInfo,
  type Compressor,
  decodeBootstrap,
  encodeBootstrap,
  type ImageBootstrap,
} from '../format/index.js';
import { mergeLayers, openLayerStream, readLayer } from '../layers/index.js';
import {
  ANNOTATION_BLOB,
  ANNOTATION_BOOTSTRAP,
  ANNOTATION_CHUNK_SIZE,
  ANNOTATION_COMPRESSOR,
  ANNOTATION_FORMAT_VERSION,
  ANNOTATION_SOURCE_DIGEST,
  BOOTSTRAP_LAYER_MEDIA_TYPE,
  DAMSELFLY_BLOB_MEDIA_TYPE,
  FORMAT_VERSION,
  OCI_CONFIG_MEDIA_TYPE,
  OCI_MANIFEST_MEDIA_TYPE,
  type PackedBootstrapLayer,
  packBootstrapLayer,
} from '../manifest/index.js';
import type { ImageReference, RegistryClient, ResolvedImage } from '../oci/index.js';
import { checkPrefetchPaths } from './prefetch-list.js';

export class ConvertError extends Error {
  readonly code = 'ECONVERT';
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** Where a blob of the converted image can be had when it is pushed. */
export type BlobOrigin = { kind: 'file'; path: string } | { kind: 'registry'; ref: ImageReference };

/** A converted image held locally until everything has succeeded and it is pushed. */
export interface ConvertedManifest {
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDescriptor: Descriptor;
  bootstrapLayer: PackedBootstrapLayer;
  /** Blob layers in device-table order, with where to get each one. */
  blobs: Array<{ descriptor: Descriptor; origin: BlobOrigin }>;
  image: ImageBootstrap;
  stats: LayerStats;
}

export interface LayerStats {
  layers: number;
  dedup: DedupFigures;
  /** Compressed bytes of source layers read. */
  inputBytes: number;
}

/** A chunk dictionary from an earlier converted image, and where its blobs live. */
export interface ChunkDictImage {
  image: ImageBootstrap;
  ref: ImageReference;
}

export interface ConvertManifestOptions {
  client: RegistryClient;
  source: ImageReference;
  resolved: ResolvedImage;
  workDir: string;
  chunkSize: number;
  compressor: Compressor;
  chunkDict?: ChunkDictImage;
  /** Absolute paths for the bootstrap's prefetch table; each must be in the merged tree. */
  prefetch?: readonly string[];
  signal?: AbortSignal;
  /** Compressed bytes of source layers read so far, in this manifest. */
  onLayerBytes?: (bytes: number) => void;
}

/** Converts one OCI image manifest: every layer into one blob, all layers merged into one bootstrap. */
export async function convertManifest(options: ConvertManifestOptions): Promise<ConvertedManifest> {
  const { resolved, chunkSize, compressor } = options;
  const blobDir = join(options.workDir, 'blobs');
  await mkdir(blobDir, { recursive: true });
  const dictionary = options.chunkDict
    ? ChunkDictionary.fromBootstrap(options.chunkDict.image)
    : new ChunkDictionary();
  const layerTrees = [];
  let inputBytes = 0;
  for (const layer of resolved.manifest.layers) {
    options.signal?.throwIfAborted();
    if (layer.mediaType === DAMSELFLY_BLOB_MEDIA_TYPE || layer.annotations?.[ANNOTATION_BOOTSTRAP])
      throw new ConvertError(`${options.source.repository} is already a Damselfly image`);
    const blob = await options.client.blobStream(options.source, layer.digest, options.signal);
    const counted = countBytes(blob, (n) => {
      inputBytes += n;
      options.onLayerBytes?.(inputBytes);
    });
    const builder = await BlobBuilder.create({
      blobsDir: blobDir,
      chunkSize,
      compressor,
      dictionary,
      signal: options.signal,
    });
    try {
      const tar = openLayerStream(counted, layer.mediaType);
      layerTrees.push(await readLayer(tar, (content, size) => builder.addFile(content, size), options));
      await builder.finish();
    } catch (err) {
      await builder.abort(err);
      throw err;
    }
  }
  const root = mergeLayers(layerTrees);
  const prefetch = [...(options.prefetch ?? [])];
  checkPrefetchPaths(root, prefetch);
  const figures = dictionary.figures;
  const { blobs: blobTable, chunks } = dictionary.compact([root]);
  const image: ImageBootstrap = { root, chunkSize, blobs: blobTable, chunks, prefetch };
  const bootstrap = encodeBootstrap(image);
  decodeBootstrap(bootstrap); // a converter bug must fail here, not on a thousand nodes
  const bootstrapLayer = await packBootstrapLayer(bootstrap);
  const blobs = image.blobs.map((info) => ({
    descriptor: blobDescriptor(info),
    origin: blobOrigin(info, blobDir, options),
  }));
  const config = rewriteConfig(resolved.config, [...image.blobs.map((b) => b.digest), bootstrapLayer.diffId]);
  const configDescriptor = { mediaType: OCI_CONFIG_MEDIA_TYPE, digest: sha256(config), size: config.length };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST_MEDIA_TYPE,
      config: configDescriptor,
      layers: [...blobs.map((b) => b.descriptor), bootstrapDescriptor(bootstrapLayer)],
      annotations: {
        [ANNOTATION_SOURCE_DIGEST]: resolved.manifestDigest,
        [ANNOTATION_FORMAT_VERSION]: FORMAT_VERSION,
        [ANNOTATION_CHUNK_SIZE]: String(chunkSize),
        [ANNOTATION_COMPRESSOR]: compressor,
      },
    }),
  );
  return {
    manifest,
    manifestDigest: sha256(manifest),
    config,
    configDescriptor,
    bootstrapLayer,
    blobs,
    image,
    stats: { layers: resolved.manifest.layers.length, inputBytes, dedup: figures },
  };
}

/** Blobs reused from the chunk dictionary stay in the dictionary image's repository until pushed. */
function blobOrigin(info: BlobInfo, blobDir: string, options: ConvertManifestOptions): BlobOrigin {
  const dict = options.chunkDict;
  if (dict?.image.blobs.some((b) => b.digest === info.digest)) return { kind: 'registry', ref: dict.ref };
  return { kind: 'file', path: join(blobDir, info.digest.slice('sha256:'.length)) };
}

function blobDescriptor(info: BlobInfo): Descriptor {
  return {
    mediaType: DAMSELFLY_BLOB_MEDIA_TYPE,
    digest: info.digest,
    size: info.compressedSize,
    annotations: { [ANNOTATION_BLOB]: 'true', [ANNOTATION_COMPRESSOR]: info.compressor },
  };
}

function bootstrapDescriptor(layer: PackedBootstrapLayer): Descriptor {
  return {
    mediaType: BOOTSTRAP_LAYER_MEDIA_TYPE,
    digest: layer.digest,
    size: layer.bytes.length,
    annotations: { [ANNOTATION_BOOTSTRAP]: 'true', [ANNOTATION_FORMAT_VERSION]: FORMAT_VERSION },
  };
}

/** Keeps the source config, with diff ids that match the new layers (containerd checks the count). */
function rewriteConfig(source: Buffer, diffIds: string[]): Buffer {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(source.toString('utf8'));
  } catch {
    throw new ConvertError('the source image config is not JSON');
  }
  const history = Array.isArray(config.history) ? config.history : [];
  return Buffer.from(
    JSON.stringify({
      ...config,
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: [...history, { created_by: 'damselfly image convert', comment: 'Damselfly bootstrap layer' }],
    }),
  );
}

function countBytes(stream: Readable, onBytes: (n: number) => void): Readable {
  const counter = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _encoding, callback) {
      onBytes(chunk.length);
      callback(null, chunk);
    },
  });
  stream.on('error', (err) => counter.destroy(err));
  return stream.pipe(counter);
}

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
