/**
 * zstd compression on worker threads. The wasm zstd runs on whichever thread calls it; on the main
 * thread it would be the whole build's bottleneck (it is ~10× slower than hashing), so chunks are
 * compressed by a pool of workers, one per core, while the main thread hashes and writes.
 *
 * The worker is plain JavaScript evaluated from a string so it runs the same from `dist/` and under
 * tsx (whose loader does not reach worker entry files); it loads zstd from the path this module
 * resolves, so the current directory does not matter.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { CompressionError } from './compression.js';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const zstd = require(workerData.zstdModule);
const ready = zstd.init();
parentPort.on('message', async ({ id, data, level }) => {
  try {
    await ready;
    const out = zstd.compress(data, level);
    parentPort.postMessage({ id, out }, [out.buffer]);
  } catch (err) {
    parentPort.postMessage({ id, error: String((err && err.message) || err) });
  }
});
`;

const MAX_WORKERS = 8;

interface Task {
  resolve: (compressed: Buffer) => void;
  reject: (err: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  tasks: Map<number, Task>;
}

type Reply = { id: number; out: Uint8Array } | { id: number; error: string };

export class ZstdWorkerPool {
  private readonly workers: PoolWorker[];
  private nextId = 0;
  private closed = false;

  constructor(size = Math.min(availableParallelism(), MAX_WORKERS)) {
    const zstdModule = createRequire(import.meta.url).resolve('@bokuweb/zstd-wasm');
    this.workers = Array.from({ length: Math.max(1, size) }, () => this.startWorker(zstdModule));
  }

  private startWorker(zstdModule: string): PoolWorker {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { zstdModule } });
    const entry: PoolWorker = { worker, tasks: new Map() };
    // An idle pool must not keep the process alive (a builder that is never finished or aborted).
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const task = entry.tasks.get(reply.id);
      entry.tasks.delete(reply.id);
      if (entry.tasks.size === 0) worker.unref();
      if (!task) return;
      if ('error' in reply)
        task.reject(new CompressionError('EINVAL', `zstd compression failed: ${reply.error}`));
      else task.resolve(Buffer.from(reply.out.buffer, reply.out.byteOffset, reply.out.byteLength));
    });
    const failAll = (err: Error) => {
      for (const task of entry.tasks.values()) task.reject(err);
      entry.tasks.clear();
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => failAll(new Error(`zstd worker exited with code ${code}`)));
    return entry;
  }

  /** Compresses `data` as one zstd frame on the least busy worker. `data` stays the caller's. */
  compress(data: Buffer, level: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new CompressionError('EINVAL', 'the zstd worker pool is closed'));
    const entry = this.workers.reduce((a, b) => (b.tasks.size < a.tasks.size ? b : a));
    const id = this.nextId++;
    // One exact copy, moved to the worker (cloning a view would copy its whole backing buffer).
    const copy = new Uint8Array(data);
    return new Promise((resolve, reject) => {
      if (entry.tasks.size === 0) entry.worker.ref();
      entry.tasks.set(id, { resolve, reject });
      entry.worker.postMessage({ id, data: copy, level }, [copy.buffer]);
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
