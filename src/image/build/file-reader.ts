/**
 * Reads one regular file in pieces of at most `readSize`, starting at once (so the walker can open
 * the next files while the current one is chunked) and keeping the next read in flight while the
 * consumer works on the current piece. Reads one byte past `size`, so a file that grew since it was
 * scanned is noticed (the consumer rejects the extra bytes).
 *
 * Plain fd callbacks, not `FileHandle`: image trees are mostly small files, and FileHandle's
 * per-file bookkeeping measured about 2× the main-thread cost of open + read + close.
 */
import { close, constants, open, read } from 'node:fs';

function openFile(path: string): Promise<number> {
  // O_NOFOLLOW: the path was a regular file at lstat; never follow a symlink swapped in since.
  return new Promise((resolve, reject) =>
    open(path, constants.O_RDONLY | constants.O_NOFOLLOW, (err, fd) => (err ? reject(err) : resolve(fd))),
  );
}

function readFile(fd: number, buffer: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) =>
    read(fd, buffer, 0, buffer.length, position, (err, bytesRead) =>
      err ? reject(err) : resolve(bytesRead),
    ),
  );
}

function closeFile(fd: number): Promise<void> {
  return new Promise((resolve, reject) => close(fd, (err) => (err ? reject(err) : resolve())));
}

export class FileReader {
  private position = 0;
  private next: Promise<Buffer | null> | null;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly fd: Promise<number>,
    private readonly size: number,
    private readonly readSize: number,
  ) {
    this.next = this.readAt(0);
    // Failures surface when the piece is consumed; never as an unhandled rejection meanwhile.
    this.next.catch(() => undefined);
  }

  /** Opens `path` and starts reading at once. `close()` must follow (also when never consumed). */
  static start(path: string, size: number, readSize: number): FileReader {
    const fd = openFile(path);
    fd.catch(() => undefined);
    return new FileReader(fd, size, readSize);
  }

  private wanted(at: number): number {
    return Math.min(this.readSize, this.size - at + 1);
  }

  private async readAt(at: number): Promise<Buffer | null> {
    const want = this.wanted(at);
    const buffer = Buffer.allocUnsafe(want);
    const bytesRead = await readFile(await this.fd, buffer, at);
    // A short read of a regular file means end of file: the descriptor is done.
    if (bytesRead < want) void this.release();
    return bytesRead === 0 ? null : buffer.subarray(0, bytesRead);
  }

  async *pieces(signal?: AbortSignal): AsyncGenerator<Buffer> {
    try {
      while (this.next) {
        const piece = await this.next;
        this.next = null;
        if (!piece) return;
        const asked = this.wanted(this.position);
        this.position += piece.length;
        if (piece.length === asked && this.position <= this.size) this.next = this.readAt(this.position);
        signal?.throwIfAborted();
        yield piece;
      }
    } finally {
      await this.close();
    }
  }

  /** Closes the descriptor once any read in flight is over. Idempotent. */
  async close(): Promise<void> {
    await this.next?.catch(() => undefined);
    await this.release();
  }

  /** Closes the descriptor now: only when no read is in flight (its number could be reused). */
  private release(): Promise<void> {
    this.closing ??= this.fd.then(
      (fd) => closeFile(fd).catch(() => undefined),
      () => undefined,
    );
    return this.closing;
  }
}
