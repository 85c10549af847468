/**
 * The local copy of one blob, shared by every image that uses it:
 *
 * - `<hex>.blob.data`: a sparse file in the blob's uncompressed layout (each chunk's bytes at its
 *   4 KiB-aligned `uncompressedOffset`, `uncompressedSize` bytes long) — the layout `image unpack`
 *   writes, so a fully cached blob is what the kernel's EROFS driver reads as a device;
 * - `<hex>.chunks`: the ChunkBitmap saying which chunks are in it.
 *
 * Only verified bytes are stored, and a chunk is marked present only once its bytes are durable:
 * write, fdatasync the data file, then set and persist the bit (fdatasync the bitmap). Chunks
 * stored concurrently share one such commit (GroupCommit). After a crash every bit on disk names
 * durable, verified bytes; a chunk whose bit did not make it is fetched again. Bytes read back
 * through a set bit are trusted without hashing them again.
 */
import { constants } from 'node:fs';
import { type FileHandle, mkdir, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { BlobInfo, ChunkInfo } from '../image/format/index.js';
import { CACHE_BLOCK_SIZE, ChunkBitmap, syncDirectory } from './chunk-bitmap.js';
import { BlobCacheError } from './errors.js';
import { GroupCommit } from './group-commit.js';

/** File names of a blob's cache: `<hex>.blob.data` and `<hex>.chunks`. */
export function blobCachePaths(cacheDir: string, blob: BlobInfo): { data: string; bitmap: string } {
  const hex = blob.digest.slice(blob.digest.indexOf(':') + 1);
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new BlobCacheError(`blob digest ${blob.digest} is not sha256`);
  return { data: join(cacheDir, `${hex}.blob.data`), bitmap: join(cacheDir, `${hex}.chunks`) };
}

export class BlobCache {
  private readonly commits: GroupCommit<number>;
  private closing: Promise<void> | undefined;

  private constructor(
    readonly blob: BlobInfo,
    readonly dataPath: string,
    /** `st_dev`/`st_ino` of the open data file: who opens `dataPath` again checks it is still this file. */
    readonly dataFile: { dev: number; ino: number },
    private readonly data: FileHandle,
    private readonly bitmap: ChunkBitmap,
  ) {
    this.commits = new GroupCommit((blocks) => this.commitBlocks(blocks));
  }

  static async open(cacheDir: string, blob: BlobInfo): Promise<BlobCache> {
    const paths = blobCachePaths(cacheDir, blob);
    try {
      await mkdir(cacheDir, { recursive: true });
      const { file, created, dev, ino } = await openDataFile(paths.data, blob.uncompressedSize);
      // Bits describing a data file that is gone would name zeros: a new data file gets a new bitmap.
      const bitmap = await ChunkBitmap.open(paths.bitmap, blob.uncompressedSize, created).catch(
        async (err: unknown) => {
          await file.close();
          throw err;
        },
      );
      return new BlobCache(blob, paths.data, { dev, ino }, file, bitmap);
    } catch (err) {
      throw new BlobCacheError(
        `cannot open the cache of blob ${blob.digest} in ${cacheDir}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  /** Whether the chunk's bytes are in the cache file (and durable). */
  has(chunk: ChunkInfo): boolean {
    return this.bitmap.has(chunk.uncompressedOffset / CACHE_BLOCK_SIZE);
  }

  /** Chunks present, as the bitmap says. */
  presentChunks(): number {
    return this.bitmap.count();
  }

  /** Group commits run so far. */
  get commitCount(): number {
    return this.commits.flushes;
  }

  /** Copies `length` bytes at `position` of the uncompressed layout into `into` at `at`. */
  async read(into: Buffer, at: number, position: number, length: number): Promise<void> {
    for (let done = 0; done < length; ) {
      const { bytesRead } = await this.data.read(into, at + done, length - done, position + done);
      if (bytesRead === 0) throw new BlobCacheError(`${this.dataPath} ends before ${position + length}`);
      done += bytesRead;
    }
  }

  /** Writes verified chunk bytes and resolves once they are durable and marked present. */
  async store(chunk: ChunkInfo, bytes: Buffer): Promise<void> {
    if (this.closing) throw new BlobCacheError(`the cache of blob ${this.blob.digest} is closed`);
    for (let done = 0; done < bytes.length; ) {
      const { bytesWritten } = await this.data.write(
        bytes,
        done,
        bytes.length - done,
        chunk.uncompressedOffset + done,
      );
      done += bytesWritten;
    }
    await this.commits.commit(chunk.uncompressedOffset / CACHE_BLOCK_SIZE);
  }

  /** Waits for pending commits, then closes the files. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.commits.idle();
      await Promise.allSettled([this.data.close(), this.bitmap.close()]);
    })();
    return this.closing;
  }

  /** Data first, then the bits: a bit on disk must never name bytes that are not. */
  private async commitBlocks(blocks: number[]): Promise<void> {
    await this.data.datasync();
    for (const block of blocks) this.bitmap.set(block);
    await this.bitmap.persist();
  }
}

/**
 * Opens (or creates) the sparse data file, sized to the whole layout. Never O_APPEND: writes are
 * positioned. A created file's directory entry is made durable before any bit can name its bytes.
 */
async function openDataFile(
  path: string,
  layoutSize: number,
): Promise<{ file: FileHandle; created: boolean; dev: number; ino: number }> {
  let created = false;
  const file = await open(path, constants.O_RDWR).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
    created = true;
    return open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  });
  try {
    const st = await file.stat();
    if (st.size !== layoutSize) await file.truncate(layoutSize);
    if (created) await syncDirectory(dirname(path));
    return { file, created, dev: st.dev, ino: st.ino };
  } catch (err) {
    await file.close();
    throw err;
  }
}
