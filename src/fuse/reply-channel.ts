/**
 * Writes replies to /dev/fuse. A reply is one write(2) of header + body (writev, so a 1 MiB READ
 * payload is not copied into a joined buffer). Writes to /dev/fuse never wait: the kernel copies the
 * reply to the waiting request and returns, so they are done synchronously on the main thread.
 */
import { writevSync } from 'node:fs';
import type { Logger } from '../observability/index.js';
import { errnoName } from './errors.js';
import { encodeOutHeader } from './reply-encoder.js';
import type { ReplySink } from './request-dispatcher.js';

export class ReplyChannel implements ReplySink {
  private open = true;

  constructor(
    private readonly fd: number,
    private readonly logger: Logger,
  ) {}

  /** After the session ends nothing more is written (the fd may already be closed). */
  close(): void {
    this.open = false;
  }

  send(unique: number | bigint, errno: number, body: readonly Buffer[] = []): void {
    if (!this.open) return;
    let length = 16;
    for (const part of body) length += part.length;
    const parts = [encodeOutHeader(length, errno, unique), ...body.filter((part) => part.length > 0)];
    try {
      writevSync(this.fd, parts);
    } catch (err) {
      this.reportWriteFailure(err as NodeJS.ErrnoException, unique, errno);
    }
  }

  private reportWriteFailure(err: NodeJS.ErrnoException, unique: number | bigint, errno: number): void {
    // ENOENT: the kernel no longer waits for this request (aborted, or its caller was interrupted
    // before the request reached us). ENODEV: the connection is gone; the readers end the session.
    if (err.code === 'ENOENT' || err.code === 'ENODEV' || err.code === 'ECONNABORTED') {
      this.logger.debug({ unique: String(unique), code: err.code }, 'fuse reply not delivered');
      return;
    }
    this.logger.error(
      { unique: String(unique), error: errno ? errnoName(errno) : 'none', err },
      'fuse reply rejected by the kernel',
    );
  }
}
