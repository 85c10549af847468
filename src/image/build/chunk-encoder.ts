/**
 * Encodes new chunks for a blob off the main thread where the library allows: lz4-napi's async
 * `compress` runs on libuv's thread pool, zstd on a pool of worker threads. The stored form is the
 * one `compression.ts` documents (and `decompressChunk` reads).
 */
import { compress as lz4CompressAsync } from 'lz4-napi';
import type { Compressor } from '../format/index.js';
import { ZstdWorkerPool } from './zstd-worker-pool.js';

export interface ChunkEncoder {
  /** The stored bytes for `data` (for `none`, `data` itself); may be larger than `data`. */
  encode(data: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

export function createChunkEncoder(compressor: Compressor, zstdLevel: number): ChunkEncoder {
  switch (compressor) {
    case 'none':
      return { encode: (data) => Promise.resolve(data), close: () => Promise.resolve() };
    case 'lz4':
      // Drop lz4-napi's u32 size prefix: the chunk table holds the size (see compression.ts).
      return {
        encode: async (data) => (await lz4CompressAsync(data)).subarray(4),
        close: () => Promise.resolve(),
      };
    case 'zstd': {
      const pool = new ZstdWorkerPool();
      return { encode: (data) => pool.compress(data, zstdLevel), close: () => pool.close() };
    }
  }
}
