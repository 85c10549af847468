/**
 * Consistency rules of the blob and chunk tables, shared by the writer (checking its input) and the
 * reader (checking what it decoded). Violations throw `InvalidImageError`.
 */

import { DIGEST_SIZE, isBlobDigest } from './damselfly-tables.js';
import { EROFS_BLOCK_SIZE, MAX_DEVICES, NULL_ADDR } from './erofs-layout.js';
import { InvalidImageError } from './errors.js';
import { COMPRESSOR_IDS } from './extension-header.js';
import { type BlobInfo, type ChunkInfo, isValidChunkSize } from './tree.js';

const U32_MAX = 0xffffffff;

export function checkChunkSize(chunkSize: number): void {
  if (!isValidChunkSize(chunkSize)) {
    throw new InvalidImageError(`chunk size ${chunkSize} is not a power of two between 4 KiB and 16 MiB`);
  }
}

export function checkBlobs(blobs: readonly BlobInfo[]): void {
  if (!Array.isArray(blobs)) throw new InvalidImageError('blobs is not an array');
  if (blobs.length > MAX_DEVICES) {
    throw new InvalidImageError(
      `the image has ${blobs.length} blobs; an EROFS bootstrap holds at most ${MAX_DEVICES}`,
    );
  }
  blobs.forEach(checkBlob);
}

function checkBlob(blob: BlobInfo, index: number): void {
  const where = `blob ${index}`;
  if (typeof blob.digest !== 'string' || !isBlobDigest(blob.digest)) {
    throw new InvalidImageError(
      `${where}: digest ${JSON.stringify(String(blob.digest).slice(0, 80))} is not sha256:<64 lowercase hex>`,
    );
  }
  if (!Object.hasOwn(COMPRESSOR_IDS, blob.compressor)) {
    throw new InvalidImageError(`${where}: unknown compressor ${JSON.stringify(blob.compressor)}`);
  }
  checkCount(`${where}: compressed size`, blob.compressedSize, Number.MAX_SAFE_INTEGER);
  checkCount(`${where}: uncompressed size`, blob.uncompressedSize, U32_MAX * EROFS_BLOCK_SIZE);
  checkCount(`${where}: chunk count`, blob.chunkCount, U32_MAX);
  if (blob.uncompressedSize % EROFS_BLOCK_SIZE !== 0) {
    throw new InvalidImageError(
      `${where}: uncompressed size ${blob.uncompressedSize} is not a multiple of 4096 (the device the kernel reads is whole blocks)`,
    );
  }
  if (blob.compressor === 'none' && blob.compressedSize !== blob.uncompressedSize) {
    throw new InvalidImageError(
      `${where}: compressor none, but compressed size ${blob.compressedSize} ≠ uncompressed size ${blob.uncompressedSize}`,
    );
  }
}

/** Checks every chunk against its blob, the per-blob chunk counts, and that no two chunks overlap. */
export function checkChunks(
  chunks: readonly ChunkInfo[],
  blobs: readonly BlobInfo[],
  chunkSize: number,
): void {
  if (!Array.isArray(chunks)) throw new InvalidImageError('chunks is not an array');
  const perBlob = new Array<number>(blobs.length).fill(0);
  chunks.forEach((chunk, index) => {
    checkChunk(chunk, index, blobs, chunkSize);
    perBlob[chunk.blobIndex] = (perBlob[chunk.blobIndex] ?? 0) + 1;
  });
  blobs.forEach((blob, index) => {
    if (blob.chunkCount !== perBlob[index]) {
      throw new InvalidImageError(
        `blob ${index}: chunk count ${blob.chunkCount}, but the chunk table has ${perBlob[index]} chunks in it`,
      );
    }
  });
  checkNoOverlap(chunks);
}

function checkChunk(chunk: ChunkInfo, index: number, blobs: readonly BlobInfo[], chunkSize: number): void {
  const where = `chunk ${index}`;
  const blob = blobs[chunk.blobIndex];
  if (!Number.isInteger(chunk.blobIndex) || blob === undefined) {
    throw new InvalidImageError(
      `${where}: blob index ${chunk.blobIndex}, but the image has ${blobs.length} blobs`,
    );
  }
  if (!Buffer.isBuffer(chunk.digest) || chunk.digest.length !== DIGEST_SIZE) {
    throw new InvalidImageError(`${where}: digest is not 32 bytes`);
  }
  checkCount(`${where}: uncompressed size`, chunk.uncompressedSize, chunkSize);
  checkCount(`${where}: compressed size`, chunk.compressedSize, U32_MAX);
  checkCount(`${where}: uncompressed offset`, chunk.uncompressedOffset, Number.MAX_SAFE_INTEGER);
  checkCount(`${where}: compressed offset`, chunk.compressedOffset, Number.MAX_SAFE_INTEGER);
  if (chunk.uncompressedSize === 0) throw new InvalidImageError(`${where}: uncompressed size is 0`);
  if (chunk.uncompressedOffset % EROFS_BLOCK_SIZE !== 0) {
    throw new InvalidImageError(
      `${where}: uncompressed offset ${chunk.uncompressedOffset} is not a multiple of 4096`,
    );
  }
  if (chunk.uncompressedOffset / EROFS_BLOCK_SIZE >= NULL_ADDR) {
    throw new InvalidImageError(`${where}: uncompressed offset ${chunk.uncompressedOffset} is past 16 TiB`);
  }
  if (chunk.uncompressedOffset + chunk.uncompressedSize > blob.uncompressedSize) {
    throw new InvalidImageError(
      `${where}: uncompressed bytes ${chunk.uncompressedOffset}+${chunk.uncompressedSize} end past blob ${chunk.blobIndex}'s ${blob.uncompressedSize}`,
    );
  }
  if (chunk.compressedOffset + chunk.compressedSize > blob.compressedSize) {
    throw new InvalidImageError(
      `${where}: stored bytes ${chunk.compressedOffset}+${chunk.compressedSize} end past blob ${chunk.blobIndex}'s ${blob.compressedSize}`,
    );
  }
  checkStoredForm(chunk, where, blob);
}

function checkStoredForm(chunk: ChunkInfo, where: string, blob: BlobInfo): void {
  if (typeof chunk.compressed !== 'boolean')
    throw new InvalidImageError(`${where}: compressed is not a boolean`);
  if (!chunk.compressed && chunk.compressedSize !== chunk.uncompressedSize) {
    throw new InvalidImageError(
      `${where}: stored raw, but compressed size ${chunk.compressedSize} ≠ uncompressed size ${chunk.uncompressedSize}`,
    );
  }
  if (blob.compressor === 'none') {
    if (chunk.compressed)
      throw new InvalidImageError(`${where}: marked compressed in a blob with compressor none`);
    if (chunk.compressedOffset !== chunk.uncompressedOffset) {
      throw new InvalidImageError(
        `${where}: compressor none, but compressed offset ${chunk.compressedOffset} ≠ uncompressed offset ${chunk.uncompressedOffset}`,
      );
    }
  }
}

/** (blobIndex, uncompressedOffset) is unique and the 4 KiB-rounded extents never overlap. */
function checkNoOverlap(chunks: readonly ChunkInfo[]): void {
  const order = chunks.map((_, index) => index);
  order.sort((a, b) => {
    const ca = chunks[a]!;
    const cb = chunks[b]!;
    return ca.blobIndex - cb.blobIndex || ca.uncompressedOffset - cb.uncompressedOffset;
  });
  for (let i = 1; i < order.length; i++) {
    const prev = chunks[order[i - 1]!]!;
    const next = chunks[order[i]!]!;
    if (prev.blobIndex !== next.blobIndex) continue;
    if (prev.uncompressedOffset === next.uncompressedOffset) {
      throw new InvalidImageError(
        `duplicate chunk location: chunks ${order[i - 1]} and ${order[i]} both start at blob ${next.blobIndex} offset ${next.uncompressedOffset}`,
      );
    }
    const prevEnd = roundUpToBlock(prev.uncompressedOffset + prev.uncompressedSize);
    if (prevEnd > next.uncompressedOffset) {
      throw new InvalidImageError(
        `chunk ${order[i - 1]} (blob ${prev.blobIndex}, offset ${prev.uncompressedOffset}, ${prev.uncompressedSize} bytes) overlaps chunk ${order[i]} at offset ${next.uncompressedOffset}`,
      );
    }
  }
}

/** Bytes of chunk `index` of a file of `fileSize` bytes: the chunk size, less for the last one. */
export function chunkLength(fileSize: number, chunkSize: number, index: number): number {
  return Math.min(chunkSize, fileSize - index * chunkSize);
}

export function chunkCountOf(fileSize: number, chunkSize: number): number {
  return Math.ceil(fileSize / chunkSize);
}

export function roundUpToBlock(n: number): number {
  return Math.ceil(n / EROFS_BLOCK_SIZE) * EROFS_BLOCK_SIZE;
}

function checkCount(what: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new InvalidImageError(`${what} ${value} is not an integer between 0 and ${max}`);
  }
}
