import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type { DedupFigures } from '../build/index.js';
import type { Compressor } from '../format/index.js';
import { decodeBootstrap } from '../format/index.js';
import { OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE } from '../manifest/index.js';
import {
  type Descriptor,
  formatReference,
  type ImageReference,
  type Platform,
  parseReference,
  RegistryClient,
  type ResolvedImage,
  withDigest,
} from '../oci/index.js';
import { openRegistryImageSource } from '../source/index.js';
import {
  type ChunkDictImage,
  ConvertError,
  type ConvertedManifest,
  convertManifest,
} from './convert-manifest.js';

export interface ConvertProgress {
  phase: 'convert' | 'push';
  /** Bytes done and expected in this phase (compressed layer bytes read; bytes pushed). */
  done: number;
  total: number;
}

export interface ConvertOptions {
  source: string;
  target: string;
  plainHttp?: boolean;
  chunkSize: number;
  compressor: Compressor;
  /** Reference of an earlier converted image whose chunks may be reused. */
  chunkDict?: string;
  /** Absolute paths to list in every converted bootstrap's prefetch table (`--prefetch-files`). */
  prefetch?: readonly string[];
  /** `os/arch[/variant]` to convert only that platform of an index; default every platform. */
  platform?: string;
  /** Where blobs are built before the push (a fresh temp dir inside it, removed afterwards). */
  workDir?: string;
  signal?: AbortSignal;
  onProgress?: (progress: ConvertProgress) => void;
  client?: RegistryClient;
}

export interface ConvertResult {
  target: string;
  /** Digest of what the target tag now points at: a manifest, or an index for multi-platform sources. */
  digest: string;
  mediaType: string;
  manifests: Array<{
    platform?: Platform;
    digest: string;
    blobs: number;
    layers: number;
    inputBytes: number;
    dedup: DedupFigures;
  }>;
}

type IndexEntry = Descriptor;

/**
 * `image convert`: pulls an OCI image (every platform of an index unless one is chosen), converts each
 * manifest locally, and only when all succeeded pushes blobs, configs, manifests and finally the tag —
 * so a failure never leaves a half-converted image behind the target name.
 */
export async function convertImage(options: ConvertOptions): Promise<ConvertResult> {
  const client = options.client ?? new RegistryClient({ plainHttp: options.plainHttp });
  const source = parseReference(options.source);
  const target = parseReference(options.target);
  if (target.digest) throw new ConvertError('the target must be a tag, not a digest');
  const workDir = await mkdtemp(join(options.workDir ?? tmpdir(), 'damselfly-convert-'));
  try {
    const chunkDict = options.chunkDict ? await loadChunkDict(client, options.chunkDict, options) : undefined;
    const resolvedImages = await resolveTargets(client, source, options);
    const totalInput = resolvedImages.reduce(
      (sum, { resolved }) => sum + resolved.manifest.layers.reduce((n, layer) => n + layer.size, 0),
      0,
    );
    let inputBase = 0;
    const converted: Array<{ entry: IndexEntry | null; result: ConvertedManifest }> = [];
    for (const [i, { entry, ref, resolved }] of resolvedImages.entries()) {
      const result = await convertManifest({
        client,
        source: ref,
        resolved,
        workDir: join(workDir, String(i)),
        chunkSize: options.chunkSize,
        compressor: options.compressor,
        chunkDict,
        prefetch: options.prefetch,
        signal: options.signal,
        onLayerBytes: (bytes) =>
          options.onProgress?.({ phase: 'convert', done: inputBase + bytes, total: totalInput }),
      });
      inputBase += result.stats.inputBytes;
      converted.push({ entry, result });
    }
    return await pushConverted(client, target, converted, options);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function loadChunkDict(
  client: RegistryClient,
  ref: string,
  options: ConvertOptions,
): Promise<ChunkDictImage> {
  const dictRef = parseReference(ref);
  const source = await openRegistryImageSource(dictRef, { client, platform: options.platform });
  return { ref: dictRef, image: decodeBootstrap(source.bootstrap).image };
}

/**
 * What to convert: every image manifest of an index (attestations skipped) — or, for a plain manifest
 * or with `--platform`, just the one `resolveImage` picks.
 */
async function resolveTargets(
  client: RegistryClient,
  source: ImageReference,
  options: ConvertOptions,
): Promise<Array<{ entry: IndexEntry | null; ref: ImageReference; resolved: ResolvedImage }>> {
  const top = await client.getManifest(source, options.signal);
  if (top.kind === 'manifest' || options.platform) {
    return [
      {
        entry: null,
        ref: source,
        resolved: await client.resolveImage(source, options.platform, options.signal),
      },
    ];
  }
  const entries = top.json.manifests.filter((m) => m.platform && m.platform.os !== 'unknown');
  if (entries.length === 0)
    throw new ConvertError(`${formatReference(source)}: the index lists no platform images`);
  const targets = [];
  for (const entry of entries) {
    const ref = withDigest(source, entry.digest);
    targets.push({ entry, ref, resolved: await client.resolveImage(ref, undefined, options.signal) });
  }
  return targets;
}

async function pushConverted(
  client: RegistryClient,
  target: ImageReference,
  converted: Array<{ entry: IndexEntry | null; result: ConvertedManifest }>,
  options: ConvertOptions,
): Promise<ConvertResult> {
  const total = converted.reduce((sum, { result }) => sum + pushBytes(result), 0);
  let done = 0;
  const advance = (bytes: number) => {
    done += bytes;
    options.onProgress?.({ phase: 'push', done, total });
  };
  for (const { result } of converted)
    await pushManifestParts(client, target, result, advance, options.signal);
  const tag = target.tag ?? 'latest';
  const manifests = converted.map(({ entry, result }) => ({
    platform: entry?.platform,
    digest: result.manifestDigest,
    blobs: result.image.blobs.length,
    layers: result.stats.layers,
    inputBytes: result.stats.inputBytes,
    dedup: result.stats.dedup,
  }));
  const single = converted.length === 1 && converted[0]?.entry === null;
  if (single) {
    const only = converted[0]?.result as ConvertedManifest;
    const digest = await client.putManifest(
      target,
      tag,
      OCI_MANIFEST_MEDIA_TYPE,
      only.manifest,
      options.signal,
    );
    return { target: options.target, digest, mediaType: OCI_MANIFEST_MEDIA_TYPE, manifests };
  }
  for (const { result } of converted)
    await client.putManifest(
      target,
      result.manifestDigest,
      OCI_MANIFEST_MEDIA_TYPE,
      result.manifest,
      options.signal,
    );
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX_MEDIA_TYPE,
      manifests: converted.map(({ entry, result }) => ({
        mediaType: OCI_MANIFEST_MEDIA_TYPE,
        digest: result.manifestDigest,
        size: result.manifest.length,
        ...(entry?.platform ? { platform: entry.platform } : {}),
      })),
    }),
  );
  const digest = await client.putManifest(target, tag, OCI_INDEX_MEDIA_TYPE, index, options.signal);
  return { target: options.target, digest, mediaType: OCI_INDEX_MEDIA_TYPE, manifests };
}

function pushBytes(result: ConvertedManifest): number {
  const blobs = result.blobs.reduce((sum, blob) => sum + blob.descriptor.size, 0);
  return blobs + result.bootstrapLayer.bytes.length + result.config.length;
}

async function pushManifestParts(
  client: RegistryClient,
  target: ImageReference,
  result: ConvertedManifest,
  advance: (bytes: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  for (const { descriptor, origin } of result.blobs) {
    const { digest, size } = descriptor;
    if (origin.kind === 'file') {
      await client.pushBlob(target, digest, size, () => createReadStream(origin.path), signal);
    } else if (!(await mountFrom(client, target, origin.ref, digest, signal))) {
      await client.pushBlob(
        target,
        digest,
        size,
        () => deferredStream(client.blobStream(origin.ref, digest, signal)),
        signal,
      );
    }
    advance(size);
  }
  const { bootstrapLayer, config, configDescriptor } = result;
  await client.pushBlob(
    target,
    bootstrapLayer.digest,
    bootstrapLayer.bytes.length,
    () => streamOf(bootstrapLayer.bytes),
    signal,
  );
  advance(bootstrapLayer.bytes.length);
  await client.pushBlob(target, configDescriptor.digest, config.length, () => streamOf(config), signal);
  advance(config.length);
}

/** A cross-repository mount works only within one registry. */
async function mountFrom(
  client: RegistryClient,
  target: ImageReference,
  from: ImageReference,
  digest: string,
  signal?: AbortSignal,
): Promise<boolean> {
  if (from.registry !== target.registry) return false;
  if (from.repository === target.repository) return (await client.hasBlob(target, digest, signal)) !== null;
  return client.mountBlob(target, from.repository, digest, signal);
}

function streamOf(bytes: Buffer): Readable {
  const stream = new PassThrough();
  stream.end(bytes);
  return stream;
}

function deferredStream(pending: Promise<Readable>): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  pending.then(
    (stream) => {
      stream.on('error', (err) => out.destroy(err));
      stream.pipe(out);
    },
    (err: Error) => out.destroy(err),
  );
  return out;
}
