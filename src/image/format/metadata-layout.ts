/**
 * Second pass of the writer: places every planned inode in the metadata area (32-byte slots,
 * nid = offset / 32) and decides each one's data layout.
 *
 * - Slot 0 stays empty: an inode at nid 0 reads back as inode number 0, which glibc's readdir
 *   hides (no `.`/`..` under the root).
 * - An inode and its xattrs never straddle a block when they fit in one.
 * - Directories and symlinks keep their tail inline (FLAT_INLINE) when inode + xattrs + tail fit
 *   in one block, moving the inode to a fresh block if needed; otherwise FLAT_PLAIN.
 * - Non-empty regular files are CHUNK_BASED with the index array (8 bytes each) after the ibody.
 */

import {
  CHUNK_INDEX_SIZE,
  EROFS_BLOCK_SIZE,
  EXTENDED_INODE_SIZE,
  INODE_SLOT_SIZE,
  LAYOUT_CHUNK_BASED,
  LAYOUT_FLAT_INLINE,
  LAYOUT_FLAT_PLAIN,
} from './erofs-layout.js';
import type { PlannedInode } from './inode-plan.js';
import { chunkCountOf } from './table-validation.js';

export interface InodePlacement {
  /** Byte offset in the metadata area; nid = offset / 32. */
  offset: number;
  layout: number;
  /** Whole blocks of directory/symlink data stored in the bootstrap's data area. */
  dataBlocks: number;
  /** Bytes of data stored right after the inode and its xattrs (FLAT_INLINE). */
  inlineBytes: number;
  /** Chunk-based files: offset of the index array in the metadata area, and its length. */
  chunkIndexOffset: number;
  chunkCount: number;
}

export interface MetadataLayout {
  placements: InodePlacement[];
  /** Bytes of the metadata area, a multiple of the block size. */
  size: number;
}

export function layOutMetadata(inodes: readonly PlannedInode[], chunkSize: number): MetadataLayout {
  const placements: InodePlacement[] = [];
  let cursor = INODE_SLOT_SIZE;
  for (const inode of inodes) {
    const head = EXTENDED_INODE_SIZE + inode.xattrIbody.length;
    const shape = shapeOf(inode, head, chunkSize);
    const mustFit = head + shape.inlineBytes;
    if (mustFit <= EROFS_BLOCK_SIZE && (cursor % EROFS_BLOCK_SIZE) + mustFit > EROFS_BLOCK_SIZE) {
      cursor = roundUp(cursor, EROFS_BLOCK_SIZE);
    }
    const chunkIndexOffset = roundUp(cursor + head, CHUNK_INDEX_SIZE);
    placements.push({ ...shape, offset: cursor, chunkIndexOffset });
    const end =
      shape.chunkCount > 0 ? chunkIndexOffset + shape.chunkCount * CHUNK_INDEX_SIZE : cursor + mustFit;
    cursor = roundUp(end, INODE_SLOT_SIZE);
  }
  return { placements, size: roundUp(cursor, EROFS_BLOCK_SIZE) };
}

type Shape = Omit<InodePlacement, 'offset' | 'chunkIndexOffset'>;

function shapeOf(inode: PlannedInode, head: number, chunkSize: number): Shape {
  const { node, dataSize } = inode;
  if (node.kind === 'file') {
    const chunkCount = chunkCountOf(node.size, chunkSize);
    const layout = chunkCount > 0 ? LAYOUT_CHUNK_BASED : LAYOUT_FLAT_PLAIN;
    return { layout, dataBlocks: 0, inlineBytes: 0, chunkCount };
  }
  if (node.kind === 'directory' || node.kind === 'symlink') {
    const tail = dataSize % EROFS_BLOCK_SIZE;
    const fullBlocks = (dataSize - tail) / EROFS_BLOCK_SIZE;
    if (tail > 0 && head + tail <= EROFS_BLOCK_SIZE) {
      return { layout: LAYOUT_FLAT_INLINE, dataBlocks: fullBlocks, inlineBytes: tail, chunkCount: 0 };
    }
    return {
      layout: LAYOUT_FLAT_PLAIN,
      dataBlocks: Math.ceil(dataSize / EROFS_BLOCK_SIZE),
      inlineBytes: 0,
      chunkCount: 0,
    };
  }
  return { layout: LAYOUT_FLAT_PLAIN, dataBlocks: 0, inlineBytes: 0, chunkCount: 0 };
}

function roundUp(n: number, unit: number): number {
  return Math.ceil(n / unit) * unit;
}
