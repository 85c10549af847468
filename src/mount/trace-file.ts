/**
 * Writes the access trace to `--trace FILE` as it grows: one absolute path per line, the format
 * `image convert|build --prefetch-files` reads. Lines are appended in order through one write queue
 * (no fsync per line); `close` waits for the queue, syncs and closes, so the file is complete after
 * unmount. A path with a newline cannot be one line of the list: it is left out (and logged).
 */
import { type FileHandle, open } from 'node:fs/promises';
import type { Logger } from '../observability/index.js';

export class TraceFileWriter {
  private queue: Promise<void> = Promise.resolve();
  private failed = false;

  private constructor(
    readonly path: string,
    private readonly file: FileHandle,
    private readonly logger: Logger,
  ) {}

  /** Creates (or truncates) FILE. */
  static async create(path: string, logger: Logger): Promise<TraceFileWriter> {
    return new TraceFileWriter(path, await open(path, 'w', 0o644), logger);
  }

  append(path: string): void {
    if (path.includes('\n')) {
      this.logger.warn({ path }, 'a path with a newline cannot go into the trace file; left out');
      return;
    }
    const line = Buffer.from(`${path}\n`);
    this.queue = this.queue.then(async () => {
      if (this.failed) return;
      try {
        await this.file.write(line);
      } catch (err) {
        this.failed = true;
        this.logger.error({ err, trace: this.path }, 'cannot write the trace file; tracing stopped');
      }
    });
  }

  /** Waits for every line, syncs and closes. */
  async close(): Promise<void> {
    await this.queue;
    await this.file.sync().catch(() => undefined);
    await this.file.close();
  }
}
