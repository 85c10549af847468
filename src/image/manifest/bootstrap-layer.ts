import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { BOOTSTRAP_TAR_PATH } from './media-types.js';

export class BootstrapLayerError extends Error {
  readonly code = 'EBOOTSTRAPLAYER';
}

export interface PackedBootstrapLayer {
  /** The gzip tar as pushed. */
  bytes: Buffer;
  /** `sha256:` of `bytes` (the layer digest). */
  digest: string;
  /** `sha256:` of the uncompressed tar (the config's diff id). */
  diffId: string;
}

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Packs a bootstrap as a deterministic gzip tar: `image/` then `image/image.boot`, owned by root, mtime 0. */
export async function packBootstrapLayer(bootstrap: Buffer): Promise<PackedBootstrapLayer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (chunk) => chunks.push(chunk as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const header = { uid: 0, gid: 0, uname: '', gname: '', mtime: new Date(0) };
  pack.entry({ ...header, name: 'image/', type: 'directory', mode: 0o755 });
  pack.entry(
    { ...header, name: BOOTSTRAP_TAR_PATH, type: 'file', mode: 0o644, size: bootstrap.length },
    bootstrap,
  );
  pack.finalize();
  await ended;
  const tarBytes = Buffer.concat(chunks);
  const bytes = gzipSync(tarBytes, { level: 6 });
  return { bytes, digest: sha256(bytes), diffId: sha256(tarBytes) };
}

/** Reads `image/image.boot` out of a bootstrap layer stream (gzip tar); refuses anything larger than `maxBytes`. */
export async function unpackBootstrapLayer(layer: Readable, maxBytes = 1 << 30): Promise<Buffer> {
  const extract = tar.extract();
  let found: Buffer | undefined;
  extract.on('entry', (header, stream, next) => {
    const name = header.name.replace(/^\.\//, '');
    if (name !== BOOTSTRAP_TAR_PATH || header.type !== 'file') {
      stream.resume();
      stream.on('end', next);
      return;
    }
    if ((header.size ?? 0) > maxBytes) {
      next(
        new BootstrapLayerError(
          `bootstrap of ${header.size} bytes is larger than the ${maxBytes}-byte limit`,
        ),
      );
      return;
    }
    const parts: Buffer[] = [];
    stream.on('data', (part) => parts.push(part as Buffer));
    stream.on('end', () => {
      found = Buffer.concat(parts);
      next();
    });
  });
  try {
    await pipeline(layer, createGunzip(), extract);
  } catch (err) {
    if (err instanceof BootstrapLayerError) throw err;
    throw new BootstrapLayerError(`bootstrap layer is not a readable gzip tar: ${(err as Error).message}`);
  }
  if (!found) throw new BootstrapLayerError(`bootstrap layer has no ${BOOTSTRAP_TAR_PATH}`);
  return found;
}
