/** Blob ranges from an `image build` output directory: `OUT/blobs/<hex>`, read with pread. */
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobInfo } from '../image/format/index.js';
import type { ChunkBackend } from './chunk-backend.js';
import { ChunkFetchError } from './errors.js';

export class LocalBackend implements ChunkBackend {
  readonly name: string;
  private readonly files = new Map<string, Promise<FileHandle>>();

  constructor(private readonly dir: string) {
    this.name = `local ${dir}`;
  }

  async readRange(blob: BlobInfo, offset: number, length: number, signal: AbortSignal): Promise<Buffer> {
    signal.throwIfAborted();
    const where = `${this.name}: blob ${blob.digest} bytes ${offset}+${length}`;
    const file = await this.fileOf(blob).catch((err: Error) => {
      throw new ChunkFetchError(`${where}: ${err.message}`, { cause: err });
    });
    const bytes = Buffer.allocUnsafe(length);
    for (let done = 0; done < length; ) {
      const { bytesRead } = await file.read(bytes, done, length - done, offset + done);
      if (bytesRead === 0) throw new ChunkFetchError(`${where}: the blob file ends at ${offset + done}`);
      done += bytesRead;
    }
    return bytes;
  }

  async close(): Promise<void> {
    const files = [...this.files.values()];
    this.files.clear();
    await Promise.allSettled(files.map(async (file) => (await file).close()));
  }

  private fileOf(blob: BlobInfo): Promise<FileHandle> {
    let file = this.files.get(blob.digest);
    if (file === undefined) {
      const hex = blob.digest.slice(blob.digest.indexOf(':') + 1);
      file = open(join(this.dir, 'blobs', hex), 'r');
      // A failed open is not remembered: the next read tries again.
      file.catch(() => this.files.delete(blob.digest));
      this.files.set(blob.digest, file);
    }
    return file;
  }
}
