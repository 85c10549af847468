/**
 * What `stat` shows for a node of the image, matching what the kernel's EROFS driver reports for the
 * same bootstrap (st_ino = nid, st_size of directories = their EROFS data size, st_blocks rounded up
 * to 4 KiB, all three times = the inode's mtime), so switching a mount to the kernel later changes
 * nothing a program can see.
 */
import { constants } from 'node:fs';
import type { Attr } from '../fuse/index.js';
import type { DirectoryNode, TreeNode } from '../image/format/index.js';

const BLOCK = 4096;
/** struct erofs_dirent: nid u64, nameoff u16, file_type u8, reserved u8. */
const DIRENT_SIZE = 12;

const TYPE_BITS: Readonly<Record<TreeNode['kind'], number>> = {
  file: constants.S_IFREG,
  directory: constants.S_IFDIR,
  symlink: constants.S_IFLNK,
  char: constants.S_IFCHR,
  block: constants.S_IFBLK,
  fifo: constants.S_IFIFO,
  socket: constants.S_IFSOCK,
};

export function typeBitsOf(kind: TreeNode['kind']): number {
  return TYPE_BITS[kind];
}

/** The kernel's `new_encode_dev`: minor's low byte, major, then minor's upper bits. */
export function encodeDeviceNumber(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/**
 * `i_size` of a directory as EROFS lays it out: 12-byte dirents plus names, `.` and `..` included,
 * sorted by bytes and never crossing a 4 KiB block; the last block is not padded. (Mirrors
 * `directorySize` in src/image/format, which its index does not export.)
 */
export function directoryDataSize(dir: DirectoryNode): number {
  const lengths = ['.', '..', ...dir.children.keys()].map((name) => Buffer.from(name));
  lengths.sort(Buffer.compare);
  let full = 0;
  let used = 0;
  for (const name of lengths) {
    const need = DIRENT_SIZE + name.length;
    if (used + need > BLOCK) {
      full++;
      used = 0;
    }
    used += need;
  }
  return full * BLOCK + used;
}

function sizeOf(node: TreeNode): number {
  switch (node.kind) {
    case 'file':
      return node.size;
    case 'symlink':
      return Buffer.byteLength(node.target);
    case 'directory':
      return directoryDataSize(node);
    default:
      return 0;
  }
}

export function attributesOf(node: TreeNode, ino: number, nlink: number): Attr {
  const size = sizeOf(node);
  const time = { sec: node.mtimeSec, nsec: node.mtimeNsec };
  return {
    ino,
    mode: typeBitsOf(node.kind) | (node.mode & 0o7777),
    size,
    blocks: Math.ceil(size / BLOCK) * (BLOCK / 512),
    nlink,
    uid: node.uid,
    gid: node.gid,
    rdev:
      node.kind === 'char' || node.kind === 'block' ? encodeDeviceNumber(node.rdevMajor, node.rdevMinor) : 0,
    blksize: BLOCK,
    atime: time,
    mtime: time,
    ctime: time,
  };
}
