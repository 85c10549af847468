/**
 * One reader thread: blocking read(2) of /dev/fuse in a loop, each request copied into its own
 * ArrayBuffer and transferred to the main thread. Blocking here costs a thread of our own instead
 * of one of libuv's four shared threadpool threads (see docs/fuse.md, "Threading").
 */
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { ReaderEnd, ReaderWorkerData } from './device-reader.js';

/**
 * ENOENT: the request was interrupted and dropped between poll and copy; EINTR/EAGAIN: a signal or
 * a spurious wake-up. The kernel has simply nothing for us yet: read again (as libfuse does).
 */
const RETRY = new Set(['ENOENT', 'EINTR', 'EAGAIN']);

function readLoop(port: NonNullable<typeof parentPort>, { fd, bufferSize }: ReaderWorkerData): void {
  const buffer = Buffer.allocUnsafe(bufferSize);
  for (;;) {
    let length: number;
    try {
      length = readSync(fd, buffer, 0, bufferSize, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      if (RETRY.has(code)) continue;
      // ENODEV (unmounted or aborted) is the normal end; anything else is reported as it is.
      port.postMessage({ end: code } satisfies ReaderEnd);
      return;
    }
    if (length === 0) {
      port.postMessage({ end: 'EOF' } satisfies ReaderEnd);
      return;
    }
    const request = new Uint8Array(length);
    request.set(buffer.subarray(0, length));
    port.postMessage(request, [request.buffer]);
  }
}

if (parentPort) readLoop(parentPort, workerData as ReaderWorkerData);
