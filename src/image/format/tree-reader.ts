/**
 * Reader, third part: walks the directory tree breadth-first from the root nid, decoding each
 * inode once (hard links resolve to the same node object), and checks what fsck.erofs checks of
 * directories — strictly ascending names across blocks, exactly one `.` (self) and one `..`
 * (parent), file types matching the inodes — plus that no directory is reached twice (cycles) and
 * that link counts agree with the tree.
 */

import { type DirectoryEntry, DirectoryError, decodeDirectoryBlock } from './directory-codec.js';
import { EROFS_BLOCK_SIZE } from './erofs-layout.js';
import { check, fail } from './format-check.js';
import type { BootstrapHeader } from './header-reader.js';
import { type DecodedInode, InodeReader } from './inode-reader.js';
import { fileTypeOf } from './node-kinds.js';
import { decodeStrictUtf8 } from './strict-utf8.js';
import type { DirectoryNode, TreeNode } from './tree.js';

export interface DecodedTree {
  root: DirectoryNode;
  nidOf: Map<TreeNode, number>;
  nodeByNid: Map<number, TreeNode>;
  /** How each inode other than the root was first reached (breadth-first, name order). */
  firstName: Map<number, { parentNid: number; name: string }>;
}

interface NamedEntry {
  name: string;
  nid: number;
  fileType: number;
}

const DOT = Buffer.from('.');
const DOT_DOT = Buffer.from('..');

export function readTree(bytes: Buffer, header: BootstrapHeader): DecodedTree {
  const reader = new InodeReader(bytes, header);
  const rootNid = header.superblock.rootNid;
  const root = reader.read(rootNid);
  check(root.node.kind === 'directory', () => `root inode nid ${rootNid} is not a directory`);
  const decoded = new Map<number, DecodedInode>([[rootNid, root]]);
  const parentOf = new Map<number, number>([[rootNid, rootNid]]);
  const firstName = new Map<number, { parentNid: number; name: string }>();
  const links = new Map<number, number>();
  const queue = [root];
  for (let cursor = 0; cursor < queue.length; cursor++) {
    const dir = queue[cursor]!;
    const children = (dir.node as DirectoryNode).children;
    for (const entry of readEntries(dir, parentOf.get(dir.nid)!)) {
      let child = decoded.get(entry.nid);
      if (child === undefined) {
        child = reader.read(entry.nid);
        decoded.set(entry.nid, child);
        firstName.set(entry.nid, { parentNid: dir.nid, name: entry.name });
        if (child.node.kind === 'directory') {
          parentOf.set(entry.nid, dir.nid);
          queue.push(child);
        }
      } else if (child.node.kind === 'directory') {
        fail(
          `directory nid ${dir.nid}: entry ${JSON.stringify(entry.name)} reaches directory nid ${entry.nid} a second time (cycle or hard-linked directory)`,
        );
      }
      const expectedType = fileTypeOf(child.node.kind);
      check(
        entry.fileType === expectedType,
        () =>
          `directory nid ${dir.nid}: entry ${JSON.stringify(entry.name)} has file type ${entry.fileType}, but nid ${entry.nid} is a ${child.node.kind} (${expectedType})`,
      );
      children.set(entry.name, child.node);
      const counted = child.node.kind === 'directory' ? dir.nid : entry.nid;
      links.set(counted, (links.get(counted) ?? 0) + 1);
    }
  }
  checkLinkCounts(decoded, links);
  check(
    header.superblock.inos === decoded.size,
    () => `superblock: ${header.superblock.inos} inodes, but the tree has ${decoded.size}`,
  );
  const nodeByNid = new Map([...decoded].map(([nid, inode]) => [nid, inode.node]));
  const nidOf = new Map([...decoded].map(([nid, inode]) => [inode.node, nid]));
  return { root: root.node as DirectoryNode, nidOf, nodeByNid, firstName };
}

/**
 * `links` counts, for directories, their subdirectories and, for other inodes, their names:
 * directories must have nlink 2 + subdirectories, others one link per name.
 */
function checkLinkCounts(decoded: Map<number, DecodedInode>, links: Map<number, number>): void {
  for (const [nid, inode] of decoded) {
    const expected = (links.get(nid) ?? 0) + (inode.node.kind === 'directory' ? 2 : 0);
    check(
      inode.nlink === expected,
      () => `inode nid ${nid}: nlink ${inode.nlink}, but the tree gives it ${expected}`,
    );
  }
}

/** The directory's entries other than `.` and `..`, after checking order and the dot entries. */
function readEntries(dir: DecodedInode, parentNid: number): NamedEntry[] {
  const data = dir.directoryData;
  const named: NamedEntry[] = [];
  let previous: Buffer | undefined;
  let dots = 0;
  for (let block = 0; block * EROFS_BLOCK_SIZE < data.length; block++) {
    const where = `directory nid ${dir.nid} block ${block}`;
    for (const entry of decodeBlock(
      data.subarray(block * EROFS_BLOCK_SIZE, (block + 1) * EROFS_BLOCK_SIZE),
      where,
    )) {
      check(
        previous === undefined || Buffer.compare(previous, entry.name) < 0,
        () =>
          `${where}: names are not in strictly ascending byte order at ${JSON.stringify(entry.name.toString('latin1'))}`,
      );
      previous = entry.name;
      if (entry.name.equals(DOT) || entry.name.equals(DOT_DOT)) {
        const expected = entry.name.length === 1 ? dir.nid : parentNid;
        check(
          entry.nid === expected,
          () => `${where}: '${entry.name}' points at nid ${entry.nid}, expected ${expected}`,
        );
        check(
          entry.fileType === fileTypeOf('directory'),
          () => `${where}: '${entry.name}' has file type ${entry.fileType}`,
        );
        dots += 1;
        continue;
      }
      named.push({ name: decodeName(entry.name, where), nid: entry.nid, fileType: entry.fileType });
    }
  }
  check(dots === 2, () => `directory nid ${dir.nid}: '.' or '..' is missing`);
  return named;
}

function decodeBlock(block: Buffer, where: string): DirectoryEntry[] {
  try {
    return decodeDirectoryBlock(block);
  } catch (err) {
    if (err instanceof DirectoryError) fail(`${where}: ${err.message}`);
    throw err;
  }
}

function decodeName(name: Buffer, where: string): string {
  const text = decodeStrictUtf8(name);
  if (text === undefined)
    fail(`${where}: name ${JSON.stringify(name.toString('latin1'))} is not valid UTF-8`);
  return text;
}
