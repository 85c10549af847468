import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { blobHex, decodeSourceBootstrap, type ImageSource, verifiedBlobChunks } from '../source/index.js';

export class UnpackError extends Error {
  readonly code = 'EUNPACK';
}

export interface UnpackResult {
  bootstrap: string;
  /** Uncompressed blob layouts, in device-table order (the order of `device=` mount options). */
  blobs: string[];
}

/**
 * Writes `OUT/bootstrap` and `OUT/blobs/<hex>.data` — every blob in the uncompressed, 4 KiB-aligned
 * layout the kernel reads — from verified chunks only. Files appear under their final names only
 * once complete; on failure this run's files are removed.
 */
export async function unpackImage(
  source: ImageSource,
  outDir: string,
  options: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {},
): Promise<UnpackResult> {
  const { image } = decodeSourceBootstrap(source);
  await mkdir(join(outDir, 'blobs'), { recursive: true });
  const temps: string[] = [];
  const finals: Array<[string, string]> = [];
  const total = image.blobs.reduce((sum, blob) => sum + blob.uncompressedSize, 0);
  let done = 0;
  try {
    for (const [blobIndex, blob] of image.blobs.entries()) {
      const path = join(outDir, 'blobs', `${blobHex(blob)}.data`);
      const temp = `${path}.tmp-${process.pid}`;
      temps.push(temp);
      const file = await open(temp, 'w');
      try {
        await file.truncate(blob.uncompressedSize);
        const stored = await source.openBlob(blob, options.signal);
        for await (const { chunk, data, fault } of verifiedBlobChunks(image, blobIndex, stored)) {
          if (fault || !data) throw new UnpackError(fault ?? 'chunk without data');
          await file.write(data, 0, data.length, chunk.uncompressedOffset);
        }
        await file.sync();
      } finally {
        await file.close();
      }
      finals.push([temp, path]);
      done += blob.uncompressedSize;
      options.onProgress?.(done, total);
    }
    const bootstrap = join(outDir, 'bootstrap');
    const bootstrapTemp = `${bootstrap}.tmp-${process.pid}`;
    temps.push(bootstrapTemp);
    await writeFile(bootstrapTemp, source.bootstrap, { flush: true });
    finals.push([bootstrapTemp, bootstrap]);
    for (const [from, to] of finals) await rename(from, to);
    return { bootstrap, blobs: finals.slice(0, -1).map(([, to]) => to) };
  } catch (err) {
    await Promise.all(temps.map((temp) => rm(temp, { force: true })));
    throw err;
  }
}

/** The shell commands that mount an unpacked image with the kernel's EROFS driver through loop devices. */
export function kernelMountCommands(result: UnpackResult, mountpoint = '/mnt/image'): string[] {
  const devices = result.blobs.map((blob, i) => `D${i}=$(losetup -f --show -r ${blob})`);
  const deviceOptions = result.blobs.map((_, i) => `device=$D${i}`).join(',');
  return [
    `B=$(losetup -f --show -r ${result.bootstrap})`,
    ...devices,
    `mkdir -p ${mountpoint}`,
    `mount -t erofs -o ro${deviceOptions ? `,${deviceOptions}` : ''} $B ${mountpoint}`,
  ];
}
