/**
 * FUSE node ids for the nodes of a decoded bootstrap: id 1 is the root (FUSE's fixed root id), every
 * other node's id is its EROFS nid, and `st_ino` is the nid for all of them (root included), as the
 * kernel's EROFS driver reports. Link counts and per-node attributes are derived once: the tree is
 * immutable for the life of the mount.
 */
import type { Attr, InodeNumber } from '../fuse/index.js';
import type { DecodedBootstrap, DirectoryNode, TreeNode } from '../image/format/index.js';
import { ImageMountError } from './errors.js';
import { attributesOf } from './node-attributes.js';

export const FUSE_ROOT_ID = 1;

export class InodeTable {
  private readonly nodes: Map<number, TreeNode>;
  private readonly idOf = new Map<TreeNode, number>();
  private readonly links: Map<TreeNode, number>;
  private readonly parents: Map<DirectoryNode, DirectoryNode>;
  private readonly attrs = new Map<number, Attr>();
  readonly root: DirectoryNode;
  readonly rootNid: number;

  constructor(decoded: DecodedBootstrap) {
    this.root = decoded.image.root;
    this.rootNid = decoded.nidOf.get(this.root)!;
    const clash = decoded.nodeByNid.get(FUSE_ROOT_ID);
    if (clash !== undefined && clash !== this.root) {
      throw new ImageMountError('ELAYOUT', `nid ${FUSE_ROOT_ID} is not the root; the image cannot be served`);
    }
    this.nodes = new Map(decoded.nodeByNid);
    this.nodes.delete(this.rootNid);
    this.nodes.set(FUSE_ROOT_ID, this.root);
    for (const [id, node] of this.nodes) this.idOf.set(node, id);
    ({ links: this.links, parents: this.parents } = linkTree(this.root));
  }

  get size(): number {
    return this.nodes.size;
  }

  /** The node with FUSE id `ino`, or undefined (a stale or foreign id). */
  node(ino: InodeNumber): TreeNode | undefined {
    return typeof ino === 'number' ? this.nodes.get(ino) : undefined;
  }

  idOfNode(node: TreeNode): number {
    return this.idOf.get(node)!;
  }

  /** The directory holding `dir` (the root's parent is the root). */
  parentOf(dir: DirectoryNode): DirectoryNode {
    return this.parents.get(dir) ?? this.root;
  }

  /** The EROFS nid: what `st_ino` shows. */
  nidOf(ino: number): number {
    return ino === FUSE_ROOT_ID ? this.rootNid : ino;
  }

  attributes(ino: number): Attr {
    let attr = this.attrs.get(ino);
    if (attr === undefined) {
      const node = this.nodes.get(ino)!;
      attr = attributesOf(node, this.nidOf(ino), this.links.get(node) ?? 1);
      this.attrs.set(ino, attr);
    }
    return attr;
  }
}

/**
 * Names referencing each node (a directory has 2 + its subdirectories: its `.` and each `..`), and
 * each directory's parent.
 */
export function linkTree(root: DirectoryNode): {
  links: Map<TreeNode, number>;
  parents: Map<DirectoryNode, DirectoryNode>;
} {
  const links = new Map<TreeNode, number>([[root, 2]]);
  const parents = new Map<DirectoryNode, DirectoryNode>();
  const queue: DirectoryNode[] = [root];
  for (let cursor = 0; cursor < queue.length; cursor++) {
    const dir = queue[cursor]!;
    for (const child of dir.children.values()) {
      if (child.kind === 'directory') {
        links.set(child, 2);
        links.set(dir, links.get(dir)! + 1);
        parents.set(child, dir);
        queue.push(child);
      } else {
        links.set(child, (links.get(child) ?? 0) + 1);
      }
    }
  }
  return { links, parents };
}
