/**
 * One blob file being written: positional writes in increasing order with a bounded number of bytes
 * in flight (so producing the next chunk overlaps writing the last), a sha256 of the file's bytes
 * kept as they are produced (zero gaps included, so nothing is read back), and a commit that
 * fsyncs and renames the temp file to `<dir>/<hex sha256>`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageBuildError } from './errors.js';

/** Bytes handed to the kernel but not yet written before `write` waits. */
const WRITE_WINDOW_BYTES = 32 * 1024 * 1024;
const ZEROS = Buffer.alloc(64 * 1024);

export interface CommittedBlobFile {
  /** `sha256:<hex>` of the file's bytes. */
  digest: string;
  path: string;
  size: number;
  /** False when a file with this digest already existed (same bytes; it was left as it was). */
  created: boolean;
}

export class BlobFile {
  private readonly hash = createHash('sha256');
  private end = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private inFlightBytes = 0;
  private failure: unknown;
  private closed = false;

  private constructor(
    private readonly handle: FileHandle,
    readonly tempPath: string,
    private readonly dir: string,
  ) {}

  /** Creates a fresh temp file in `dir` (hidden, random name, never an existing file). */
  static async create(dir: string): Promise<BlobFile> {
    const tempPath = join(dir, `.blob-${randomBytes(6).toString('hex')}.tmp`);
    return new BlobFile(await open(tempPath, 'wx', 0o644), tempPath, dir);
  }

  /** Bytes of the file so far (the end of the last write, gaps included). */
  get size(): number {
    return this.end;
  }

  /**
   * Writes `bytes` at `position` (≥ the end of the previous write; the gap reads as zeros). Resolves
   * once the write is under way and the window has room; a failed write fails the next call.
   */
  async write(position: number, bytes: Buffer): Promise<void> {
    this.checkUsable();
    if (position < this.end) {
      throw new ImageBuildError('EMODEL', `blob write at ${position} overlaps the previous end ${this.end}`);
    }
    hashZeros(this.hash, position - this.end);
    this.hash.update(bytes);
    this.end = position + bytes.length;
    this.track(writeFully(this.handle, bytes, position), bytes.length);
    while (this.inFlightBytes > WRITE_WINDOW_BYTES) await Promise.race(this.inFlight);
    this.checkUsable();
  }

  private track(write: Promise<void>, length: number): void {
    this.inFlightBytes += length;
    const tracked: Promise<void> = write.then(
      () => this.settle(tracked, length),
      (err: unknown) => {
        this.failure ??= err;
        this.settle(tracked, length);
      },
    );
    this.inFlight.add(tracked);
  }

  private settle(write: Promise<void>, length: number): void {
    this.inFlight.delete(write);
    this.inFlightBytes -= length;
  }

  private checkUsable(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new ImageBuildError('ECLOSED', 'the blob file was already committed or discarded');
  }

  /**
   * Extends the file with zeros to `size` (≥ what was written), waits for every write, fsyncs, and
   * renames it to its digest. The directory is fsynced too, so the name is durable.
   */
  async commit(size = this.end): Promise<CommittedBlobFile> {
    this.checkUsable();
    if (size < this.end) throw new ImageBuildError('EMODEL', `blob size ${size} < written ${this.end}`);
    await Promise.all(this.inFlight);
    this.checkUsable();
    hashZeros(this.hash, size - this.end);
    this.end = size;
    await this.handle.truncate(size);
    await this.handle.sync();
    this.closed = true;
    await this.handle.close();
    const hex = this.hash.digest('hex');
    const path = join(this.dir, hex);
    const created = !(await isFile(path));
    if (created) await rename(this.tempPath, path);
    else await unlink(this.tempPath);
    await syncDirectory(this.dir);
    return { digest: `sha256:${hex}`, path, size, created };
  }

  /** Stops, closes and removes the temp file. Safe to call at any time, more than once. */
  async discard(): Promise<void> {
    await Promise.allSettled(this.inFlight);
    if (!this.closed) {
      this.closed = true;
      await this.handle.close().catch(() => undefined);
    }
    await unlink(this.tempPath).catch(() => undefined);
  }
}

function hashZeros(hash: ReturnType<typeof createHash>, length: number): void {
  for (let left = length; left > 0; left -= ZEROS.length) {
    hash.update(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left));
  }
}

async function writeFully(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** fsync of a directory makes the names created in it durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
