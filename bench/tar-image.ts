/**
 * OCI images from directories the way image builders make them: each layer is
 * `tar --sort=name --numeric-owner -C DIR -cf - . | gzip -n` (GNU tar and gzip, like the official
 * debian image's single layer), cached on disk with its digests; then config, manifest and push
 * through our RegistryClient.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type ImageReference,
  OCI_CONFIG,
  OCI_LAYER_TAR_GZIP,
  OCI_MANIFEST,
  type RegistryClient,
  sha256Digest,
} from '../src/image/oci/index.js';

export interface TarLayer {
  name: string;
  /** The gzip file. */
  path: string;
  /** sha256 and size of the gzip bytes (the layer descriptor). */
  digest: string;
  size: number;
  /** sha256 and size of the uncompressed tar (the config's diff id). */
  diffId: string;
  tarSize: number;
  /** What the layer was made from (a rebuilt source makes a new layer). */
  sourceStamp: string;
  buildS: number;
}

/** Counts and hashes what flows through. */
class HashingStream extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.push(chunk);
    callback();
  }

  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/**
 * `<cacheDir>/layers/<name>.tar.gz` from `dir`, unless cached for the same `sourceStamp`.
 * The tar is streamed through this process once (for its digest) between tar and gzip.
 */
export async function tarLayer(
  cacheDir: string,
  name: string,
  dir: string,
  sourceStamp: string,
  log: (msg: string) => void,
): Promise<TarLayer> {
  const layersDir = join(cacheDir, 'layers');
  const path = join(layersDir, `${name}.tar.gz`);
  const record = join(layersDir, `${name}.json`);
  if (existsSync(record) && existsSync(path)) {
    const cached = JSON.parse(await readFile(record, 'utf8')) as TarLayer;
    if (cached.sourceStamp === sourceStamp) return cached;
  }
  await mkdir(layersDir, { recursive: true });
  await rm(record, { force: true });
  log(`layer ${name}: tar --sort=name --numeric-owner -C ${dir} -cf - . | gzip -n`);
  const started = performance.now();
  const tar = spawn('tar', ['--sort=name', '--numeric-owner', '-C', dir, '-cf', '-', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const gzip = spawn('gzip', ['-n', '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  for (const p of [tar, gzip]) p.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const exited = (p: ChildProcess) =>
    new Promise<number | null>((resolveExit, reject) => {
      p.once('error', reject);
      p.once('close', resolveExit);
    });
  const tarExit = exited(tar);
  const gzipExit = exited(gzip);
  const plain = new HashingStream();
  const packed = new HashingStream();
  const tmp = `${path}.tmp`;
  await Promise.all([
    pipeline(tar.stdout!, plain, gzip.stdin!),
    pipeline(gzip.stdout!, packed, createWriteStream(tmp)),
  ]);
  const [tarCode, gzipCode] = await Promise.all([tarExit, gzipExit]);
  if (tarCode !== 0 || gzipCode !== 0) throw new Error(`making layer ${name} failed: ${stderr.slice(-2000)}`);
  await rename(tmp, path);
  const layer: TarLayer = {
    name,
    path,
    digest: packed.digest(),
    size: packed.bytes,
    diffId: plain.digest(),
    tarSize: plain.bytes,
    sourceStamp,
    buildS: Math.round((performance.now() - started) / 100) / 10,
  };
  await writeFile(record, `${JSON.stringify(layer, null, 2)}\n`);
  return layer;
}

/** Pushes layers, an OCI config and an OCI manifest; `ref` names the tag. Returns the manifest digest. */
export async function pushTarImage(
  client: RegistryClient,
  ref: ImageReference,
  layers: TarLayer[],
  history: string[],
): Promise<string> {
  for (const layer of layers)
    await client.pushBlob(ref, layer.digest, layer.size, () => createReadStream(layer.path));
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2026-01-01T00:00:00Z',
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Cmd: ['bash'],
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: history.map((created_by) => ({ created: '2026-01-01T00:00:00Z', created_by })),
    }),
  );
  const configDigest = sha256Digest(config);
  await client.pushBlob(ref, configDigest, config.length, () => Readable.from([config]));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER_TAR_GZIP, digest: l.digest, size: l.size })),
    }),
  );
  return client.putManifest(ref, ref.tag ?? 'latest', OCI_MANIFEST, manifest);
}
