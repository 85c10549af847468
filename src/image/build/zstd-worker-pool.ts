/**
 * zstd compression on worker threads. The wasm zstd runs on whichever thread calls it; on the main
 * thread it would be the whole build's bottleneck (it is ~10× slower than hashing), so chunks are
 * compressed by a pool of workers (zstd-worker.ts), one per core, while the main thread writes.
 * A chunk that owns its whole ArrayBuffer is moved to the worker, not copied (copies of every
 * chunk cost the main thread more in garbage collection than the copying itself).
 */
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { siblingModule, startWorker } from '../../async/index.js';
import { CompressionError } from './compression.js';

export interface ZstdRequest {
  id: number;
  data: Uint8Array;
  level: number;
}

export type ZstdReply =
  | { id: number; bytes: Uint8Array; compressed: boolean }
  | { id: number; error: string };

/** What to store for a chunk: the zstd frame, or the chunk itself when the frame is not smaller. */
export interface EncodedChunk {
  bytes: Buffer;
  compressed: boolean;
}

const MAX_WORKERS = 8;

interface Task {
  resolve: (encoded: EncodedChunk) => void;
  reject: (err: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  tasks: Map<number, Task>;
}

export class ZstdWorkerPool {
  private readonly workers: PoolWorker[];
  private nextId = 0;
  private closed = false;

  constructor(size = Math.min(availableParallelism(), MAX_WORKERS)) {
    this.workers = Array.from({ length: Math.max(1, size) }, () => this.startWorker());
  }

  private startWorker(): PoolWorker {
    const worker = startWorker(siblingModule(import.meta.url, 'zstd-worker'));
    const entry: PoolWorker = { worker, tasks: new Map() };
    // An idle pool must not keep the process alive (a builder that is never finished or aborted).
    worker.unref();
    worker.on('message', (reply: ZstdReply) => {
      const task = entry.tasks.get(reply.id);
      entry.tasks.delete(reply.id);
      if (entry.tasks.size === 0) worker.unref();
      if (!task) return;
      if ('error' in reply)
        task.reject(new CompressionError('EINVAL', `zstd compression failed: ${reply.error}`));
      else {
        const bytes = Buffer.from(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.byteLength);
        task.resolve({ bytes, compressed: reply.compressed });
      }
    });
    const failAll = (err: Error) => {
      for (const task of entry.tasks.values()) task.reject(err);
      entry.tasks.clear();
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => failAll(new Error(`zstd worker exited with code ${code}`)));
    return entry;
  }

  /**
   * Compresses `data` as one zstd frame on the least busy worker. `data` must not be used afterwards:
   * when it owns its whole ArrayBuffer it is moved to the worker (and comes back if stored raw).
   */
  compress(data: Buffer, level: number): Promise<EncodedChunk> {
    if (this.closed) return Promise.reject(new CompressionError('EINVAL', 'the zstd worker pool is closed'));
    const entry = this.workers.reduce((a, b) => (b.tasks.size < a.tasks.size ? b : a));
    const id = this.nextId++;
    const movable = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    // Otherwise one exact copy (cloning a view would copy its whole backing buffer).
    const sent = movable ? data : new Uint8Array(data);
    return new Promise((resolve, reject) => {
      if (entry.tasks.size === 0) entry.worker.ref();
      entry.tasks.set(id, { resolve, reject });
      const request: ZstdRequest = { id, data: sent, level };
      entry.worker.postMessage(request, [sent.buffer as ArrayBuffer]);
    });
  }

  get size(): number {
    return this.workers.length;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
