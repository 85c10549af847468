import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { decompressChunk, prepareCompressor } from '../build/index.js';
import type { ChunkInfo, ImageBootstrap } from '../format/index.js';

export interface ChunkResult {
  /** Index into `image.chunks`. */
  index: number;
  chunk: ChunkInfo;
  /** The verified uncompressed bytes; absent when `fault` is set. */
  data?: Buffer;
  fault?: string;
}

export interface BlobReadResult {
  /** `sha256:` of every stored byte read. */
  digest: string;
  size: number;
}

/**
 * Reads one stored blob front to back and yields each of its chunks decompressed and checked
 * against its digest — the one place that turns stored bytes into trusted bytes for check and
 * unpack. A chunk that fails is yielded with `fault` and no data.
 */
export async function* verifiedBlobChunks(
  image: ImageBootstrap,
  blobIndex: number,
  stored: Readable,
  result: Partial<BlobReadResult> = {},
): AsyncGenerator<ChunkResult> {
  const blob = image.blobs[blobIndex];
  if (!blob) throw new RangeError(`no blob ${blobIndex}`);
  const wanted = image.chunks
    .map((chunk, index) => ({ chunk, index }))
    .filter(({ chunk }) => chunk.blobIndex === blobIndex)
    .sort((a, b) => a.chunk.compressedOffset - b.chunk.compressedOffset);
  await prepareCompressor(blob.compressor);
  const hash = createHash('sha256');
  let buffered: Buffer = Buffer.alloc(0);
  let bufferStart = 0; // blob offset of buffered[0]
  let size = 0;
  let next = 0;
  for await (const part of stored as AsyncIterable<Buffer>) {
    hash.update(part);
    size += part.length;
    buffered = buffered.length === 0 ? part : Buffer.concat([buffered, part]);
    while (next < wanted.length) {
      const { chunk, index } = wanted[next] as { chunk: ChunkInfo; index: number };
      const end = chunk.compressedOffset + chunk.compressedSize;
      if (end > bufferStart + buffered.length) break;
      const start = chunk.compressedOffset - bufferStart;
      if (start < 0) {
        yield { index, chunk, fault: `chunk ${index} overlaps the chunk before it in blob ${blob.digest}` };
      } else {
        yield checkChunk(image, index, chunk, buffered.subarray(start, start + chunk.compressedSize));
      }
      next++;
    }
    // Keep only what the next chunk still needs.
    const keepFrom =
      next < wanted.length ? (wanted[next]?.chunk.compressedOffset ?? 0) - bufferStart : buffered.length;
    if (keepFrom > 0) {
      const drop = Math.min(keepFrom, buffered.length);
      buffered = buffered.subarray(drop);
      bufferStart += drop;
    }
  }
  for (; next < wanted.length; next++) {
    const { chunk, index } = wanted[next] as { chunk: ChunkInfo; index: number };
    yield { index, chunk, fault: `chunk ${index} lies past the end of blob ${blob.digest} (${size} bytes)` };
  }
  result.digest = `sha256:${hash.digest('hex')}`;
  result.size = size;
}

function checkChunk(image: ImageBootstrap, index: number, chunk: ChunkInfo, stored: Buffer): ChunkResult {
  const blob = image.blobs[chunk.blobIndex];
  const where = `chunk ${index} (blob ${blob?.digest}, offset ${chunk.compressedOffset})`;
  let data: Buffer;
  try {
    data = chunk.compressed
      ? decompressChunk(blob?.compressor ?? 'none', stored, chunk.uncompressedSize)
      : Buffer.from(stored);
  } catch (err) {
    return { index, chunk, fault: `${where}: cannot decompress: ${(err as Error).message}` };
  }
  if (data.length !== chunk.uncompressedSize)
    return { index, chunk, fault: `${where}: ${data.length} bytes, expected ${chunk.uncompressedSize}` };
  const digest = createHash('sha256').update(data).digest();
  if (!digest.equals(chunk.digest)) return { index, chunk, fault: `${where}: digest mismatch` };
  return { index, chunk, data };
}
