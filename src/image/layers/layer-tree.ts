import type { DeviceNode, FileNode, InodeAttributes, SpecialNode, SymlinkNode } from '../format/index.js';
import { copyAttributes, overlayAttributes } from './attributes.js';
import { shown } from './entry-path.js';
import { LayerFormatError } from './errors.js';

/**
 * One layer parsed but not applied: the entries it writes, the lower entries it deletes, and the hard
 * links that point below it. Built by `readLayer`, consumed by `applyLayer` (which moves its nodes
 * into the merged tree: apply a LayerTree once).
 */
export interface LayerTree {
  root: LayerDirectory;
  /** Hard links whose target was not written earlier in this layer, in archive order. */
  lowerLinks: LayerLowerLink[];
  stats: LayerStats;
}

export type LeafNode = FileNode | SymlinkNode | DeviceNode | SpecialNode;

export interface LayerDirectory {
  kind: 'directory';
  /** From the layer's own entry for the directory; null when only its children imply it. */
  attributes: InodeAttributes | null;
  /**
   * Set (to the entry path that did it) when a child arrived before the directory's own entry, or
   * it has none: such a directory must land on a lower directory or on nothing. Over a lower
   * symlink it would mean writing through the symlink; over a file, containerd fails with ENOTDIR.
   */
  impliedBy: string | null;
  /**
   * The parent's own entry as far as the layer had declared it when this directory was implied
   * (null: not declared yet). mkdir gives a new directory the group of a setgid parent.
   */
  parentWhenImplied: ParentState | null;
  /**
   * False while the layer only puts whiteout or opaque markers in or below the directory: then it
   * only acts on a lower directory and is not created where there is none (deleting something that
   * does not exist is a no-op, also for its parents).
   */
  holdsEntries: boolean;
  /** Lower children are hidden: `.wh..wh..opq`, or the directory replaced a non-directory of this layer. */
  opaque: boolean;
  /** Lower children deleted by `.wh.NAME` markers. */
  whiteouts: Set<string>;
  children: Map<string, LayerEntry>;
}

export interface ParentState {
  mode: number;
  gid: number;
}

export interface LayerNode {
  kind: 'node';
  /** Several names holding the same object are hard links. */
  node: LeafNode;
}

/** A hard link to a file of the lower layers, resolved by `applyLayer`. */
export interface LayerLowerLink {
  kind: 'lower-link';
  /** The link entry's path as written, for messages. */
  entryPath: string;
  /** Normalized target path components. */
  target: string[];
  /** The link entry's own attributes; containerd applies them to the shared inode. */
  attributes: InodeAttributes;
}

export type LayerEntry = LayerDirectory | LayerNode | LayerLowerLink;

export interface LayerStats {
  /** Tar entries (meta headers not counted). */
  entries: number;
  /** Regular files handed to the content sink, and their bytes. */
  regularFiles: number;
  contentBytes: number;
  hardLinks: number;
  whiteouts: number;
  opaqueMarkers: number;
  /** Entries skipped: unknown typeflags (key `typeflag X`) and entries naming the root (`root`). */
  skipped: Record<string, number>;
  /** Bytes after the end-of-archive marker (ignored). */
  trailingBytes: number;
}

export function newLayerDirectory(
  attributes: InodeAttributes | null,
  impliedBy: string | null,
): LayerDirectory {
  return {
    kind: 'directory',
    attributes,
    impliedBy,
    parentWhenImplied: null,
    holdsEntries: attributes !== null,
    opaque: false,
    whiteouts: new Set(),
    children: new Map(),
  };
}

/** Builds a LayerTree entry by entry, with same-layer semantics: a later entry for a path wins. */
export class LayerTreeBuilder {
  readonly root = newLayerDirectory(null, null);
  readonly lowerLinks: LayerLowerLink[] = [];

  /**
   * The directory an entry goes into, implying missing ones; refuses symlinks and non-directories.
   * `forMarker`: the entry is a whiteout or opaque marker, which does not make directories hold entries.
   */
  parentOf(components: string[], entryPath: string, forMarker: boolean): LayerDirectory {
    let directory = this.root;
    for (const [depth, name] of components.entries()) {
      let child = directory.children.get(name);
      if (child === undefined) {
        child = newLayerDirectory(null, entryPath);
        const declared = directory.attributes;
        child.parentWhenImplied = declared && { mode: declared.mode, gid: declared.gid };
        directory.children.set(name, child);
      }
      if (child.kind !== 'directory')
        throw throughNonDirectory(entryPath, components.slice(0, depth + 1), child);
      if (!forMarker) child.holdsEntries = true;
      directory = child;
    }
    return directory;
  }

  putDirectory(parent: LayerDirectory, name: string, attributes: InodeAttributes): void {
    const existing = parent.children.get(name);
    if (existing?.kind === 'directory') {
      existing.holdsEntries = true;
      if (existing.attributes === null) existing.attributes = copyAttributes(attributes);
      else overlayAttributes(existing.attributes, attributes);
      return;
    }
    const directory = newLayerDirectory(attributes, null);
    // Replacing a non-directory this layer wrote: that one had already replaced whatever was below.
    directory.opaque = existing !== undefined;
    parent.children.set(name, directory);
  }

  putNode(parent: LayerDirectory, name: string, node: LeafNode): void {
    parent.children.set(name, { kind: 'node', node });
  }

  /**
   * A hard link resolves, as the tar is read, to what its target path holds at that point of the
   * archive: an earlier entry of this layer (same object), else the lower layers' file (resolved at
   * apply time). A target this layer has whited out or made opaque before the link is missing.
   */
  putHardLink(
    parent: LayerDirectory,
    name: string,
    target: string[],
    attributes: InodeAttributes,
    entryPath: string,
  ): void {
    const found = this.findLinkTarget(target, entryPath);
    if (found?.kind === 'node') {
      overlayAttributes(found.node, attributes);
      parent.children.set(name, found);
      return;
    }
    // A link to a link that points below points below too.
    const lowerTarget = found?.target ?? target;
    const link: LayerLowerLink = { kind: 'lower-link', entryPath, target: lowerTarget, attributes };
    this.lowerLinks.push(link);
    parent.children.set(name, link);
  }

  /** The entry of this layer the target names, or null when it names something of the lower layers. */
  private findLinkTarget(target: string[], entryPath: string): LayerNode | LayerLowerLink | null {
    let directory = this.root;
    for (const [depth, name] of target.entries()) {
      const child = directory.children.get(name);
      const isLast = depth === target.length - 1;
      if (child === undefined) {
        if (directory.opaque || directory.whiteouts.has(name)) throw missingLinkTarget(entryPath, target);
        return null;
      }
      if (child.kind === 'directory') {
        if (isLast) throw linkToDirectory(entryPath, target);
        directory = child;
        continue;
      }
      if (!isLast) throw throughNonDirectory(entryPath, target.slice(0, depth + 1), child);
      return child;
    }
    throw linkToDirectory(entryPath, target); // the empty target is the root
  }
}

function throughNonDirectory(
  entryPath: string,
  prefix: string[],
  entry: LayerNode | LayerLowerLink,
): LayerFormatError {
  const isSymlink = entry.kind === 'node' && entry.node.kind === 'symlink';
  return new LayerFormatError(
    isSymlink ? 'ESYMLINK_PARENT' : 'ENOTDIR',
    `layer entry "${shown(entryPath)}": "${shown(prefix.join('/'))}", written earlier in the same layer, is ${isSymlink ? 'a symlink' : 'not a directory'}`,
  );
}

export function missingLinkTarget(entryPath: string, target: string[]): LayerFormatError {
  return new LayerFormatError(
    'ELINK',
    `layer hard link "${shown(entryPath)}": target "${shown(target.join('/'))}" does not exist`,
  );
}

export function linkToDirectory(entryPath: string, target: string[]): LayerFormatError {
  return new LayerFormatError(
    'ELINK',
    `layer hard link "${shown(entryPath)}": target "${shown(target.join('/'))}" is a directory`,
  );
}
