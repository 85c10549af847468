/**
 * Piece digests off the main thread. Every byte a daemon receives is hashed before it is stored, and
 * on the main thread that was the largest user-space cost (38 % of it in a back-to-source profile):
 * while it hashed, no socket was read. Pieces in the daemon's buffer pool live in shared memory, so a
 * worker hashes them in place while the main thread goes on receiving; any other buffer, or a small
 * one, is hashed inline.
 */
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { siblingModule, startWorker } from '../async/index.js';
import { pieceDigest } from '../task/index.js';

export interface PieceHashRequest {
  id: number;
  memory: SharedArrayBuffer;
  offset: number;
  length: number;
}

export interface PieceHashReply {
  id: number;
  digest: string;
}

/** Below this a message round trip costs more than hashing inline. */
const INLINE_BELOW = 128 * 1024;

interface HashWorker {
  worker: Worker;
  pending: Map<number, { resolve: (digest: string) => void; reject: (err: Error) => void }>;
}

export class PieceHasher {
  private readonly workers: HashWorker[] = [];
  private nextId = 0;
  private closed = false;

  constructor(private readonly maxWorkers = Math.min(2, Math.max(1, availableParallelism() - 1))) {}

  /** "sha256:<hex>" of `data`. The caller must not change `data` until this settles. */
  digest(data: Uint8Array): Promise<string> {
    if (!(data.buffer instanceof SharedArrayBuffer) || data.length < INLINE_BELOW || this.closed) {
      return Promise.resolve(pieceDigest(data));
    }
    const hw = this.leastBusy();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      hw.pending.set(id, { resolve, reject });
      if (hw.pending.size === 1) hw.worker.ref();
      const request: PieceHashRequest = {
        id,
        memory: data.buffer as SharedArrayBuffer,
        offset: data.byteOffset,
        length: data.length,
      };
      hw.worker.postMessage(request);
    });
  }

  /** Worker threads started so far (they stay until close). */
  get threads(): number {
    return this.workers.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = this.workers.splice(0);
    await Promise.all(workers.map((hw) => hw.worker.terminate()));
  }

  private leastBusy(): HashWorker {
    let best = this.workers[0];
    for (const hw of this.workers) if (hw.pending.size < best!.pending.size) best = hw;
    if (best && (best.pending.size === 0 || this.workers.length >= this.maxWorkers)) return best;
    return this.spawn();
  }

  private spawn(): HashWorker {
    const hw: HashWorker = {
      worker: startWorker(siblingModule(import.meta.url, 'piece-hash-worker')),
      pending: new Map(),
    };
    // Idle, a worker must not keep the process alive; it is ref'ed while a digest is pending.
    hw.worker.unref();
    hw.worker.on('message', ({ id, digest }: PieceHashReply) => {
      const waiter = hw.pending.get(id);
      hw.pending.delete(id);
      if (hw.pending.size === 0) hw.worker.unref();
      waiter?.resolve(digest);
    });
    const fail = (err: Error): void => {
      const index = this.workers.indexOf(hw);
      if (index >= 0) this.workers.splice(index, 1);
      for (const waiter of hw.pending.values()) waiter.reject(err);
      hw.pending.clear();
    };
    hw.worker.once('error', fail);
    hw.worker.once('exit', (code) => fail(new Error(`the piece hasher exited (code ${code})`)));
    this.workers.push(hw);
    return hw;
  }
}

/** The daemon's hasher, shared by every download (like `pieceBuffers`). */
export const pieceHasher = new PieceHasher();
