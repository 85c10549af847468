/** How an lstat result (bigint, for nanoseconds) becomes the image model's inode attributes. */
import type { BigIntStats } from 'node:fs';
import type { InodeAttributes } from '../format/index.js';
import type { EntryKind } from './tree-reader-protocol.js';

export function attributesOf(stats: BigIntStats): Omit<InodeAttributes, 'xattrs'> {
  // mtimeNs may be negative (before 1970): keep nsec in [0, 1e9).
  const ns = stats.mtimeNs;
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    nsec += 1_000_000_000n;
    sec -= 1n;
  }
  return {
    mode: Number(stats.mode & 0o7777n),
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    mtimeSec: Number(sec),
    mtimeNsec: Number(nsec),
  };
}

/** The entry kind, or null for a type the image cannot hold. */
export function kindOf(stats: BigIntStats): EntryKind | null {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'directory';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isCharacterDevice()) return 'char';
  if (stats.isBlockDevice()) return 'block';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isSocket()) return 'socket';
  return null;
}

/** Linux's dev_t encoding (glibc `gnu_dev_major/minor`): 12+20 bits split across the 64-bit value. */
export function decodeRdev(rdev: bigint): { rdevMajor: number; rdevMinor: number } {
  return {
    rdevMajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
    rdevMinor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)),
  };
}
