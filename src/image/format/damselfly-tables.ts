/**
 * Records of the Damselfly tables (blob, chunk, prefetch) that the extension header locates.
 * Fixed-size little-endian records; a later minor version may append fields to a record and
 * announce the larger size in the header, so readers step by the announced size.
 */

import { COMPRESSOR_IDS, COMPRESSORS_BY_ID, readU64AsNumber } from './extension-header.js';
import type { BlobInfo, ChunkInfo, Compressor } from './tree.js';

export const BLOB_ENTRY_SIZE = 64;
/** Blob record field offsets. */
const BLOB = { digest: 0, compressedSize: 32, uncompressedSize: 40, chunkCount: 48, compressor: 52 } as const;

export const CHUNK_ENTRY_SIZE = 64;
/** Chunk record field offsets. */
const CHUNK = {
  digest: 0,
  compressedOffset: 32,
  uncompressedOffset: 40,
  compressedSize: 48,
  uncompressedSize: 52,
  blobIndex: 56,
  flags: 58,
} as const;
export const CHUNK_FLAG_COMPRESSED = 0x1;
export const CHUNK_KNOWN_FLAGS = CHUNK_FLAG_COMPRESSED;

export const PREFETCH_ENTRY_SIZE = 8;

export const DIGEST_SIZE = 32;
const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;

export function isBlobDigest(digest: string): boolean {
  return SHA256_DIGEST.test(digest);
}

/** The 64 hex digits of a `sha256:<hex>` digest (also the blob's device-table tag). */
export function blobDigestHex(digest: string): string {
  return digest.slice('sha256:'.length);
}

export function writeBlobRecord(buf: Buffer, at: number, blob: BlobInfo): void {
  buf.write(blobDigestHex(blob.digest), at + BLOB.digest, DIGEST_SIZE, 'hex');
  buf.writeBigUInt64LE(BigInt(blob.compressedSize), at + BLOB.compressedSize);
  buf.writeBigUInt64LE(BigInt(blob.uncompressedSize), at + BLOB.uncompressedSize);
  buf.writeUInt32LE(blob.chunkCount, at + BLOB.chunkCount);
  buf.writeUInt8(COMPRESSOR_IDS[blob.compressor], at + BLOB.compressor);
}

/** A blob record as stored; `compressor` is undefined for an unknown id. */
export interface RawBlobRecord extends Omit<BlobInfo, 'compressor'> {
  compressor: Compressor | undefined;
  compressorId: number;
}

export function readBlobRecord(buf: Buffer, at: number): RawBlobRecord {
  const compressorId = buf.readUInt8(at + BLOB.compressor);
  return {
    digest: `sha256:${buf.toString('hex', at + BLOB.digest, at + BLOB.digest + DIGEST_SIZE)}`,
    compressedSize: readU64AsNumber(buf, at + BLOB.compressedSize),
    uncompressedSize: readU64AsNumber(buf, at + BLOB.uncompressedSize),
    chunkCount: buf.readUInt32LE(at + BLOB.chunkCount),
    compressor: COMPRESSORS_BY_ID[compressorId],
    compressorId,
  };
}

export function writeChunkRecord(buf: Buffer, at: number, chunk: ChunkInfo): void {
  chunk.digest.copy(buf, at + CHUNK.digest, 0, DIGEST_SIZE);
  buf.writeBigUInt64LE(BigInt(chunk.compressedOffset), at + CHUNK.compressedOffset);
  buf.writeBigUInt64LE(BigInt(chunk.uncompressedOffset), at + CHUNK.uncompressedOffset);
  buf.writeUInt32LE(chunk.compressedSize, at + CHUNK.compressedSize);
  buf.writeUInt32LE(chunk.uncompressedSize, at + CHUNK.uncompressedSize);
  buf.writeUInt16LE(chunk.blobIndex, at + CHUNK.blobIndex);
  buf.writeUInt16LE(chunk.compressed ? CHUNK_FLAG_COMPRESSED : 0, at + CHUNK.flags);
}

export interface RawChunkRecord extends ChunkInfo {
  flags: number;
}

export function readChunkRecord(buf: Buffer, at: number): RawChunkRecord {
  const flags = buf.readUInt16LE(at + CHUNK.flags);
  return {
    blobIndex: buf.readUInt16LE(at + CHUNK.blobIndex),
    digest: Buffer.from(buf.subarray(at + CHUNK.digest, at + CHUNK.digest + DIGEST_SIZE)),
    compressedOffset: readU64AsNumber(buf, at + CHUNK.compressedOffset),
    compressedSize: buf.readUInt32LE(at + CHUNK.compressedSize),
    uncompressedOffset: readU64AsNumber(buf, at + CHUNK.uncompressedOffset),
    uncompressedSize: buf.readUInt32LE(at + CHUNK.uncompressedSize),
    compressed: (flags & CHUNK_FLAG_COMPRESSED) !== 0,
    flags,
  };
}

export function writePrefetchRecord(buf: Buffer, at: number, nid: number): void {
  buf.writeBigUInt64LE(BigInt(nid), at);
}

export function readPrefetchRecord(buf: Buffer, at: number): number {
  return readU64AsNumber(buf, at);
}
