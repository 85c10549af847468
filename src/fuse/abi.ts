/**
 * Numbers of the FUSE kernel ABI, transcribed from `/usr/include/linux/fuse.h` (protocol 7.38). Only
 * what this server reads or writes is here; struct sizes are asserted against byte layouts in
 * test/unit/fuse-protocol.test.ts.
 */

/** The protocol version we speak; the kernel answers with min(its minor, ours). */
export const KERNEL_VERSION = 7;
export const KERNEL_MINOR_VERSION = 38;
/** Oldest kernel protocol we accept: 7.28 (Linux 4.20) brought max_pages, needed for 1 MiB reads. */
export const MIN_KERNEL_MINOR_VERSION = 28;

export const ROOT_ID = 1;
/** The kernel refuses reads of /dev/fuse into buffers smaller than this. */
export const MIN_READ_BUFFER = 8192;
/** Upper bound of `max_pages` in `fuse_init_out` (the kernel's default `max_pages_limit`). */
export const MAX_MAX_PAGES = 256;
/** Page size assumed for max_pages; the `max_read` mount option caps READs on bigger-page machines. */
export const PAGE_SIZE = 4096;

export const Opcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  /** 7.39; sent by newer kernels whatever minor we answer; ENOSYS makes them use GETATTR. */
  STATX: 52,
} as const;

/** `fuse_init_in.flags` / `fuse_init_out.flags` (the low 32 bits; we use none of flags2). */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  POSIX_LOCKS: 1 << 1,
  ATOMIC_O_TRUNC: 1 << 3,
  EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5,
  SPLICE_READ: 1 << 9,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16,
  NO_OPEN_SUPPORT: 1 << 17,
  PARALLEL_DIROPS: 1 << 18,
  POSIX_ACL: 1 << 20,
  ABORT_ERROR: 1 << 21,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24,
  INIT_EXT: 1 << 30,
} as const;

/** `fuse_open_out.open_flags`. */
export const OpenFlag = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
} as const;

/** `fuse_getattr_in.getattr_flags`: `fh` is valid. */
export const GETATTR_FH = 1 << 0;

/** Requests carrying a unique with this bit set are INTERRUPT requests (kernel: FUSE_INT_REQ_BIT). */
export const INTERRUPT_UNIQUE_BIT = 1;

export const StructSize = {
  IN_HEADER: 40,
  OUT_HEADER: 16,
  ATTR: 88,
  ENTRY_OUT: 128,
  ATTR_OUT: 104,
  OPEN_OUT: 16,
  KSTATFS: 80,
  INIT_IN: 64,
  /** major, minor, max_readahead, flags: all a 7.x kernel is guaranteed to send. */
  INIT_IN_MIN: 16,
  INIT_OUT: 64,
  FORGET_IN: 8,
  FORGET_ONE: 16,
  BATCH_FORGET_IN: 8,
  GETATTR_IN: 16,
  OPEN_IN: 8,
  READ_IN: 40,
  RELEASE_IN: 24,
  GETXATTR_IN: 8,
  GETXATTR_OUT: 8,
  ACCESS_IN: 8,
  INTERRUPT_IN: 8,
  DIRENT_HEADER: 24,
  DIRENTPLUS_HEADER: 128 + 24,
} as const;

/** Longest name the kernel accepts in a dirent (FUSE_NAME_MAX); Linux paths allow 255. */
export const NAME_MAX = 255;
