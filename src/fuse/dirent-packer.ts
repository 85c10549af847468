/**
 * Packs directory entries into a READDIR (`fuse_dirent`) or READDIRPLUS (`fuse_direntplus`) reply of
 * at most the size the kernel asked for. Each record is padded to 8 bytes (FUSE_DIRENT_ALIGN). Pure.
 */
import { NAME_MAX, StructSize } from './abi.js';
import { type CacheTimeouts, writeEntryOut } from './reply-encoder.js';
import type { DirectoryEntry } from './types.js';
import { writeU64 } from './u64.js';

const S_IFMT = 0o170000;
const SLASH = 0x2f;

export type AddResult = 'added' | 'full' | 'invalid-name';

export function direntSize(nameLength: number, plus: boolean): number {
  const header = plus ? StructSize.DIRENTPLUS_HEADER : StructSize.DIRENT_HEADER;
  return (header + nameLength + 7) & ~7;
}

/**
 * The kernel fails the whole listing (EIO) on an empty name, one over FUSE_NAME_MAX, or one holding
 * '/'; NUL would cut the name short. Such names (from an untrusted image) are skipped instead.
 */
export function isValidDirentName(name: Buffer): boolean {
  return name.length > 0 && name.length <= NAME_MAX && !name.includes(SLASH) && !name.includes(0);
}

/** First allocation; the kernel may offer up to max_pages (1 MiB) for a directory of three names. */
const INITIAL_BYTES = 16 * 1024;

export class DirentPacker {
  private buf: Buffer;
  private used = 0;
  private entries = 0;

  constructor(
    private readonly capacity: number,
    private readonly plus: boolean,
    private readonly timeouts: CacheTimeouts,
  ) {
    this.buf = Buffer.alloc(Math.min(capacity, INITIAL_BYTES));
  }

  get count(): number {
    return this.entries;
  }

  add(entry: DirectoryEntry): AddResult {
    const name = typeof entry.name === 'string' ? Buffer.from(entry.name) : entry.name;
    if (!isValidDirentName(name)) return 'invalid-name';
    const size = direntSize(name.length, this.plus);
    if (this.used + size > this.capacity) return 'full';
    this.reserve(this.used + size);
    let at = this.used;
    if (this.plus) {
      // nodeid 0 (all zeroes) tells the kernel "listed, not looked up" when there are no attributes.
      if (entry.attr) writeEntryOut(this.buf, at, { ino: entry.ino, attr: entry.attr }, this.timeouts);
      at += StructSize.ENTRY_OUT;
    }
    writeU64(this.buf, at, entry.attr?.ino ?? entry.ino);
    writeU64(this.buf, at + 8, entry.offset);
    this.buf.writeUInt32LE(name.length, at + 16);
    this.buf.writeUInt32LE((entry.mode & S_IFMT) >>> 12, at + 20);
    name.copy(this.buf, at + StructSize.DIRENT_HEADER);
    this.used += size;
    this.entries++;
    return 'added';
  }

  private reserve(bytes: number): void {
    if (bytes <= this.buf.length) return;
    const grown = Buffer.alloc(Math.min(this.capacity, Math.max(bytes, this.buf.length * 2)));
    this.buf.copy(grown, 0, 0, this.used);
    this.buf = grown;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.used);
  }
}
