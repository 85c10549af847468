/** How each kind of tree node is spelled on disk: its `S_IFMT` type and its dirent file type. */

import {
  FT_BLKDEV,
  FT_CHRDEV,
  FT_DIR,
  FT_FIFO,
  FT_REG_FILE,
  FT_SOCK,
  FT_SYMLINK,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
} from './erofs-layout.js';
import type { TreeNode } from './tree.js';

export type NodeKind = TreeNode['kind'];

const KINDS: ReadonlyArray<{ kind: NodeKind; mode: number; fileType: number }> = [
  { kind: 'file', mode: S_IFREG, fileType: FT_REG_FILE },
  { kind: 'directory', mode: S_IFDIR, fileType: FT_DIR },
  { kind: 'symlink', mode: S_IFLNK, fileType: FT_SYMLINK },
  { kind: 'char', mode: S_IFCHR, fileType: FT_CHRDEV },
  { kind: 'block', mode: S_IFBLK, fileType: FT_BLKDEV },
  { kind: 'fifo', mode: S_IFIFO, fileType: FT_FIFO },
  { kind: 'socket', mode: S_IFSOCK, fileType: FT_SOCK },
];

export function typeBitsOf(kind: NodeKind): number {
  return KINDS.find((k) => k.kind === kind)!.mode;
}

export function fileTypeOf(kind: NodeKind): number {
  return KINDS.find((k) => k.kind === kind)!.fileType;
}

/** The node kind of an inode's `i_mode`, or undefined for a bogus type. */
export function kindOfMode(mode: number): NodeKind | undefined {
  return KINDS.find((k) => k.mode === (mode & S_IFMT))?.kind;
}

export function isNodeKind(kind: unknown): kind is NodeKind {
  return KINDS.some((k) => k.kind === kind);
}
