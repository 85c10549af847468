/** The main-thread side of blob-hash-worker.ts: hand over bytes in file order, then ask for the digest. */
import type { Worker } from 'node:worker_threads';
import { siblingModule, startWorker } from './worker-thread.js';

export type BlobHashRequest =
  | { type: 'bytes'; bytes: Uint8Array }
  | { type: 'zeros'; length: number }
  | { type: 'digest' };

export class BlobHasher {
  private readonly worker: Worker;
  private readonly failed: Promise<never>;

  constructor() {
    this.worker = startWorker(siblingModule(import.meta.url, 'blob-hash-worker'));
    // Idle between messages: must not keep the process alive on its own.
    this.worker.unref();
    this.failed = new Promise((_, reject) => {
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`the blob hasher exited (code ${code})`)));
    });
    this.failed.catch(() => undefined);
  }

  /** Moves `bytes` (which must own their whole ArrayBuffer) to the hasher: not usable afterwards. */
  moveBytes(bytes: Buffer): void {
    this.worker.postMessage({ type: 'bytes', bytes } satisfies BlobHashRequest, [
      bytes.buffer as ArrayBuffer,
    ]);
  }

  zeros(length: number): void {
    if (length > 0) this.worker.postMessage({ type: 'zeros', length } satisfies BlobHashRequest);
  }

  /** The hex sha256 of everything handed over; the hasher is done afterwards. */
  async digest(): Promise<string> {
    this.worker.ref();
    const digest = new Promise<string>((resolve) => this.worker.once('message', resolve));
    this.worker.postMessage({ type: 'digest' } satisfies BlobHashRequest);
    try {
      return await Promise.race([digest, this.failed]);
    } finally {
      await this.stop();
    }
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
