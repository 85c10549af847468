/**
 * Directory contents as FUSE sees them: `.`, `..`, then the children in the image's (byte) order,
 * each at a fixed position, so a READDIR cookie (position + 1) stays valid for the life of the mount.
 * Built once per directory on first listing. Lookups by name go straight to the directory's `Map`.
 */
import type { DirectoryNode, TreeNode } from '../image/format/index.js';

export interface ListedEntry {
  name: Buffer;
  node: TreeNode;
}

const DOT = Buffer.from('.');
const DOT_DOT = Buffer.from('..');

export class DirectoryListings {
  private readonly listings = new WeakMap<DirectoryNode, readonly ListedEntry[]>();

  entries(dir: DirectoryNode, parent: DirectoryNode): readonly ListedEntry[] {
    let listing = this.listings.get(dir);
    if (listing === undefined) {
      listing = [
        { name: DOT, node: dir },
        { name: DOT_DOT, node: parent },
        ...[...dir.children].map(([name, node]) => ({ name: Buffer.from(name), node })),
      ];
      this.listings.set(dir, listing);
    }
    return listing;
  }
}

/**
 * The child called `name` (raw bytes from the kernel). Image names are valid UTF-8, so bytes that do
 * not round-trip through UTF-8 name nothing (rather than matching a name holding U+FFFD).
 */
export function childNamed(dir: DirectoryNode, name: Buffer): TreeNode | undefined {
  const text = name.toString('utf8');
  const child = dir.children.get(text);
  if (child === undefined) return undefined;
  return text.includes('\uFFFD') && !Buffer.from(text).equals(name) ? undefined : child;
}
