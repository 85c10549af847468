/**
 * Encodes new chunks for a blob off the main thread where the library allows: lz4-napi's async
 * `compress` runs on libuv's thread pool, zstd on a pool of worker threads. The stored form is the
 * one `compression.ts` documents (and `decompressChunk` reads).
 */
import { compress as lz4CompressAsync } from 'lz4-napi';
import type { Compressor } from '../format/index.js';
import { type EncodedChunk, ZstdWorkerPool } from './zstd-worker-pool.js';

export type { EncodedChunk };

export interface ChunkEncoder {
  /**
   * What to store for `data`: its compressed form, or `data` itself when compressing does not shrink
   * it (always for `none`). The caller must not use `data` afterwards (it may move to a worker).
   */
  encode(data: Buffer): Promise<EncodedChunk>;
  close(): Promise<void>;
}

const raw = (data: Buffer): EncodedChunk => ({ bytes: data, compressed: false });

export function createChunkEncoder(compressor: Compressor, zstdLevel: number): ChunkEncoder {
  switch (compressor) {
    case 'none':
      return { encode: (data) => Promise.resolve(raw(data)), close: () => Promise.resolve() };
    case 'lz4':
      return { encode: encodeLz4, close: () => Promise.resolve() };
    case 'zstd': {
      const pool = new ZstdWorkerPool();
      return { encode: (data) => pool.compress(data, zstdLevel), close: () => pool.close() };
    }
  }
}

async function encodeLz4(data: Buffer): Promise<EncodedChunk> {
  // Drop lz4-napi's u32 size prefix: the chunk table holds the size (see compression.ts).
  const block = (await lz4CompressAsync(data)).subarray(4);
  return block.length < data.length ? { bytes: block, compressed: true } : raw(data);
}
