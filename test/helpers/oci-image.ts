/**
 * OCI / Docker images built in memory for tests — tar layers from a list of entries (files, dirs,
 * links, devices, whiteouts, xattrs), config, manifest, optional multi-platform index — and pushed
 * with our RegistryClient. Everything is deterministic (mtime 0 unless given), so digests are stable.
 */
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress, init as zstdInit } from '@bokuweb/zstd-wasm';
import { type Header as TarHeader, pack as tarPack } from 'tar-stream';
import {
  DOCKER_CONFIG,
  DOCKER_LAYER_TAR_GZIP,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  formatPlatform,
  type ImageReference,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER_TAR,
  OCI_LAYER_TAR_GZIP,
  OCI_LAYER_TAR_ZSTD,
  OCI_MANIFEST,
  type Platform,
  parsePlatform,
  parseReference,
  type RegistryClient,
  sha256Digest,
} from '../../src/image/oci/index.js';

export type LayerEntryType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';

/** One tar entry. Parent directories are not added for you: list them when the test needs them. */
export interface LayerEntry {
  /** Relative path inside the layer, e.g. `etc/hosts`. */
  path: string;
  /** Default `file`. */
  type?: LayerEntryType;
  content?: string | Buffer;
  /** Permission bits; default 0o644 for files, 0o755 for directories, 0o777 for symlinks. */
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  /** Default the epoch (deterministic layers). */
  mtime?: Date;
  /** Symlink target, or the path a hard link (`link`) points to. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Written as PAX `SCHILY.xattr.<name>` records. */
  xattrs?: Record<string, string>;
  /** Extra PAX records. */
  pax?: Record<string, string>;
}

export type LayerCompressionChoice = 'gzip' | 'none' | 'zstd';
export type ImageFormat = 'oci' | 'docker';

export interface BuiltBlob {
  bytes: Buffer;
  digest: string;
  size: number;
  mediaType: string;
}

export interface BuiltLayer extends BuiltBlob {
  /** The uncompressed tar. */
  tar: Buffer;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: string;
}

/** An AUFS whiteout hiding `path` from lower layers. */
export function whiteout(path: string): LayerEntry {
  const cut = path.lastIndexOf('/');
  return { path: `${path.slice(0, cut + 1)}.wh.${path.slice(cut + 1)}`, content: '' };
}

/** An opaque-directory marker: `dir` hides everything lower layers put in it. */
export function opaqueWhiteout(dir: string): LayerEntry {
  return { path: `${dir.replace(/\/$/, '')}/.wh..wh..opq`, content: '' };
}

const TAR_TYPES: Record<LayerEntryType, TarHeader['type']> = {
  file: 'file',
  dir: 'directory',
  symlink: 'symlink',
  link: 'link',
  char: 'character-device',
  block: 'block-device',
  fifo: 'fifo',
};

const DEFAULT_MODES: Partial<Record<LayerEntryType, number>> = { dir: 0o755, symlink: 0o777 };

function tarHeader(entry: LayerEntry, size: number): Partial<TarHeader> & { name: string } {
  const type = entry.type ?? 'file';
  const pax: Record<string, string> = { ...entry.pax };
  for (const [name, value] of Object.entries(entry.xattrs ?? {})) pax[`SCHILY.xattr.${name}`] = value;
  return {
    name: entry.path,
    type: TAR_TYPES[type],
    size,
    mode: entry.mode ?? DEFAULT_MODES[type] ?? 0o644,
    uid: entry.uid ?? 0,
    gid: entry.gid ?? 0,
    uname: entry.uname ?? '',
    gname: entry.gname ?? '',
    mtime: entry.mtime ?? new Date(0),
    ...(entry.linkname !== undefined ? { linkname: entry.linkname } : {}),
    ...(entry.devmajor !== undefined ? { devmajor: entry.devmajor } : {}),
    ...(entry.devminor !== undefined ? { devminor: entry.devminor } : {}),
    ...(Object.keys(pax).length > 0 ? { pax } : {}),
  };
}

/** The uncompressed tar of `entries`, in the order given. */
export async function buildTar(entries: LayerEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const collected = (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of pack as AsyncIterable<Buffer>) chunks.push(chunk);
    return Buffer.concat(chunks);
  })();
  for (const entry of entries) {
    const content = (entry.type ?? 'file') === 'file' ? Buffer.from(entry.content ?? '') : Buffer.alloc(0);
    await new Promise<void>((resolve, reject) =>
      pack.entry(tarHeader(entry, content.length), content, (err) => (err ? reject(err) : resolve())),
    );
  }
  pack.finalize();
  return collected;
}

let zstdReady: Promise<void> | undefined;

async function compress(data: Buffer, compression: LayerCompressionChoice): Promise<Buffer> {
  if (compression === 'none') return data;
  if (compression === 'gzip') return gzipSync(data);
  zstdReady ??= zstdInit();
  await zstdReady;
  return Buffer.from(zstdCompress(data, 3));
}

function layerMediaType(compression: LayerCompressionChoice, format: ImageFormat): string {
  if (format === 'docker') {
    if (compression !== 'gzip') throw new Error('Docker v2 layers are always tar+gzip');
    return DOCKER_LAYER_TAR_GZIP;
  }
  return { none: OCI_LAYER_TAR, gzip: OCI_LAYER_TAR_GZIP, zstd: OCI_LAYER_TAR_ZSTD }[compression];
}

export async function buildLayer(
  entries: LayerEntry[],
  options: { compression?: LayerCompressionChoice; format?: ImageFormat } = {},
): Promise<BuiltLayer> {
  const compression = options.compression ?? 'gzip';
  const tarBytes = await buildTar(entries);
  const bytes = await compress(tarBytes, compression);
  return {
    bytes,
    digest: sha256Digest(bytes),
    size: bytes.length,
    mediaType: layerMediaType(compression, options.format ?? 'oci'),
    tar: tarBytes,
    diffId: sha256Digest(tarBytes),
  };
}

export function jsonBlob(value: unknown, mediaType: string): BuiltBlob {
  const bytes = Buffer.from(JSON.stringify(value));
  return { bytes, digest: sha256Digest(bytes), size: bytes.length, mediaType };
}

export interface TestImageOptions {
  /** Entry lists (built here) or layers built already with buildLayer. */
  layers: Array<LayerEntry[] | BuiltLayer>;
  /** `os/arch[/variant]`, default linux/amd64. */
  platform?: string;
  /** Default oci. */
  format?: ImageFormat;
  /** For layers given as entry lists; default gzip. */
  compression?: LayerCompressionChoice;
  /** The config's `config` section (Env, Cmd, …). */
  runtimeConfig?: Record<string, unknown>;
  annotations?: Record<string, string>;
}

export interface TestImage {
  manifest: BuiltBlob;
  config: BuiltBlob;
  layers: BuiltLayer[];
  platform: Platform;
  format: ImageFormat;
}

function descriptor(blob: BuiltBlob) {
  return { mediaType: blob.mediaType, digest: blob.digest, size: blob.size };
}

export async function buildImage(options: TestImageOptions): Promise<TestImage> {
  const format = options.format ?? 'oci';
  const platform = parsePlatform(options.platform ?? 'linux/amd64');
  const layers = await Promise.all(
    options.layers.map((layer) =>
      Array.isArray(layer)
        ? buildLayer(layer, { compression: options.compression ?? 'gzip', format })
        : layer,
    ),
  );
  const config = jsonBlob(
    {
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      created: '1970-01-01T00:00:00Z',
      config: options.runtimeConfig ?? {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created_by: `test layer ${i}` })),
    },
    format === 'oci' ? OCI_CONFIG : DOCKER_CONFIG,
  );
  const manifestMediaType = format === 'oci' ? OCI_MANIFEST : DOCKER_MANIFEST;
  const manifest = jsonBlob(
    {
      schemaVersion: 2,
      mediaType: manifestMediaType,
      config: descriptor(config),
      layers: layers.map(descriptor),
      ...(options.annotations ? { annotations: options.annotations } : {}),
    },
    manifestMediaType,
  );
  return { manifest, config, layers, platform, format };
}

export interface TestIndex {
  index: BuiltBlob;
  images: TestImage[];
}

/** An OCI index (or Docker manifest list, when the images are Docker) over one image per platform. */
export function buildIndex(images: TestImage[]): TestIndex {
  const docker = images.every((i) => i.format === 'docker');
  const mediaType = docker ? DOCKER_MANIFEST_LIST : OCI_INDEX;
  const index = jsonBlob(
    {
      schemaVersion: 2,
      mediaType,
      manifests: images.map((image) => ({ ...descriptor(image.manifest), platform: image.platform })),
    },
    mediaType,
  );
  return { index, images };
}

export interface PushedImage {
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
}

function refOf(ref: ImageReference | string): ImageReference {
  return typeof ref === 'string' ? parseReference(ref) : ref;
}

async function pushBlobs(client: RegistryClient, ref: ImageReference, blobs: BuiltBlob[]): Promise<void> {
  for (const blob of blobs) {
    await client.pushBlob(ref, blob.digest, blob.size, () => Readable.from([blob.bytes]));
  }
}

/** Pushes layers, config and manifest; the manifest goes under `ref`'s tag (or only its digest). */
export async function pushImage(
  client: RegistryClient,
  ref: ImageReference | string,
  image: TestImage,
  options: { byDigestOnly?: boolean } = {},
): Promise<PushedImage> {
  const target = refOf(ref);
  await pushBlobs(client, target, [...image.layers, image.config]);
  const reference = options.byDigestOnly ? image.manifest.digest : (target.tag ?? 'latest');
  const digest = await client.putManifest(target, reference, image.manifest.mediaType, image.manifest.bytes);
  return {
    manifestDigest: digest,
    configDigest: image.config.digest,
    layerDigests: image.layers.map((l) => l.digest),
  };
}

/** Pushes every image by digest, then the index under `ref`'s tag; returns the index digest. */
export async function pushIndex(
  client: RegistryClient,
  ref: ImageReference | string,
  built: TestIndex,
): Promise<{ indexDigest: string; images: PushedImage[] }> {
  const target = refOf(ref);
  const images: PushedImage[] = [];
  for (const image of built.images)
    images.push(await pushImage(client, target, image, { byDigestOnly: true }));
  const indexDigest = await client.putManifest(
    target,
    target.tag ?? 'latest',
    built.index.mediaType,
    built.index.bytes,
  );
  return { indexDigest, images };
}

/** `linux/arm64/v8` style label of an image (for assertion messages). */
export function platformLabel(image: TestImage): string {
  return formatPlatform(image.platform);
}
