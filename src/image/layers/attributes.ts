import type { InodeAttributes, TreeNode } from '../format/index.js';

/**
 * An entry applied over an inode that survives it (a directory over a directory, a hard link to an
 * existing file) sets the owner, mode and mtime it carries and its xattrs key by key; xattrs it does
 * not name stay (containerd: lchown, lchmod, chtimes, setxattr on the existing inode).
 * Symlinks keep their mode (Linux has no lchmod).
 */
export function overlayAttributes(
  target: InodeAttributes & { kind?: TreeNode['kind'] },
  source: InodeAttributes,
): void {
  if (target.kind !== 'symlink') target.mode = source.mode;
  target.uid = source.uid;
  target.gid = source.gid;
  target.mtimeSec = source.mtimeSec;
  target.mtimeNsec = source.mtimeNsec;
  for (const [name, value] of source.xattrs) target.xattrs.set(name, value);
}

export function copyAttributes(source: InodeAttributes): InodeAttributes {
  return {
    mode: source.mode,
    uid: source.uid,
    gid: source.gid,
    mtimeSec: source.mtimeSec,
    mtimeNsec: source.mtimeNsec,
    xattrs: new Map(source.xattrs),
  };
}
