/**
 * First pass of the writer: walks the tree breadth-first (children in name-byte order) and lists
 * every distinct inode once, in the order they will be laid out, with its link count, its
 * directory entries and the bytes it stores in the bootstrap (xattr ibody, directory data or
 * symlink target). Hard links are the same node object under several names.
 */

import { directorySize } from './directory-codec.js';
import { InvalidImageError } from './errors.js';
import { checkNode, encodeName } from './node-validation.js';
import type { DirectoryNode, TreeNode } from './tree.js';
import { encodeXattrIbody, XattrError } from './xattr-codec.js';

export interface PlannedInode {
  node: TreeNode;
  /** The first path that reaches the node (breadth-first, name order). */
  path: string;
  nlink: number;
  /** Directories: entries sorted by name bytes, `.` and `..` included. */
  entries: Array<{ name: Buffer; target: PlannedInode }>;
  xattrIbody: Buffer;
  /** Bytes of directory data or symlink target kept in the bootstrap (0 for other kinds). */
  dataSize: number;
}

const DOT = Buffer.from('.');
const DOT_DOT = Buffer.from('..');

export function planInodes(root: DirectoryNode): PlannedInode[] {
  if (root?.kind !== 'directory') throw new InvalidImageError('the root is not a directory');
  const planned = new Map<TreeNode, PlannedInode>();
  const rootInode = newInode(root, '/');
  planned.set(root, rootInode);
  const order = [rootInode];
  const parents = new Map<PlannedInode, PlannedInode>([[rootInode, rootInode]]);
  // `order` doubles as the breadth-first queue: directories are expanded as the cursor reaches them.
  for (let cursor = 0; cursor < order.length; cursor++) {
    const dir = order[cursor]!;
    if (dir.node.kind !== 'directory') continue;
    for (const [nameBytes, child, childPath] of sortedChildren(dir.node, dir.path)) {
      let inode = planned.get(child);
      if (inode === undefined) {
        inode = newInode(child, childPath);
        planned.set(child, inode);
        order.push(inode);
      } else if (child.kind === 'directory') {
        throw new InvalidImageError(
          `${childPath}: the directory ${inode.path} appears a second time (hard-linked directory or cycle)`,
        );
      }
      if (child.kind === 'directory') {
        parents.set(inode, dir);
        dir.nlink += 1; // the subdirectory's `..`
      } else {
        inode.nlink += 1;
      }
      dir.entries.push({ name: nameBytes, target: inode });
    }
    addDotEntries(dir, parents.get(dir)!);
  }
  return order;
}

function newInode(node: TreeNode, path: string): PlannedInode {
  checkNode(node, path);
  const isDirectory = node.kind === 'directory';
  return {
    node,
    path,
    nlink: isDirectory ? 2 : 0, // a directory: its name (or the root's `..`) and `.`; others: one per name
    entries: [],
    xattrIbody: encodeXattrs(node, path),
    dataSize: node.kind === 'symlink' ? Buffer.byteLength(node.target, 'utf8') : 0,
  };
}

function encodeXattrs(node: TreeNode, path: string): Buffer {
  try {
    return encodeXattrIbody(node.xattrs);
  } catch (err) {
    if (err instanceof XattrError) throw new InvalidImageError(`${path}: ${err.message}`);
    throw err;
  }
}

function sortedChildren(dir: DirectoryNode, path: string): Array<[Buffer, TreeNode, string]> {
  const children: Array<[Buffer, TreeNode, string]> = [];
  for (const [name, child] of dir.children) {
    children.push([encodeName(name, path), child, path === '/' ? `/${name}` : `${path}/${name}`]);
  }
  return children.sort((a, b) => Buffer.compare(a[0], b[0]));
}

/** Adds `.` and `..` in their byte-order places and sizes the directory data. */
function addDotEntries(dir: PlannedInode, parent: PlannedInode): void {
  const entries = [{ name: DOT, target: dir }, { name: DOT_DOT, target: parent }, ...dir.entries];
  dir.entries = entries.sort((a, b) => Buffer.compare(a.name, b.name));
  dir.dataSize = directorySize(dir.entries.map((e) => e.name.length));
}
