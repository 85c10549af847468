/**
 * One blob file being written: positional writes in increasing order with a bounded number of bytes
 * in flight (so producing the next chunk overlaps writing the last), small writes gathered into
 * larger ones, a sha256 of the file's bytes kept as they are produced (zero gaps included, so
 * nothing is read back), and a commit that fsyncs and renames the temp file to `<dir>/<hex sha256>`.
 *
 * (Hashing on a worker thread that reads the written prefix back was tried: it freed the main
 * thread but cost ~10% more CPU in total and was no faster on 2 cores; see bench/image-build.ts.)
 */
import { createHash, randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageBuildError } from './errors.js';

/** Bytes handed to the kernel but not yet written before `write` waits. */
const WRITE_WINDOW_BYTES = 32 * 1024 * 1024;
/** Writes up to this size are gathered in a staging buffer of STAGING_BYTES and written together. */
const SMALL_WRITE_BYTES = 256 * 1024;
const STAGING_BYTES = 4 * 1024 * 1024;
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
  private staged = { buffer: Buffer.allocUnsafe(STAGING_BYTES), length: 0 };
  private stagedAt = 0;

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
   * Small writes are gathered into one larger write (image files are mostly small).
   */
  async write(position: number, bytes: Buffer): Promise<void> {
    this.checkUsable();
    if (position < this.end) {
      throw new ImageBuildError('EMODEL', `blob write at ${position} overlaps the previous end ${this.end}`);
    }
    const gap = position - this.end;
    hashZeros(this.hash, gap);
    this.hash.update(bytes);
    this.end = position + bytes.length;
    if (bytes.length <= SMALL_WRITE_BYTES && this.stage(position, gap, bytes)) {
      if (this.staged.length > STAGING_BYTES - SMALL_WRITE_BYTES) this.flushStaged();
    } else {
      this.flushStaged();
      this.issue(bytes, position);
    }
    while (this.inFlightBytes > WRITE_WINDOW_BYTES) await Promise.race(this.inFlight);
    this.checkUsable();
  }

  /** Appends to the staging buffer when `position` continues it (zero-filling the gap). */
  private stage(position: number, gap: number, bytes: Buffer): boolean {
    if (this.staged.length === 0) {
      this.stagedAt = position;
    } else if (this.staged.length + gap + bytes.length > STAGING_BYTES) {
      return false;
    } else {
      this.staged.buffer.fill(0, this.staged.length, this.staged.length + gap);
      this.staged.length += gap;
    }
    bytes.copy(this.staged.buffer, this.staged.length);
    this.staged.length += bytes.length;
    return true;
  }

  private flushStaged(): void {
    if (this.staged.length === 0) return;
    const { buffer, length } = this.staged;
    this.issue(buffer.subarray(0, length), this.stagedAt);
    // The old buffer belongs to the write in flight now.
    this.staged = { buffer: Buffer.allocUnsafe(STAGING_BYTES), length: 0 };
  }

  private issue(bytes: Buffer, position: number): void {
    this.inFlightBytes += bytes.length;
    const tracked: Promise<void> = writeFully(this.handle, bytes, position).then(
      () => this.settle(tracked, bytes.length),
      (err: unknown) => {
        this.failure ??= err;
        this.settle(tracked, bytes.length);
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
    this.flushStaged();
    await Promise.all(this.inFlight);
    this.checkUsable();
    hashZeros(this.hash, size - this.end);
    this.end = size;
    await this.handle.truncate(size);
    await this.handle.sync();
    const hex = this.hash.digest('hex');
    this.closed = true;
    await this.handle.close();
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
