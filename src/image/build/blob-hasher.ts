/**
 * The main-thread side of blob-hash-worker.ts: hand over bytes in file order, then ask for the
 * digest. Buffers come back once hashed and are handed out again for staging.
 */
import type { Worker } from 'node:worker_threads';
import { siblingModule, startWorker } from '../../async/index.js';

export type BlobHashRequest =
  | { type: 'bytes'; bytes: Uint8Array }
  | { type: 'zeros'; length: number }
  | { type: 'digest' };

export type BlobHashReply = { type: 'buffer'; bytes: Uint8Array } | { type: 'digest'; hex: string };

/** Returned buffers kept for reuse (beyond that they are dropped). */
const MAX_SPARE_BUFFERS = 16;

export class BlobHasher {
  private readonly worker: Worker;
  private readonly failed: Promise<never>;
  private readonly spare: Buffer[] = [];
  private onDigest: ((hex: string) => void) | null = null;

  constructor() {
    this.worker = startWorker(siblingModule(import.meta.url, 'blob-hash-worker'));
    // Idle between messages: must not keep the process alive on its own.
    this.worker.unref();
    this.worker.on('message', (reply: BlobHashReply) => {
      if (reply.type === 'digest') this.onDigest?.(reply.hex);
      else if (this.spare.length < MAX_SPARE_BUFFERS) {
        this.spare.push(Buffer.from(reply.bytes.buffer, reply.bytes.byteOffset, reply.bytes.byteLength));
      }
    });
    this.failed = new Promise((_, reject) => {
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`the blob hasher exited (code ${code})`)));
    });
    this.failed.catch(() => undefined);
  }

  /** A buffer of `size` bytes to fill: a returned one when available (its old bytes are garbage). */
  buffer(size: number): Buffer {
    const reused = this.spare.pop();
    return reused?.length === size ? reused : Buffer.allocUnsafeSlow(size);
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
    const digest = new Promise<string>((resolve) => {
      this.onDigest = resolve;
    });
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
