/**
 * `encodeBootstrap`: an `ImageBootstrap` as the bytes of a Damselfly bootstrap — an EROFS image
 * (4 KiB blocks) the kernel mounts with one `device=` per blob, carrying our extension header and
 * tables in places the kernel never reads. Pure and deterministic. Layout: docs/format.md.
 *
 *   block 0     boot area | superblock @1024 | extension header @1152 | device table @1408 (may spill)
 *   4 KiB-aligned: blob table | chunk table | prefetch table
 *   meta_blkaddr: inodes (nid 0 unused, root first, breadth-first)
 *   then: directory and symlink data blocks
 */

import {
  BLOB_ENTRY_SIZE,
  blobDigestHex,
  CHUNK_ENTRY_SIZE,
  PREFETCH_ENTRY_SIZE,
  writeBlobRecord,
  writeChunkRecord,
  writePrefetchRecord,
} from './damselfly-tables.js';
import {
  DEVICE_SLOT_SIZE,
  EROFS_BLOCK_SIZE,
  EROFS_BLOCK_SIZE_BITS,
  FEATURE_COMPAT_DAMSELFLY,
  FEATURE_INCOMPAT_CHUNKED_FILE,
  FEATURE_INCOMPAT_DEVICE_TABLE,
  INODE_SLOT_SIZE,
  MAX_PATH_LENGTH,
  NULL_ADDR,
} from './erofs-layout.js';
import { InvalidImageError } from './errors.js';
import {
  CHUNK_DIGEST_SHA256,
  compressorMaskOf,
  EXTENSION_AREA_SIZE,
  EXTENSION_HEADER_SIZE_V1,
  EXTENSION_OFFSET,
  EXTENSION_VERSION_MAJOR,
  EXTENSION_VERSION_MINOR,
  type ExtensionHeader,
  writeExtensionHeader,
} from './extension-header.js';
import { type PlannedInode, planInodes } from './inode-plan.js';
import { writeInode } from './inode-writer.js';
import { layOutMetadata, type MetadataLayout } from './metadata-layout.js';
import { writeDeviceSlot, writeSuperblock } from './superblock.js';
import { checkBlobs, checkChunkSize, checkChunks } from './table-validation.js';
import type { ImageBootstrap, TreeNode } from './tree.js';

/** Byte offset of the device table: right after the 256-byte extension area. */
export const DEVICE_TABLE_OFFSET = EXTENSION_OFFSET + EXTENSION_AREA_SIZE;

/** Where each part of the bootstrap goes (byte offsets, or block numbers where named so). */
interface Regions {
  blobTable: number;
  chunkTable: number;
  prefetchTable: number;
  metaBlkaddr: number;
  firstDataBlock: number;
  totalBlocks: number;
}

export function encodeBootstrap(image: ImageBootstrap): Buffer {
  checkChunkSize(image.chunkSize);
  checkBlobs(image.blobs);
  checkChunks(image.chunks, image.blobs, image.chunkSize);
  const inodes = planInodes(image.root);
  const meta = layOutMetadata(inodes, image.chunkSize);
  const nids = new Map(inodes.map((inode, i) => [inode, meta.placements[i]!.offset / INODE_SLOT_SIZE]));
  const prefetchNids = resolvePrefetch(image, inodes, nids);
  const regions = layOutRegions(image, meta);

  const out = Buffer.alloc(regions.totalBlocks * EROFS_BLOCK_SIZE);
  writeBlock0(out, image, regions, inodes.length, nids.get(inodes[0]!)!);
  writeTables(out, image, regions, prefetchNids);
  const ctx = { out, metaStart: regions.metaBlkaddr * EROFS_BLOCK_SIZE, image, nids };
  let dataBlock = regions.firstDataBlock;
  inodes.forEach((inode, i) => {
    const placement = meta.placements[i]!;
    writeInode(ctx, inode, placement, i, dataBlock);
    dataBlock += placement.dataBlocks;
  });
  return out;
}

function layOutRegions(image: ImageBootstrap, meta: MetadataLayout): Regions {
  const deviceTableEnd = DEVICE_TABLE_OFFSET + image.blobs.length * DEVICE_SLOT_SIZE;
  const blobTable = roundUpToBlock(deviceTableEnd);
  const chunkTable = blobTable + roundUpToBlock(image.blobs.length * BLOB_ENTRY_SIZE);
  const prefetchTable = chunkTable + roundUpToBlock(image.chunks.length * CHUNK_ENTRY_SIZE);
  const metaStart = prefetchTable + roundUpToBlock(image.prefetch.length * PREFETCH_ENTRY_SIZE);
  const metaBlkaddr = metaStart / EROFS_BLOCK_SIZE;
  const firstDataBlock = metaBlkaddr + meta.size / EROFS_BLOCK_SIZE;
  const totalBlocks = firstDataBlock + meta.placements.reduce((sum, p) => sum + p.dataBlocks, 0);
  const blobBlocks = image.blobs.reduce((sum, b) => sum + b.uncompressedSize / EROFS_BLOCK_SIZE, 0);
  // Block addresses are u32, and the device slots map every blob after the bootstrap (flatdev).
  if (totalBlocks + blobBlocks >= NULL_ADDR) {
    throw new InvalidImageError(
      `the bootstrap (${totalBlocks} blocks) and its blobs exceed 2^32 blocks of 4 KiB`,
    );
  }
  return { blobTable, chunkTable, prefetchTable, metaBlkaddr, firstDataBlock, totalBlocks };
}

function writeBlock0(
  out: Buffer,
  image: ImageBootstrap,
  regions: Regions,
  inos: number,
  rootNid: number,
): void {
  const hasBlobs = image.blobs.length > 0;
  writeSuperblock(out, {
    magic: 0,
    checksum: 0,
    featureCompat: FEATURE_COMPAT_DAMSELFLY,
    blkszbits: EROFS_BLOCK_SIZE_BITS,
    extslots: 0,
    rootNid,
    inos,
    buildTime: 0,
    buildTimeNsec: 0,
    blocks: regions.totalBlocks,
    metaBlkaddr: regions.metaBlkaddr,
    xattrBlkaddr: 0,
    uuid: Buffer.alloc(16),
    volumeName: Buffer.alloc(16),
    featureIncompat: FEATURE_INCOMPAT_CHUNKED_FILE | (hasBlobs ? FEATURE_INCOMPAT_DEVICE_TABLE : 0),
    availableComprAlgs: 0,
    extraDevices: image.blobs.length,
    devtSlotoff: hasBlobs ? DEVICE_TABLE_OFFSET / DEVICE_SLOT_SIZE : 0,
    dirblkbits: 0,
  });
  writeExtensionHeader(out, extensionHeaderOf(image, regions));
  writeDeviceTable(out, image, regions.totalBlocks);
}

function extensionHeaderOf(image: ImageBootstrap, regions: Regions): ExtensionHeader {
  return {
    versionMajor: EXTENSION_VERSION_MAJOR,
    versionMinor: EXTENSION_VERSION_MINOR,
    headerSize: EXTENSION_HEADER_SIZE_V1,
    incompatFlags: 0,
    compatFlags: 0,
    chunkSize: image.chunkSize,
    chunkDigestAlgorithm: CHUNK_DIGEST_SHA256,
    compressorMask: compressorMaskOf(image.blobs.map((b) => b.compressor)),
    blobTable: { offset: regions.blobTable, count: image.blobs.length, entrySize: BLOB_ENTRY_SIZE },
    chunkTable: { offset: regions.chunkTable, count: image.chunks.length, entrySize: CHUNK_ENTRY_SIZE },
    prefetchTable: {
      offset: regions.prefetchTable,
      count: image.prefetch.length,
      entrySize: PREFETCH_ENTRY_SIZE,
    },
  };
}

/**
 * One slot per blob: tag = the digest's hex, blocks = its uncompressed layout, and a unified
 * address right after the previous device so a mount without `device=` (flatdev) of the
 * concatenation bootstrap + blobs still reads the right bytes.
 */
function writeDeviceTable(out: Buffer, image: ImageBootstrap, bootstrapBlocks: number): void {
  let mappedBlkaddr = bootstrapBlocks;
  image.blobs.forEach((blob, i) => {
    const blocks = blob.uncompressedSize / EROFS_BLOCK_SIZE;
    writeDeviceSlot(out, DEVICE_TABLE_OFFSET + i * DEVICE_SLOT_SIZE, {
      tag: blobDigestHex(blob.digest),
      blocks,
      mappedBlkaddr,
    });
    mappedBlkaddr += blocks;
  });
}

function writeTables(out: Buffer, image: ImageBootstrap, regions: Regions, prefetchNids: number[]): void {
  for (const [i, blob] of image.blobs.entries()) {
    writeBlobRecord(out, regions.blobTable + i * BLOB_ENTRY_SIZE, blob);
  }
  for (const [i, chunk] of image.chunks.entries()) {
    writeChunkRecord(out, regions.chunkTable + i * CHUNK_ENTRY_SIZE, chunk);
  }
  for (const [i, nid] of prefetchNids.entries()) {
    writePrefetchRecord(out, regions.prefetchTable + i * PREFETCH_ENTRY_SIZE, nid);
  }
}

/**
 * The nid of each prefetch path. The table stores nids, so a path reads back as the node's first
 * path (breadth-first, name order): that path must fit in PATH_MAX.
 */
function resolvePrefetch(
  image: ImageBootstrap,
  inodes: PlannedInode[],
  nids: Map<PlannedInode, number>,
): number[] {
  if (!Array.isArray(image.prefetch)) throw new InvalidImageError('prefetch is not an array');
  const byNode = new Map<TreeNode, PlannedInode>(inodes.map((inode) => [inode.node, inode]));
  return image.prefetch.map((path) => {
    const inode = byNode.get(lookUpPath(image, path))!;
    if (Buffer.byteLength(inode.path) > MAX_PATH_LENGTH) {
      throw new InvalidImageError(
        `prefetch path ${JSON.stringify(path)}: ${inode.path} is longer than ${MAX_PATH_LENGTH} bytes`,
      );
    }
    return nids.get(inode)!;
  });
}

function lookUpPath(image: ImageBootstrap, path: string): TreeNode {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new InvalidImageError(`prefetch path ${JSON.stringify(path)} is not absolute`);
  }
  let node: TreeNode = image.root;
  for (const name of path.split('/').filter((part) => part !== '')) {
    const child: TreeNode | undefined = node.kind === 'directory' ? node.children.get(name) : undefined;
    if (child === undefined)
      throw new InvalidImageError(`prefetch path ${JSON.stringify(path)} is not in the image`);
    node = child;
  }
  return node;
}

function roundUpToBlock(n: number): number {
  return Math.ceil(n / EROFS_BLOCK_SIZE) * EROFS_BLOCK_SIZE;
}
