/**
 * Where stored blob bytes come from. A backend returns bytes as stored (maybe compressed) and never
 * vouches for them: the ChunkFetcher verifies every chunk against the chunk table before use. The
 * p2p backend is a RegistryBackend whose client talks to the local daemon's registry mirror.
 */
import type { BlobInfo } from '../image/format/index.js';

export interface ChunkBackend {
  /** For logs: `registry 127.0.0.1:5000/app`, `local /path/out`. */
  readonly name: string;
  /** Exactly `length` bytes at `offset` of the blob file, or a rejection. */
  readRange(blob: BlobInfo, offset: number, length: number, signal: AbortSignal): Promise<Buffer>;
  close?(): Promise<void>;
}
