/**
 * A small image that containerd can really run: Debian's static busybox (layer 1) plus a data layer
 * of incompressible, deterministic bytes and a message file (layer 2). Built in memory with
 * oci-image.ts, so equal options give equal digests.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  formatPlatform,
  hostPlatform,
  parseReference,
  RegistryClient,
  StaticCredentialStore,
} from '../../src/image/oci/index.js';
import { seededBytes } from './files.js';
import {
  type BuiltLayer,
  buildImage,
  buildLayer,
  type ImageFormat,
  type LayerCompressionChoice,
  type LayerEntry,
  type PushedImage,
  pushImage,
  type TestImage,
} from './oci-image.js';
import type { TestRegistry, TestUser } from './registry.js';

/** Debian's busybox-static. */
export const BUSYBOX_PATH = '/bin/busybox';
/** The applets linked in `/bin` of the runnable image. */
export const BUSYBOX_APPLETS = ['sh', 'echo', 'cat', 'ls', 'sha256sum', 'wc'] as const;
export const DEFAULT_MESSAGE = 'hello from a damselfly test image\n';

export interface RunnableImageOptions {
  /** Size of `/data/blob.bin` (default 1 MiB; 0 gives an empty file). */
  extraLayerBytes?: number;
  /** Seed of blob.bin's bytes (default `runnable-image`): another seed, another layer digest. */
  seed?: string;
  /** Exact content of `/etc/message.txt` (default DEFAULT_MESSAGE); the image's Cmd cats it. */
  message?: string;
  /** Default gzip. */
  compression?: LayerCompressionChoice;
  /** Default oci. */
  format?: ImageFormat;
}

export interface RunnableImage {
  image: TestImage;
  /** `/etc/message.txt`: what running the image with its default Cmd prints. */
  message: string;
  /** sha256 (hex) of `/data/blob.bin`, as `sha256sum /data/blob.bin` prints it. */
  blobSha256: string;
  /** Bytes of the unique blobs a pull fetches besides the manifest: config + layers (compressed). */
  blobBytes: number;
  /** Same, plus the manifest. */
  totalBytes: number;
  /** Layer 1 (busybox) and layer 2 (data + message). */
  busyboxLayer: BuiltLayer;
  dataLayer: BuiltLayer;
}

const busyboxLayers = new Map<string, Promise<BuiltLayer>>();

/** Layer 1: `/bin/busybox` and its applet links; built once per compression/format in a process. */
export function busyboxLayer(
  compression: LayerCompressionChoice = 'gzip',
  format: ImageFormat = 'oci',
): Promise<BuiltLayer> {
  const key = `${compression}/${format}`;
  let layer = busyboxLayers.get(key);
  if (!layer) {
    layer = (async () => {
      const busybox = await readFile(BUSYBOX_PATH).catch((err: NodeJS.ErrnoException) => {
        throw new Error(
          `${BUSYBOX_PATH} is needed for the runnable test image (apt-get install busybox-static): ${err.message}`,
        );
      });
      const entries: LayerEntry[] = [
        { path: 'bin/', type: 'dir' },
        { path: 'bin/busybox', content: busybox, mode: 0o755 },
        ...BUSYBOX_APPLETS.map(
          (name): LayerEntry => ({ path: `bin/${name}`, type: 'symlink', linkname: 'busybox' }),
        ),
        { path: 'tmp/', type: 'dir', mode: 0o1777 },
      ];
      return buildLayer(entries, { compression, format });
    })();
    busyboxLayers.set(key, layer);
    layer.catch(() => busyboxLayers.delete(key));
  }
  return layer;
}

export async function buildRunnableImage(options: RunnableImageOptions = {}): Promise<RunnableImage> {
  const compression = options.compression ?? 'gzip';
  const format = options.format ?? 'oci';
  const message = options.message ?? DEFAULT_MESSAGE;
  const blob = seededBytes(options.seed ?? 'runnable-image', options.extraLayerBytes ?? 1024 * 1024);
  const base = await busyboxLayer(compression, format);
  const data = await buildLayer(
    [
      { path: 'data/', type: 'dir' },
      { path: 'data/blob.bin', content: blob },
      { path: 'etc/', type: 'dir' },
      { path: 'etc/message.txt', content: message },
    ],
    { compression, format },
  );
  const image = await buildImage({
    layers: [base, data],
    // busybox is the host's binary, so the image is for the host's platform (linux/amd64 here).
    platform: formatPlatform(hostPlatform()),
    format,
    runtimeConfig: { Cmd: ['/bin/cat', '/etc/message.txt'], Env: ['PATH=/bin'], WorkingDir: '/' },
  });
  const blobBytes = image.config.size + image.layers.reduce((sum, l) => sum + l.size, 0);
  return {
    image,
    message,
    blobSha256: createHash('sha256').update(blob).digest('hex'),
    blobBytes,
    totalBytes: blobBytes + image.manifest.size,
    busyboxLayer: base,
    dataLayer: data,
  };
}

/**
 * Pushes an image to `<registry.host>/<repo>:<tag>` with a fresh RegistryClient (plain http; basic
 * or token auth with `credentials`). Returns the pushed digests and the reference.
 */
export async function pushRunnableImage(
  registry: Pick<TestRegistry, 'host'>,
  repo: string,
  tag: string,
  image: RunnableImage | TestImage,
  credentials?: TestUser,
): Promise<PushedImage & { ref: string }> {
  const ref = `${registry.host}/${repo}:${tag}`;
  const client = new RegistryClient(
    credentials ? { credentials: new StaticCredentialStore({ [registry.host]: credentials }) } : {},
  );
  try {
    const pushed = await pushImage(client, parseReference(ref), 'image' in image ? image.image : image);
    return { ...pushed, ref };
  } finally {
    await client.close();
  }
}
