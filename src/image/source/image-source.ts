import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  type BlobInfo,
  BootstrapFormatError,
  type DecodedBootstrap,
  decodeBootstrap,
} from '../format/index.js';
import { ANNOTATION_BOOTSTRAP, unpackBootstrapLayer } from '../manifest/index.js';
import { formatReference, type ImageReference, parseReference, RegistryClient } from '../oci/index.js';

export class ImageSourceError extends Error {
  readonly code = 'EIMAGESOURCE';
}

/** Where an image's bootstrap and stored blobs come from: an `image build` output dir or a registry. */
export interface ImageSource {
  /** The path or reference, for messages. */
  readonly name: string;
  readonly bootstrap: Buffer;
  /** Streams a blob's stored bytes from the start. */
  openBlob(blob: BlobInfo, signal?: AbortSignal): Promise<Readable>;
}

export interface RegistryOptions {
  plainHttp?: boolean;
  platform?: string;
  client?: RegistryClient;
}

/** A directory holding `bootstrap` is a local image; anything else is parsed as an image reference. */
export async function openImageSource(src: string, options: RegistryOptions = {}): Promise<ImageSource> {
  const isDir = await stat(src).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (isDir) return openLocalImage(src);
  return openRegistryImageSource(parseReference(src), options);
}

export async function openLocalImage(dir: string): Promise<ImageSource> {
  const bootstrap = await readFile(join(dir, 'bootstrap')).catch((err: NodeJS.ErrnoException) => {
    throw new ImageSourceError(
      `${dir}: no bootstrap (${err.code}); expected the output of \`damselfly image build\``,
    );
  });
  return {
    name: dir,
    bootstrap,
    async openBlob(blob) {
      const path = join(dir, 'blobs', blobHex(blob));
      await stat(path).catch(() => {
        throw new ImageSourceError(`${dir}: blob ${blob.digest} is missing (looked for ${path})`);
      });
      return createReadStream(path, { highWaterMark: 1 << 20 });
    },
  };
}

export async function openRegistryImageSource(
  ref: ImageReference,
  options: RegistryOptions = {},
): Promise<ImageSource> {
  const client = options.client ?? new RegistryClient({ plainHttp: options.plainHttp });
  const resolved = await client.resolveImage(ref, options.platform);
  const layers = resolved.manifest.layers;
  const bootstrapLayer = layers.find((layer) => layer.annotations?.[ANNOTATION_BOOTSTRAP] === 'true');
  if (!bootstrapLayer)
    throw new ImageSourceError(
      `${ref.repository}: not a Damselfly image (no layer annotated ${ANNOTATION_BOOTSTRAP})`,
    );
  const bootstrap = await unpackBootstrapLayer(await client.blobStream(ref, bootstrapLayer.digest));
  checkBlobLayers(ref, layers.slice(0, layers.indexOf(bootstrapLayer)), bootstrap);
  return {
    name: `${ref.registry}/${ref.repository}@${resolved.manifestDigest}`,
    bootstrap,
    openBlob: (blob, signal) => client.blobStream(ref, blob.digest, signal),
  };
}

/** The manifest's blob layers must be the bootstrap's blob table, in order: nothing else is fetched. */
function checkBlobLayers(
  ref: ImageReference,
  layers: Array<{ digest: string; size: number }>,
  bootstrap: Buffer,
) {
  const { blobs } = decodeBootstrap(bootstrap).image;
  const same =
    layers.length === blobs.length &&
    layers.every((layer, i) => layer.digest === blobs[i]?.digest && layer.size === blobs[i]?.compressedSize);
  if (!same)
    throw new ImageSourceError(
      `${formatReference(ref)}: the manifest's blob layers do not match the bootstrap's blob table`,
    );
}

/** The hex part of a `sha256:` digest: blob files are named by it. */
export function blobHex(blob: BlobInfo): string {
  return blob.digest.slice(blob.digest.indexOf(':') + 1);
}

/** Decodes a source's bootstrap; a malformed one is reported with the source's name. */
export function decodeSourceBootstrap(source: ImageSource): DecodedBootstrap {
  try {
    return decodeBootstrap(source.bootstrap);
  } catch (err) {
    if (err instanceof BootstrapFormatError)
      throw new ImageSourceError(`${source.name}: invalid bootstrap: ${err.message}`);
    throw err;
  }
}
