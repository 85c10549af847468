/**
 * What `stat` shows for a node of the image, matching what the kernel's EROFS driver reports for the
 * same bootstrap (st_ino = nid, st_size of directories = their EROFS data size, st_blocks rounded up
 * to 4 KiB, all three times = the inode's mtime), so switching a mount to the kernel later changes
 * nothing a program can see.
 */
import { constants } from 'node:fs';
import type { Attr } from '../fuse/index.js';
import { type DirectoryNode, directorySize, type TreeNode } from '../image/format/index.js';

const BLOCK = 4096;

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

/** `i_size` of a directory as EROFS lays it out (`.` and `..` included, names sorted by bytes). */
export function directoryDataSize(dir: DirectoryNode): number {
  const names = ['.', '..', ...dir.children.keys()].map((name) => Buffer.from(name));
  names.sort(Buffer.compare);
  return directorySize(names.map((name) => name.length));
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
