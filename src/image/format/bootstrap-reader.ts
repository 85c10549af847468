/**
 * `decodeBootstrap`: the bytes of a Damselfly bootstrap back into an `ImageBootstrap`, plus what
 * mounting and `image inspect` need (nids, superblock, extension header, device slots). Pure.
 *
 * Bootstraps arrive from registries and peers, so the input is hostile until proven otherwise:
 * every count and offset is checked against the buffer before use, the work is bounded by the
 * buffer's size, and anything wrong throws `BootstrapFormatError` naming the field and where.
 */

import { readPrefetchRecord } from './damselfly-tables.js';
import { MAX_PATH_LENGTH } from './erofs-layout.js';
import { BootstrapFormatError } from './errors.js';
import type { ExtensionHeader } from './extension-header.js';
import { check, fail } from './format-check.js';
import { readBootstrapHeader } from './header-reader.js';
import type { DeviceSlot, Superblock } from './superblock.js';
import type { ImageBootstrap, TreeNode } from './tree.js';
import { type DecodedTree, readTree } from './tree-reader.js';

export interface DecodedBootstrap {
  image: ImageBootstrap;
  /** The nid (EROFS inode number, also the kernel's st_ino) of every node. */
  nidOf: Map<TreeNode, number>;
  nodeByNid: Map<number, TreeNode>;
  /** `image.prefetch` as stored: nids (a path in `image.prefetch` is the first path reaching it). */
  prefetchNids: number[];
  superblock: Superblock;
  extension: ExtensionHeader;
  /** Device-table slots in blob order (slot k + 1 = blob k). */
  devices: DeviceSlot[];
}

export function decodeBootstrap(bytes: Buffer): DecodedBootstrap {
  if (!Buffer.isBuffer(bytes)) throw new BootstrapFormatError('bootstrap is not a Buffer');
  try {
    return decode(bytes);
  } catch (err) {
    if (err instanceof BootstrapFormatError) throw err;
    // A check this decoder lacks must still surface as a format error, never as a crash.
    throw new BootstrapFormatError(
      `malformed bootstrap (unexpected decoder failure: ${(err as Error)?.message})`,
      {
        cause: err,
      },
    );
  }
}

function decode(bytes: Buffer): DecodedBootstrap {
  const header = readBootstrapHeader(bytes);
  const tree = readTree(bytes, header);
  const prefetchNids = readPrefetchNids(bytes, header.extension);
  const image: ImageBootstrap = {
    root: tree.root,
    chunkSize: header.extension.chunkSize,
    blobs: header.blobs,
    chunks: header.chunks,
    prefetch: prefetchNids.map((nid, i) => pathOf(tree, nid, i)),
  };
  return {
    image,
    nidOf: tree.nidOf,
    nodeByNid: tree.nodeByNid,
    prefetchNids,
    superblock: header.superblock,
    extension: header.extension,
    devices: header.devices,
  };
}

function readPrefetchNids(bytes: Buffer, extension: ExtensionHeader): number[] {
  const { offset, count, entrySize } = extension.prefetchTable;
  const nids: number[] = [];
  for (let i = 0; i < count; i++) nids.push(readPrefetchRecord(bytes, offset + i * entrySize));
  return nids;
}

function pathOf(tree: DecodedTree, nid: number, index: number): string {
  check(tree.nodeByNid.has(nid), () => `prefetch entry ${index}: nid ${nid} is not an inode of the tree`);
  const names: string[] = [];
  let length = 0;
  for (let at = tree.firstName.get(nid); at !== undefined; at = tree.firstName.get(at.parentNid)) {
    names.push(at.name);
    length += Buffer.byteLength(at.name) + 1;
    if (length > MAX_PATH_LENGTH)
      fail(`prefetch entry ${index}: the path of nid ${nid} is longer than ${MAX_PATH_LENGTH} bytes`);
  }
  return `/${names.reverse().join('/')}`;
}
