import { type DirectoryNode, newDirectory, type TreeNode } from '../format/index.js';
import { overlayAttributes } from './attributes.js';
import { shown } from './entry-path.js';
import { LayerFormatError } from './errors.js';
import {
  type LayerDirectory,
  type LayerLowerLink,
  type LayerTree,
  linkToDirectory,
  missingLinkTarget,
  type ParentState,
} from './layer-tree.js';

/**
 * Applies one layer onto the tree of the layers below it, with OCI semantics (whiteouts and opaque
 * markers hide lower entries only; a directory over a directory merges; anything else replaces),
 * mutating `lower`. All checks run before the first change: on error `lower` is untouched.
 */
export function applyLayer(lower: DirectoryNode, upper: LayerTree): void {
  const linkTargets = resolveLowerLinks(lower, upper.lowerLinks);
  checkDirectory(lower, upper.root, []);
  mergeDirectory(lower, upper.root, linkTargets, { mode: lower.mode, gid: lower.gid });
  for (const link of upper.lowerLinks) overlayAttributes(linkTargets.get(link)!, link.attributes);
}

/** The layers applied in order onto an empty root (mode 0755, root-owned, mtime 0). */
export function mergeLayers(layers: LayerTree[]): DirectoryNode {
  const root = newDirectory();
  for (const layer of layers) applyLayer(root, layer);
  return root;
}

/** Hard links to lower files name them as the lower tree is before this layer changes it. */
function resolveLowerLinks(root: DirectoryNode, links: LayerLowerLink[]): Map<LayerLowerLink, TreeNode> {
  const targets = new Map<LayerLowerLink, TreeNode>();
  for (const link of links) {
    let node: TreeNode = root;
    for (const [depth, name] of link.target.entries()) {
      if (node.kind !== 'directory')
        throw lowerNonDirectory(link.entryPath, link.target.slice(0, depth), node);
      const child = node.children.get(name);
      if (child === undefined) throw missingLinkTarget(link.entryPath, link.target);
      node = child;
    }
    if (node.kind === 'directory') throw linkToDirectory(link.entryPath, link.target);
    targets.set(link, node);
  }
  return targets;
}

/**
 * A directory the layer only implies must land on a lower directory or on nothing: over a lower
 * symlink, containerd would write through the link (we refuse); over a file it fails (ENOTDIR).
 */
function checkDirectory(lower: DirectoryNode | undefined, upper: LayerDirectory, path: string[]): void {
  for (const [name, entry] of upper.children) {
    if (entry.kind !== 'directory') continue;
    const below = upper.opaque || upper.whiteouts.has(name) ? undefined : lower?.children.get(name);
    if (entry.impliedBy !== null && below !== undefined && below.kind !== 'directory') {
      throw lowerNonDirectory(entry.impliedBy, [...path, name], below);
    }
    if (!entry.holdsEntries && below === undefined) continue; // markers for nothing: a no-op
    checkDirectory(below?.kind === 'directory' ? below : undefined, entry, [...path, name]);
  }
}

/** `lowerBefore`: the attributes `lower` had before this layer set its own. */
function mergeDirectory(
  lower: DirectoryNode,
  upper: LayerDirectory,
  linkTargets: Map<LayerLowerLink, TreeNode>,
  lowerBefore: ParentState,
): void {
  if (upper.opaque) lower.children.clear();
  for (const name of upper.whiteouts) lower.children.delete(name);
  for (const [name, entry] of upper.children) {
    if (entry.kind === 'node') {
      lower.children.set(name, entry.node);
    } else if (entry.kind === 'lower-link') {
      lower.children.set(name, linkTargets.get(entry)!);
    } else {
      const existing = lower.children.get(name);
      if (!entry.holdsEntries && existing?.kind !== 'directory') continue;
      const directory =
        existing?.kind === 'directory' ? existing : impliedDirectory(entry.parentWhenImplied ?? lowerBefore);
      const before = { mode: directory.mode, gid: directory.gid };
      if (entry.attributes !== null) overlayAttributes(directory, entry.attributes);
      lower.children.set(name, directory);
      mergeDirectory(directory, entry, linkTargets, before);
    }
  }
}

/**
 * What containerd's mkdir leaves for a directory a layer implies: 0755, root, and (the kernel's doing)
 * the group of a setgid parent, as the parent was at that point of the archive. Its mtime would be
 * the time of unpacking; ours is 0.
 */
function impliedDirectory(parent: ParentState): DirectoryNode {
  return newDirectory({ gid: parent.mode & SETGID ? parent.gid : 0 });
}

const SETGID = 0o2000;

function lowerNonDirectory(entryPath: string, prefix: string[], node: TreeNode): LayerFormatError {
  const isSymlink = node.kind === 'symlink';
  return new LayerFormatError(
    isSymlink ? 'ESYMLINK_PARENT' : 'ENOTDIR',
    `layer entry "${shown(entryPath)}": "${shown(prefix.join('/'))}" is ${isSymlink ? 'a symlink' : 'not a directory'} in the layers below`,
  );
}
