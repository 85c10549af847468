/**
 * The persisted record of which chunks of one blob are in its cache file: one bit per 4 KiB block of
 * the blob's uncompressed layout, set for the first block of each chunk present (chunk extents never
 * overlap, so the bit names exactly one chunk). A bit is only ever set after the chunk's bytes are
 * durable (see BlobCache), so whatever bits survive a crash name good data.
 *
 * File `<hex>.chunks`: a 32-byte header, then the bits (block b = byte b >> 3, bit b & 7):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 8 | magic `DMSFCMAP` |
 * | 8 | 4 | version 1 (u32 LE) |
 * | 12 | 4 | block size 4096 |
 * | 16 | 8 | the blob's uncompressed layout size (u64 LE) |
 * | 24 | 8 | reserved, zero |
 *
 * A file that is missing, of another version or size, or truncated is replaced by an empty bitmap
 * (the cache file's bytes are then simply not trusted, and get fetched again).
 */
import { constants } from 'node:fs';
import { type FileHandle, open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

export const CACHE_BLOCK_SIZE = 4096;
export const BITMAP_HEADER_SIZE = 32;
const MAGIC = Buffer.from('DMSFCMAP', 'latin1');
const VERSION = 1;

export function bitmapBytes(layoutSize: number): number {
  return Math.ceil(layoutSize / CACHE_BLOCK_SIZE / 8);
}

export function encodeBitmapHeader(layoutSize: number): Buffer {
  const header = Buffer.alloc(BITMAP_HEADER_SIZE);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(VERSION, 8);
  header.writeUInt32LE(CACHE_BLOCK_SIZE, 12);
  header.writeBigUInt64LE(BigInt(layoutSize), 16);
  return header;
}

/** Whether `file` is a bitmap of this version for a layout of `layoutSize` bytes. */
export function isBitmapFor(file: Buffer, layoutSize: number): boolean {
  return (
    file.length === BITMAP_HEADER_SIZE + bitmapBytes(layoutSize) &&
    file.subarray(0, BITMAP_HEADER_SIZE).equals(encodeBitmapHeader(layoutSize))
  );
}

export class ChunkBitmap {
  private dirtyFrom = Number.POSITIVE_INFINITY;
  private dirtyTo = -1;

  /** Use `ChunkBitmap.open`. */
  constructor(
    private readonly file: FileHandle,
    private readonly bits: Buffer,
    /** False when an unusable or missing file was replaced by an empty bitmap. */
    readonly reused: boolean,
  ) {}

  /**
   * Opens the bitmap at `path`, or creates an empty one atomically (temp file, rename) — also when
   * `empty` says the bits cannot be trusted (the data file they describe was just created).
   */
  static async open(path: string, layoutSize: number, empty = false): Promise<ChunkBitmap> {
    const existing = empty ? undefined : await openExisting(path, layoutSize);
    if (existing) return existing;
    await createEmpty(path, layoutSize);
    const file = await open(path, 'r+');
    return new ChunkBitmap(file, Buffer.alloc(bitmapBytes(layoutSize)), false);
  }

  has(block: number): boolean {
    const byte = this.bits[block >> 3];
    return byte !== undefined && (byte & (1 << (block & 7))) !== 0;
  }

  /** Sets the bit in memory; `persist()` makes it durable. */
  set(block: number): void {
    const at = block >> 3;
    if (at >= this.bits.length) throw new RangeError(`block ${block} is beyond the bitmap`);
    this.bits[at]! |= 1 << (block & 7);
    this.dirtyFrom = Math.min(this.dirtyFrom, at);
    this.dirtyTo = Math.max(this.dirtyTo, at);
  }

  /** Writes the bytes changed since the last persist and waits until they are on disk. */
  async persist(): Promise<void> {
    if (this.dirtyTo < 0) return;
    const from = this.dirtyFrom;
    const to = this.dirtyTo;
    this.dirtyFrom = Number.POSITIVE_INFINITY;
    this.dirtyTo = -1;
    // A snapshot: bits set while the write is under way are persisted next time.
    const bytes = Buffer.from(this.bits.subarray(from, to + 1));
    try {
      await this.file.write(bytes, 0, bytes.length, BITMAP_HEADER_SIZE + from);
      await this.file.datasync();
    } catch (err) {
      // Still true in memory (the data is durable): try to persist these bytes again next time.
      this.dirtyFrom = Math.min(this.dirtyFrom, from);
      this.dirtyTo = Math.max(this.dirtyTo, to);
      throw err;
    }
  }

  /** Chunks marked present. */
  count(): number {
    let total = 0;
    for (const byte of this.bits) total += popcount(byte);
    return total;
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

async function openExisting(path: string, layoutSize: number): Promise<ChunkBitmap | undefined> {
  let file: FileHandle;
  try {
    file = await open(path, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const content = await file.readFile();
    if (isBitmapFor(content, layoutSize)) {
      return new ChunkBitmap(file, Buffer.from(content.subarray(BITMAP_HEADER_SIZE)), true);
    }
  } catch (err) {
    await file.close();
    throw err;
  }
  await file.close();
  return undefined;
}

async function createEmpty(path: string, layoutSize: number): Promise<void> {
  const temp = `${path}.tmp-${process.pid}`;
  const file = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o644);
  try {
    await file.write(encodeBitmapHeader(layoutSize), 0, BITMAP_HEADER_SIZE, 0);
    await file.truncate(BITMAP_HEADER_SIZE + bitmapBytes(layoutSize));
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(temp, path);
  await syncDirectory(dirname(path));
}

/** Makes a rename in `dir` durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function popcount(byte: number): number {
  let count = 0;
  for (let b = byte; b !== 0; b &= b - 1) count++;
  return count;
}
