import type { Logger } from '../../observability/index.js';

export type TaskState = 'running' | 'succeeded' | 'failed';

export interface TaskRecord {
  id: string;
  url: string;
  /** -1 while unknown. */
  contentLength: number;
  pieceLength: number;
  /** ceil(contentLength / pieceLength); -1 while the length is unknown. */
  pieceCount: number;
  state: TaskState;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
  accessedAt: number;
  finishedAt: number | null;
}

export interface PieceRecord {
  number: number;
  offset: number;
  length: number;
  /** "sha256:<hex>" */
  digest: string;
}

export interface TaskMeta {
  url: string;
  contentLength: number;
  pieceLength: number;
}

export interface StorageOptions {
  dataDir: string;
  /** Tasks not accessed for this many ms are removed by gc(); 0 disables the TTL. */
  taskTtl: number;
  /** Bytes the storage may use; 0 = the size of the filesystem holding dataDir. */
  capacity: number;
  /** gc() starts evicting when usedBytes ≥ this % of capacity… */
  highWatermarkPercent: number;
  /** …and stops once usedBytes ≤ this % of capacity. */
  lowWatermarkPercent: number;
  logger?: Logger;
}

export interface StorageUsage {
  usedBytes: number;
  capacityBytes: number;
}
