/**
 * Stored chunk bytes → trusted chunk bytes: decompress to exactly the table's size, then the sha256
 * must equal the table's digest. The only way fetched bytes reach a reader or the cache.
 */
import { createHash } from 'node:crypto';
import { decompressChunk } from '../image/build/index.js';
import type { BlobInfo, ChunkInfo } from '../image/format/index.js';
import { ChunkVerificationError } from './errors.js';

/** `prepareCompressor(blob.compressor)` must have resolved. Throws ChunkVerificationError. */
export function verifyStoredChunk(blob: BlobInfo, chunk: ChunkInfo, stored: Buffer): Buffer {
  let data: Buffer;
  try {
    data = decompressChunk(chunk.compressed ? blob.compressor : 'none', stored, chunk.uncompressedSize);
  } catch (err) {
    throw new ChunkVerificationError(`cannot decompress: ${(err as Error).message}`, { cause: err });
  }
  const digest = createHash('sha256').update(data).digest();
  if (!digest.equals(chunk.digest)) {
    throw new ChunkVerificationError(
      `sha256 ${digest.toString('hex')} does not match the chunk table's ${chunk.digest.toString('hex')}`,
    );
  }
  return data;
}
