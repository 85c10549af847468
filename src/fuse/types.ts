/**
 * What a read-only filesystem implements to be served by `FuseSession`. Inode numbers are the
 * filesystem's own (FUSE "node ids"): u64 values, handed over as `number` when they fit in 2^53 and
 * as `bigint` otherwise, so a `Map` keyed by small numbers keeps working. Node id 1 is the root.
 */
import type { ContentMap } from './content-map.js';

export type InodeNumber = number | bigint;

export interface Timespec {
  sec: number;
  nsec: number;
}

export interface Attr {
  /** st_ino shown to programs; defaults to the node id the attributes belong to. */
  ino?: InodeNumber;
  /** File type and permission bits (S_IFREG | 0o644 …). */
  mode: number;
  size?: number | bigint;
  /** 512-byte blocks; defaults to ceil(size / 512). */
  blocks?: number;
  nlink?: number;
  uid?: number;
  gid?: number;
  /** Device number of a block/char device inode, encoded like the kernel's `new_encode_dev`. */
  rdev?: number;
  /** st_blksize; 0 lets the kernel pick (the page size). */
  blksize?: number;
  atime?: Timespec;
  mtime?: Timespec;
  ctime?: Timespec;
}

/** A looked-up name: counts as one kernel reference to `ino` until FORGET gives it back. */
export interface Entry {
  ino: InodeNumber;
  attr: Attr;
  /** nodeid:generation must be unique over the filesystem's lifetime (NFS export); default 0. */
  generation?: number;
  /** Seconds the kernel may cache the name / the attributes; default: the session's options. */
  entryTimeout?: number;
  attrTimeout?: number;
}

export interface DirectoryEntry {
  name: Buffer | string;
  ino: InodeNumber;
  /** Only the file-type bits (S_IFMT) are used. */
  mode: number;
  /** Cookie at which a later READDIR resumes *after* this entry; never 0 (0 is "from the start"). */
  offset: number | bigint;
  /**
   * Attributes for READDIRPLUS (`plus` true). An entry returned with `attr` counts as a lookup of `ino`
   * (except "." and ".."), exactly like LOOKUP; without it the kernel just lists the name.
   */
  attr?: Attr;
}

export interface OpenResult {
  /** Handed back in read/release; default 0. */
  fh?: number;
  /** Keep the page cache across opens (default true: the content is immutable). */
  keepCache?: boolean;
  /** Bypass the page cache: every read() reaches the filesystem with the caller's offset and size. */
  directIo?: boolean;
  /**
   * Where the node's whole content already is in local files. The reader threads then answer its
   * READs themselves (pread + write, no trip through the main thread, `read` is not called). Only
   * for final content: the map must stay true for this node id for the rest of the session. Taken
   * once per node id (the first map given); ignored for node ids above 2^53.
   */
  contentMap?: ContentMap;
}

export interface OpenDirResult {
  fh?: number;
  /** Let the kernel cache the listing (default true, with keepCache: the tree is immutable). */
  cacheDir?: boolean;
}

export interface Statfs {
  blocks: number;
  bfree?: number;
  bavail?: number;
  files: number;
  ffree?: number;
  bsize?: number;
  frsize?: number;
  namelen?: number;
}

/** Who asks, and the signal aborted when the kernel interrupts the request (or the session ends). */
export interface RequestContext {
  uid: number;
  gid: number;
  pid: number;
  signal: AbortSignal;
}

/**
 * Throw `FuseError` to answer with an errno (ENOENT, ENODATA …); anything else thrown is logged and
 * answered with EIO. Optional methods have sensible read-only defaults (see docs/fuse.md).
 */
export interface ReadOnlyFilesystem {
  lookup(parent: InodeNumber, name: Buffer, ctx: RequestContext): Promise<Entry>;
  getattr(ino: InodeNumber, ctx: RequestContext): Promise<Attr>;
  readlink?(ino: InodeNumber, ctx: RequestContext): Promise<Buffer | string>;
  /** Only called for read-only opens: write access is refused with EROFS before reaching here. */
  open?(ino: InodeNumber, flags: number, ctx: RequestContext): Promise<OpenResult>;
  /** Fewer bytes than `size` means end of file (or a hole-less short read under direct I/O). */
  read(
    ino: InodeNumber,
    fh: number,
    offset: number,
    size: number,
    ctx: RequestContext,
  ): Promise<Buffer | Uint8Array>;
  release?(ino: InodeNumber, fh: number): Promise<void> | void;
  opendir?(ino: InodeNumber, flags: number, ctx: RequestContext): Promise<OpenDirResult>;
  /**
   * Entries from `offset` (0 = the beginning, else a cookie from an earlier entry), "." and ".."
   * included. Iterated lazily: iteration stops as soon as the kernel's buffer is full, so an
   * implementation should produce entries on demand (a generator), not the whole directory.
   */
  readdir(
    ino: InodeNumber,
    fh: number,
    offset: number | bigint,
    plus: boolean,
    ctx: RequestContext,
  ): Iterable<DirectoryEntry> | AsyncIterable<DirectoryEntry>;
  releasedir?(ino: InodeNumber, fh: number): Promise<void> | void;
  statfs?(ino: InodeNumber, ctx: RequestContext): Promise<Statfs>;
  /** Throw FuseError(ENODATA) when absent. Without this method xattrs are unsupported (ENOTSUP). */
  getxattr?(ino: InodeNumber, name: Buffer, ctx: RequestContext): Promise<Buffer>;
  listxattr?(ino: InodeNumber, ctx: RequestContext): Promise<Array<Buffer | string>>;
  /** Only asked for R_OK/X_OK/F_OK without `defaultPermissions`; W_OK is EROFS. Default: allowed. */
  access?(ino: InodeNumber, mask: number, ctx: RequestContext): Promise<void>;
  /** The kernel dropped `nlookup` references to `ino` (from LOOKUP and READDIRPLUS entries). */
  forget?(ino: InodeNumber, nlookup: number): void;
}
