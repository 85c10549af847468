/**
 * Reader, first part: block 0 (superblock, extension header, device table) and the Damselfly blob
 * and chunk tables, each checked against the buffer and against each other before anything is
 * allocated from their counts.
 */

import {
  BLOB_ENTRY_SIZE,
  CHUNK_ENTRY_SIZE,
  CHUNK_KNOWN_FLAGS,
  PREFETCH_ENTRY_SIZE,
  readBlobRecord,
  readChunkRecord,
} from './damselfly-tables.js';
import {
  DEVICE_SLOT_SIZE,
  EROFS_BLOCK_SIZE,
  EROFS_BLOCK_SIZE_BITS,
  EROFS_MAGIC,
  FEATURE_COMPAT_DAMSELFLY,
  FEATURE_COMPAT_SB_CHKSUM,
  FEATURE_INCOMPAT_CHUNKED_FILE,
  FEATURE_INCOMPAT_DEVICE_TABLE,
} from './erofs-layout.js';
import { InvalidImageError } from './errors.js';
import {
  CHUNK_DIGEST_SHA256,
  compressorMaskOf,
  EXTENSION_AREA_SIZE,
  EXTENSION_HEADER_SIZE_V1,
  EXTENSION_MAGIC,
  EXTENSION_OFFSET,
  EXTENSION_VERSION_MAJOR,
  type ExtensionHeader,
  readExtensionHeader,
  type TableLocation,
} from './extension-header.js';
import { check, checkRange, fail } from './format-check.js';
import { type DeviceSlot, readDeviceSlot, readSuperblock, type Superblock } from './superblock.js';
import { superblockChecksum } from './superblock-checksum.js';
import { checkBlobs, checkChunkSize, checkChunks } from './table-validation.js';
import type { BlobInfo, ChunkInfo } from './tree.js';

export interface BootstrapHeader {
  superblock: Superblock;
  extension: ExtensionHeader;
  devices: DeviceSlot[];
  blobs: BlobInfo[];
  chunks: ChunkInfo[];
  /** Chunk-table index by where the chunk starts: `chunkKey(blobIndex, blkaddr)`. */
  chunkAt: Map<number, number>;
}

export function chunkKey(blobIndex: number, blkaddr: number): number {
  return blobIndex * 2 ** 32 + blkaddr;
}

export function readBootstrapHeader(bytes: Buffer): BootstrapHeader {
  check(
    bytes.length >= EROFS_BLOCK_SIZE && bytes.length % EROFS_BLOCK_SIZE === 0,
    () => `bootstrap of ${bytes.length} bytes is not a whole number of 4096-byte blocks (truncated?)`,
  );
  const superblock = readSuperblock(bytes);
  checkSuperblock(superblock, bytes);
  const extension = readExtension(bytes);
  checkTableLayout(extension, superblock, bytes.length);
  const blobs = readBlobs(bytes, extension.blobTable);
  const chunks = readChunks(bytes, extension.chunkTable);
  asModelCheck(() => {
    checkBlobs(blobs);
    checkChunks(chunks, blobs, extension.chunkSize);
  });
  check(
    extension.compressorMask === compressorMaskOf(blobs.map((b) => b.compressor)),
    () =>
      `extension header: compressor mask 0x${extension.compressorMask.toString(16)} does not match the blob table`,
  );
  const devices = readDevices(bytes, superblock, blobs);
  return { superblock, extension, devices, blobs, chunks, chunkAt: indexChunks(chunks) };
}

function checkSuperblock(sb: Superblock, bytes: Buffer): void {
  check(
    sb.magic === EROFS_MAGIC,
    () => `superblock: magic 0x${sb.magic.toString(16)} is not EROFS's 0xe0f5e1e2`,
  );
  check(
    (sb.featureCompat & FEATURE_COMPAT_DAMSELFLY) !== 0,
    () => 'superblock: not a Damselfly bootstrap (compat bit 0x20000000 missing)',
  );
  if ((sb.featureCompat & FEATURE_COMPAT_SB_CHKSUM) !== 0) {
    const expected = superblockChecksum(bytes);
    check(
      sb.checksum === expected,
      () => `superblock: checksum 0x${sb.checksum.toString(16)}, expected 0x${expected.toString(16)}`,
    );
  }
  check(
    sb.blkszbits === EROFS_BLOCK_SIZE_BITS,
    () => `superblock: blkszbits ${sb.blkszbits}, expected 12 (4 KiB blocks)`,
  );
  check(sb.extslots === 0, () => `superblock: sb_extslots ${sb.extslots} would overlap the extension header`);
  const unknown = sb.featureIncompat & ~(FEATURE_INCOMPAT_CHUNKED_FILE | FEATURE_INCOMPAT_DEVICE_TABLE);
  check(unknown === 0, () => `superblock: unsupported incompatible features 0x${unknown.toString(16)}`);
  const hasDeviceTable = (sb.featureIncompat & FEATURE_INCOMPAT_DEVICE_TABLE) !== 0;
  check(
    hasDeviceTable === sb.extraDevices > 0,
    () =>
      `superblock: ${sb.extraDevices} extra devices, but the DEVICE_TABLE feature is ${hasDeviceTable ? 'set' : 'clear'}`,
  );
  check(sb.dirblkbits === 0, () => `superblock: dirblkbits ${sb.dirblkbits} is not 0`);
  check(
    sb.blocks * EROFS_BLOCK_SIZE === bytes.length,
    () =>
      `superblock: ${sb.blocks} blocks, but the bootstrap has ${bytes.length / EROFS_BLOCK_SIZE} (truncated or padded)`,
  );
  check(
    sb.metaBlkaddr >= 1 && sb.metaBlkaddr < sb.blocks,
    () => `superblock: meta_blkaddr ${sb.metaBlkaddr} is outside the bootstrap`,
  );
  check(sb.volumeName.includes(0), () => 'superblock: volume name is not NUL-terminated');
  check(sb.rootNid !== 0, () => 'superblock: root nid 0 (glibc readdir would hide . and ..)');
}

function readExtension(bytes: Buffer): ExtensionHeader {
  const ext = readExtensionHeader(bytes);
  const where = 'extension header';
  check(ext.magic === EXTENSION_MAGIC, () => `${where}: magic 0x${ext.magic.toString(16)} is not "DMSF"`);
  check(
    ext.versionMajor === EXTENSION_VERSION_MAJOR,
    () =>
      `${where}: format version ${ext.versionMajor}.${ext.versionMinor}; this reader knows ${EXTENSION_VERSION_MAJOR}.x`,
  );
  check(
    ext.headerSize >= EXTENSION_HEADER_SIZE_V1 && ext.headerSize <= EXTENSION_AREA_SIZE,
    () =>
      `${where}: header size ${ext.headerSize} is not between ${EXTENSION_HEADER_SIZE_V1} and ${EXTENSION_AREA_SIZE}`,
  );
  check(
    ext.incompatFlags === 0,
    () => `${where}: unsupported incompatible flags 0x${ext.incompatFlags.toString(16)}`,
  );
  asModelCheck(() => checkChunkSize(ext.chunkSize), where);
  check(
    ext.chunkDigestAlgorithm === CHUNK_DIGEST_SHA256,
    () => `${where}: unknown chunk digest algorithm ${ext.chunkDigestAlgorithm}`,
  );
  const { magic: _magic, ...header } = ext;
  return header;
}

/** Tables are 4 KiB-aligned, inside the bootstrap, after block 0's device table, and disjoint. */
function checkTableLayout(ext: ExtensionHeader, sb: Superblock, length: number): void {
  const tables: Array<[string, TableLocation, number]> = [
    ['blob table', ext.blobTable, BLOB_ENTRY_SIZE],
    ['chunk table', ext.chunkTable, CHUNK_ENTRY_SIZE],
    ['prefetch table', ext.prefetchTable, PREFETCH_ENTRY_SIZE],
  ];
  const deviceTableEnd = sb.devtSlotoff * DEVICE_SLOT_SIZE + sb.extraDevices * DEVICE_SLOT_SIZE;
  const reservedEnd = Math.max(EXTENSION_OFFSET + EXTENSION_AREA_SIZE, deviceTableEnd);
  for (const [name, table, minEntrySize] of tables) {
    check(table.entrySize >= minEntrySize, () => `${name}: entry size ${table.entrySize} < ${minEntrySize}`);
    check(
      table.offset % EROFS_BLOCK_SIZE === 0,
      () => `${name}: offset ${table.offset} is not 4 KiB-aligned`,
    );
    checkRange(table.offset, table.count * table.entrySize, length, () => name);
    check(
      table.count === 0 || table.offset >= reservedEnd,
      () => `${name}: offset ${table.offset} overlaps block 0 or the device table`,
    );
  }
  for (let i = 0; i < tables.length; i++) {
    for (let j = i + 1; j < tables.length; j++) {
      const [nameA, a] = tables[i]!;
      const [nameB, b] = tables[j]!;
      const disjoint =
        a.count === 0 ||
        b.count === 0 ||
        a.offset + a.count * a.entrySize <= b.offset ||
        b.offset + b.count * b.entrySize <= a.offset;
      check(disjoint, () => `${nameA} and ${nameB} overlap`);
    }
  }
  check(
    ext.blobTable.count === sb.extraDevices,
    () => `blob table has ${ext.blobTable.count} blobs, but the superblock has ${sb.extraDevices} devices`,
  );
}

function readBlobs(bytes: Buffer, table: TableLocation): BlobInfo[] {
  const blobs: BlobInfo[] = [];
  for (let i = 0; i < table.count; i++) {
    const { compressorId, compressor, ...blob } = readBlobRecord(bytes, table.offset + i * table.entrySize);
    check(compressor !== undefined, () => `blob ${i}: unknown compressor id ${compressorId}`);
    blobs.push({ ...blob, compressor });
  }
  return blobs;
}

function readChunks(bytes: Buffer, table: TableLocation): ChunkInfo[] {
  const chunks: ChunkInfo[] = [];
  for (let i = 0; i < table.count; i++) {
    const { flags, ...chunk } = readChunkRecord(bytes, table.offset + i * table.entrySize);
    check((flags & ~CHUNK_KNOWN_FLAGS) === 0, () => `chunk ${i}: unknown flags 0x${flags.toString(16)}`);
    chunks.push(chunk);
  }
  return chunks;
}

function readDevices(bytes: Buffer, sb: Superblock, blobs: BlobInfo[]): DeviceSlot[] {
  const tableAt = sb.devtSlotoff * DEVICE_SLOT_SIZE;
  if (blobs.length === 0) return [];
  check(
    tableAt >= EXTENSION_OFFSET + EXTENSION_AREA_SIZE,
    () => `device table at byte ${tableAt} overlaps the superblock or extension header`,
  );
  checkRange(tableAt, blobs.length * DEVICE_SLOT_SIZE, bytes.length, () => 'device table');
  return blobs.map((blob, i) => {
    const slot = readDeviceSlot(bytes, tableAt, i);
    const hex = blob.digest.slice('sha256:'.length);
    check(
      slot.tag === hex,
      () => `device slot ${i + 1}: tag ${JSON.stringify(slot.tag)} is not blob ${i}'s digest ${hex}`,
    );
    check(
      slot.blocks * EROFS_BLOCK_SIZE === blob.uncompressedSize,
      () =>
        `device slot ${i + 1}: ${slot.blocks} blocks, but blob ${i} is ${blob.uncompressedSize} bytes uncompressed`,
    );
    return slot;
  });
}

function indexChunks(chunks: ChunkInfo[]): Map<number, number> {
  const chunkAt = new Map<number, number>();
  for (const [i, chunk] of chunks.entries()) {
    chunkAt.set(chunkKey(chunk.blobIndex, chunk.uncompressedOffset / EROFS_BLOCK_SIZE), i);
  }
  return chunkAt;
}

/** Runs a shared model check, reporting its failure as a format error. */
function asModelCheck(run: () => void, where?: string): void {
  try {
    run();
  } catch (err) {
    if (err instanceof InvalidImageError) fail(where ? `${where}: ${err.message}` : err.message);
    throw err;
  }
}
