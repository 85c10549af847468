/**
 * The Damselfly extension header: 256 bytes at byte 1152 of block 0, right after the EROFS
 * superblock. The kernel never reads it (`sb_extslots` = 0); the superblock's private compat bit
 * `FEATURE_COMPAT_DAMSELFLY` says it is there. It locates our own tables (blob, chunk, prefetch),
 * which live in 4 KiB-aligned regions no inode references. Layout: docs/format.md.
 *
 * Versioning: a reader refuses another major version and any unknown `incompatFlags` bit; a new
 * minor version may only add fields a reader can ignore (in the reserved bytes, reported by
 * `headerSize`, or as larger table entries, reported by the entry sizes).
 */

import type { Compressor } from './tree.js';

export const EXTENSION_OFFSET = 1152;
export const EXTENSION_AREA_SIZE = 256;
/** "DMSF" in file order. */
export const EXTENSION_MAGIC = 0x46534d44;
export const EXTENSION_VERSION_MAJOR = 1;
export const EXTENSION_VERSION_MINOR = 0;
/** Bytes of the header a version 1.0 writer fills; the rest of the 256 is zero. */
export const EXTENSION_HEADER_SIZE_V1 = 72;
export const CHUNK_DIGEST_SHA256 = 1;

/** Field offsets within the extension header. */
export const EXT = {
  magic: 0,
  headerSize: 4,
  versionMajor: 6,
  versionMinor: 7,
  incompatFlags: 8,
  compatFlags: 12,
  chunkSize: 16,
  chunkDigestAlgorithm: 20,
  compressorMask: 22,
  blobTableOffset: 24,
  blobCount: 32,
  blobEntrySize: 36,
  chunkTableOffset: 40,
  chunkCount: 48,
  chunkEntrySize: 52,
  prefetchTableOffset: 56,
  prefetchCount: 64,
  prefetchEntrySize: 68,
} as const;

export const COMPRESSOR_IDS: Record<Compressor, number> = { none: 0, zstd: 1, lz4: 2 };
export const COMPRESSORS_BY_ID: readonly Compressor[] = ['none', 'zstd', 'lz4'];

export interface TableLocation {
  /** Byte offset in the bootstrap, a multiple of 4096. */
  offset: number;
  count: number;
  entrySize: number;
}

export interface ExtensionHeader {
  versionMajor: number;
  versionMinor: number;
  headerSize: number;
  incompatFlags: number;
  compatFlags: number;
  chunkSize: number;
  chunkDigestAlgorithm: number;
  /** Bit `COMPRESSOR_IDS[c]` set for every compressor some blob uses. */
  compressorMask: number;
  blobTable: TableLocation;
  chunkTable: TableLocation;
  prefetchTable: TableLocation;
}

export function compressorMaskOf(compressors: Iterable<Compressor>): number {
  let mask = 0;
  for (const compressor of compressors) mask |= 1 << COMPRESSOR_IDS[compressor];
  return mask;
}

/** Writes the header into `block0` (the first 4096 bytes of the bootstrap, zero-filled). */
export function writeExtensionHeader(block0: Buffer, header: ExtensionHeader): void {
  const at = (field: number) => EXTENSION_OFFSET + field;
  block0.writeUInt32LE(EXTENSION_MAGIC, at(EXT.magic));
  block0.writeUInt16LE(header.headerSize, at(EXT.headerSize));
  block0.writeUInt8(header.versionMajor, at(EXT.versionMajor));
  block0.writeUInt8(header.versionMinor, at(EXT.versionMinor));
  block0.writeUInt32LE(header.incompatFlags, at(EXT.incompatFlags));
  block0.writeUInt32LE(header.compatFlags, at(EXT.compatFlags));
  block0.writeUInt32LE(header.chunkSize, at(EXT.chunkSize));
  block0.writeUInt8(header.chunkDigestAlgorithm, at(EXT.chunkDigestAlgorithm));
  block0.writeUInt16LE(header.compressorMask, at(EXT.compressorMask));
  writeTableLocation(block0, at(EXT.blobTableOffset), header.blobTable);
  writeTableLocation(block0, at(EXT.chunkTableOffset), header.chunkTable);
  writeTableLocation(block0, at(EXT.prefetchTableOffset), header.prefetchTable);
}

/** Each table location is `offset u64, count u32, entrySize u16, reserved u16`. */
function writeTableLocation(buf: Buffer, at: number, table: TableLocation): void {
  buf.writeBigUInt64LE(BigInt(table.offset), at);
  buf.writeUInt32LE(table.count, at + 8);
  buf.writeUInt16LE(table.entrySize, at + 12);
}

/**
 * Reads the raw header fields (no validation beyond what reading needs; the reader checks them).
 * Offsets above 2^53 come back as `Infinity` so range checks fail instead of wrapping.
 */
export function readExtensionHeader(bytes: Buffer): ExtensionHeader & { magic: number } {
  const at = (field: number) => EXTENSION_OFFSET + field;
  return {
    magic: bytes.readUInt32LE(at(EXT.magic)),
    headerSize: bytes.readUInt16LE(at(EXT.headerSize)),
    versionMajor: bytes.readUInt8(at(EXT.versionMajor)),
    versionMinor: bytes.readUInt8(at(EXT.versionMinor)),
    incompatFlags: bytes.readUInt32LE(at(EXT.incompatFlags)),
    compatFlags: bytes.readUInt32LE(at(EXT.compatFlags)),
    chunkSize: bytes.readUInt32LE(at(EXT.chunkSize)),
    chunkDigestAlgorithm: bytes.readUInt8(at(EXT.chunkDigestAlgorithm)),
    compressorMask: bytes.readUInt16LE(at(EXT.compressorMask)),
    blobTable: readTableLocation(bytes, at(EXT.blobTableOffset)),
    chunkTable: readTableLocation(bytes, at(EXT.chunkTableOffset)),
    prefetchTable: readTableLocation(bytes, at(EXT.prefetchTableOffset)),
  };
}

function readTableLocation(buf: Buffer, at: number): TableLocation {
  return {
    offset: readU64AsNumber(buf, at),
    count: buf.readUInt32LE(at + 8),
    entrySize: buf.readUInt16LE(at + 12),
  };
}

/** A u64 as a number; values a Number cannot hold exactly become `Infinity`. */
export function readU64AsNumber(buf: Buffer, at: number): number {
  const value = buf.readBigUInt64LE(at);
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : Number.POSITIVE_INFINITY;
}
