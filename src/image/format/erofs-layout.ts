/**
 * EROFS on-disk constants the bootstrap codec uses (all little-endian; see docs/format.md).
 * Only the subset Damselfly writes: 4 KiB blocks, extended inodes, flat and chunk-based layouts,
 * inline xattrs, a device table.
 */

export const EROFS_BLOCK_SIZE = 4096;
export const EROFS_BLOCK_SIZE_BITS = 12;

export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 128;
export const EROFS_MAGIC = 0xe0f5e1e2;

export const FEATURE_COMPAT_SB_CHKSUM = 0x1;
/** Our private compat bit: "a Damselfly extension header is present at byte 1152". */
export const FEATURE_COMPAT_DAMSELFLY = 0x20000000;
export const FEATURE_INCOMPAT_CHUNKED_FILE = 0x4;
export const FEATURE_INCOMPAT_DEVICE_TABLE = 0x8;

/** Superblock field offsets (relative to the superblock start). */
export const SB = {
  magic: 0,
  checksum: 4,
  featureCompat: 8,
  blkszbits: 12,
  extslots: 13,
  rootNid: 14,
  inos: 16,
  buildTime: 24,
  buildTimeNsec: 32,
  blocks: 36,
  metaBlkaddr: 40,
  xattrBlkaddr: 44,
  uuid: 48,
  volumeName: 64,
  featureIncompat: 80,
  availableComprAlgs: 84,
  extraDevices: 86,
  devtSlotoff: 88,
  dirblkbits: 90,
} as const;

export const VOLUME_NAME_SIZE = 16;

export const DEVICE_SLOT_SIZE = 128;
export const DEVICE_TAG_SIZE = 64;
/** Device slot field offsets. */
export const DEVICE_SLOT = { tag: 0, blocks: 64, mappedBlkaddr: 68 } as const;
/** The kernel masks a chunk index's device id with a u8-wide mask at most; slot ids are 1..255. */
export const MAX_DEVICES = 255;

export const INODE_SLOT_SIZE = 32;
export const EXTENDED_INODE_SIZE = 64;
/** Extended inode field offsets. */
export const INODE = {
  format: 0,
  xattrIcount: 2,
  mode: 4,
  size: 8,
  u: 16,
  ino: 20,
  uid: 24,
  gid: 28,
  mtime: 32,
  mtimeNsec: 40,
  nlink: 44,
} as const;

/** i_format bit 0: extended (64-byte) inode. Bits 1-3: data layout. Classic kernels reject bits 4+. */
export const INODE_FORMAT_EXTENDED = 0x1;
export const INODE_FORMAT_KNOWN_BITS = 0xf;
export const LAYOUT_FLAT_PLAIN = 0;
export const LAYOUT_FLAT_INLINE = 2;
export const LAYOUT_CHUNK_BASED = 4;

export function inodeFormat(layout: number): number {
  return INODE_FORMAT_EXTENDED | (layout << 1);
}

/** Unmapped block address: a hole in a chunk index, "no blocks" in a flat inode. */
export const NULL_ADDR = 0xffffffff;

export const CHUNK_FORMAT_INDEXES = 0x20;
export const CHUNK_FORMAT_BLKBITS_MASK = 0x1f;
export const CHUNK_INDEX_SIZE = 8;

/** `i_u` of a chunk-based inode: 8-byte indexes, chunk size = block size << bits (high u16 = 0). */
export function chunkFormatOf(chunkSize: number): number {
  return CHUNK_FORMAT_INDEXES | (Math.log2(chunkSize) - EROFS_BLOCK_SIZE_BITS);
}
/** Chunk index field offsets: advise (u16, kept 0), device id (u16), block address (u32). */
export const CHUNK_INDEX = { advise: 0, deviceId: 2, blkaddr: 4 } as const;

export const DIRENT_SIZE = 12;
export const MAX_NAME_LENGTH = 255;
/** Linux readlink limit (PATH_MAX without the NUL). */
export const MAX_SYMLINK_LENGTH = 4095;
/** Longest prefetch path (PATH_MAX without the NUL): what one open() can name. */
export const MAX_PATH_LENGTH = 4095;

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
export const PERMISSION_BITS = 0o7777;

export const FT_REG_FILE = 1;
export const FT_DIR = 2;
export const FT_CHRDEV = 3;
export const FT_BLKDEV = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_SYMLINK = 7;

/** Linux `new_encode_dev`: 12-bit major, 20-bit minor packed into 32 bits. */
export function encodeDevice(major: number, minor: number): number {
  return ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function decodeDevice(rdev: number): { major: number; minor: number } {
  return { major: (rdev >>> 8) & 0xfff, minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) };
}

export const MAX_DEVICE_MAJOR = 0xfff;
export const MAX_DEVICE_MINOR = 0xfffff;
