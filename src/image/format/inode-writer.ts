/**
 * Third pass of the writer: the bytes of each placed inode (extended, 64 bytes), its xattr ibody,
 * its chunk indexes or inline tail, and its directory/symlink data blocks.
 */

import { encodeDirectory } from './directory-codec.js';
import {
  CHUNK_INDEX,
  CHUNK_INDEX_SIZE,
  chunkFormatOf,
  EROFS_BLOCK_SIZE,
  EXTENDED_INODE_SIZE,
  encodeDevice,
  INODE,
  inodeFormat,
  NULL_ADDR,
} from './erofs-layout.js';
import { InvalidImageError } from './errors.js';
import type { PlannedInode } from './inode-plan.js';
import type { InodePlacement } from './metadata-layout.js';
import { fileTypeOf, typeBitsOf } from './node-kinds.js';
import { chunkCountOf, chunkLength } from './table-validation.js';
import type { FileNode, ImageBootstrap, TreeNode } from './tree.js';
import { icountOf } from './xattr-codec.js';

export interface InodeWriteContext {
  out: Buffer;
  /** Byte offset of the metadata area in `out`. */
  metaStart: number;
  image: ImageBootstrap;
  nids: Map<PlannedInode, number>;
}

/** Writes inode `index` of the plan; `firstDataBlock` is where its data blocks go (if any). */
export function writeInode(
  ctx: InodeWriteContext,
  inode: PlannedInode,
  placement: InodePlacement,
  index: number,
  firstDataBlock: number,
): void {
  const at = ctx.metaStart + placement.offset;
  const data = inodeData(ctx, inode);
  writeInodeCore(ctx.out, at, inode, placement, {
    ino: index + 1,
    iu: iUnionOf(ctx, inode.node, placement, firstDataBlock),
    size: inode.node.kind === 'file' ? inode.node.size : inode.dataSize,
  });
  inode.xattrIbody.copy(ctx.out, at + EXTENDED_INODE_SIZE);
  if (placement.chunkCount > 0) {
    writeChunkIndexes(ctx, inode.node as FileNode, inode.path, ctx.metaStart + placement.chunkIndexOffset);
  }
  const blockBytes = placement.dataBlocks * EROFS_BLOCK_SIZE;
  data.copy(ctx.out, firstDataBlock * EROFS_BLOCK_SIZE, 0, Math.min(blockBytes, data.length));
  if (placement.inlineBytes > 0)
    data.copy(ctx.out, at + EXTENDED_INODE_SIZE + inode.xattrIbody.length, blockBytes);
}

function writeInodeCore(
  out: Buffer,
  at: number,
  inode: PlannedInode,
  placement: InodePlacement,
  fields: { ino: number; iu: number; size: number },
): void {
  const { node } = inode;
  out.writeUInt16LE(inodeFormat(placement.layout), at + INODE.format);
  out.writeUInt16LE(icountOf(inode.xattrIbody), at + INODE.xattrIcount);
  out.writeUInt16LE(typeBitsOf(node.kind) | node.mode, at + INODE.mode);
  out.writeBigUInt64LE(BigInt(fields.size), at + INODE.size);
  out.writeUInt32LE(fields.iu, at + INODE.u);
  out.writeUInt32LE(fields.ino >>> 0, at + INODE.ino);
  out.writeUInt32LE(node.uid, at + INODE.uid);
  out.writeUInt32LE(node.gid, at + INODE.gid);
  out.writeBigInt64LE(BigInt(node.mtimeSec), at + INODE.mtime);
  out.writeUInt32LE(node.mtimeNsec, at + INODE.mtimeNsec);
  out.writeUInt32LE(inode.nlink, at + INODE.nlink);
}

/** `i_u`: chunk format, first data block, device number, or 0 / NULL when there is nothing. */
function iUnionOf(
  ctx: InodeWriteContext,
  node: TreeNode,
  placement: InodePlacement,
  firstDataBlock: number,
): number {
  switch (node.kind) {
    case 'file':
      return placement.chunkCount > 0 ? chunkFormatOf(ctx.image.chunkSize) : NULL_ADDR;
    case 'directory':
    case 'symlink':
      return placement.dataBlocks > 0 ? firstDataBlock : NULL_ADDR;
    case 'char':
    case 'block':
      return encodeDevice(node.rdevMajor, node.rdevMinor);
    default:
      return 0;
  }
}

function inodeData(ctx: InodeWriteContext, inode: PlannedInode): Buffer {
  const { node } = inode;
  if (node.kind === 'symlink') return Buffer.from(node.target, 'utf8');
  if (node.kind !== 'directory') return Buffer.alloc(0);
  return encodeDirectory(
    inode.entries.map(({ name, target }) => ({
      name,
      nid: ctx.nids.get(target)!,
      fileType: fileTypeOf(target.node.kind),
    })),
  );
}

function writeChunkIndexes(ctx: InodeWriteContext, file: FileNode, path: string, at: number): void {
  const { chunks, chunkSize } = ctx.image;
  const expected = chunkCountOf(file.size, chunkSize);
  if (file.chunks.length !== expected) {
    throw new InvalidImageError(
      `${path}: ${file.chunks.length} chunk entries, but a ${file.size}-byte file has ${expected} chunks of ${chunkSize}`,
    );
  }
  file.chunks.forEach((ref, i) => {
    const entryAt = at + i * CHUNK_INDEX_SIZE;
    if (ref === null) {
      ctx.out.writeUInt32LE(NULL_ADDR, entryAt + CHUNK_INDEX.blkaddr);
      return;
    }
    const chunk = Number.isInteger(ref) ? chunks[ref] : undefined;
    if (chunk === undefined) {
      throw new InvalidImageError(
        `${path}: chunk ${i} refers to chunk ${ref}, but the image has ${chunks.length}`,
      );
    }
    const length = chunkLength(file.size, chunkSize, i);
    if (chunk.uncompressedSize !== length) {
      throw new InvalidImageError(
        `${path}: chunk ${i} is ${length} bytes, but chunk ${ref} it refers to holds ${chunk.uncompressedSize}`,
      );
    }
    ctx.out.writeUInt16LE(chunk.blobIndex + 1, entryAt + CHUNK_INDEX.deviceId);
    ctx.out.writeUInt32LE(chunk.uncompressedOffset / EROFS_BLOCK_SIZE, entryAt + CHUNK_INDEX.blkaddr);
  });
}
