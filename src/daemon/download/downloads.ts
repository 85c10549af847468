import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { taskId as computeTaskId, parseDigest } from '../../task/index.js';
import { DownloadError, type DownloadRequest, PeerTask, type PeerTaskDeps } from './peer-task.js';

export interface DownloadHandle {
  taskId: string;
  task: PeerTask;
  /** Resolves when the content is complete and (if asked) its whole-file digest matched. */
  done: Promise<void>;
}

/**
 * All downloads of this daemon. Concurrent requests for one task share a single PeerTask, so a
 * host fetches each task once however many local clients ask for it.
 */
export class Downloads {
  private readonly running = new Map<string, { task: PeerTask; done: Promise<void> }>();
  private readonly abort = new AbortController();

  constructor(private readonly deps: PeerTaskDeps) {}

  start(request: DownloadRequest): DownloadHandle {
    if (request.digest) parseDigest(request.digest);
    const id = computeTaskId({
      url: request.url,
      tag: request.tag,
      application: request.application,
      pieceLength: request.pieceLength,
    });
    let entry = this.running.get(id);
    // A running download fetches this request's range (or everything) too, unless it has just finished.
    if (entry && !entry.task.want(request.range)) entry = undefined;
    if (!entry) {
      const task = new PeerTask(id, request, this.deps);
      const done = task.run(this.abort.signal).finally(() => {
        if (this.running.get(id)?.task === task) this.running.delete(id);
      });
      done.then(
        () => this.deps.metrics.tasks.inc({ result: 'succeeded' }),
        (err: Error) => {
          this.deps.metrics.tasks.inc({ result: 'failed' });
          this.deps.logger.warn({ taskId: id, err: err.message }, 'download failed');
        },
      );
      entry = { task, done };
      this.running.set(id, entry);
    }
    const digest = request.digest;
    const done = digest ? entry.done.then(() => this.verify(id, digest)) : entry.done;
    return { taskId: id, task: entry.task, done };
  }

  /** Whole-file check of the stored content against the digest the user gave. */
  private async verify(id: string, expected: string): Promise<void> {
    const { algorithm, hex } = parseDigest(expected);
    const hash = createHash(algorithm);
    await pipeline(this.deps.storage.createContentStream(id), hash);
    const actual = hash.digest('hex');
    if (actual !== hex) {
      throw new DownloadError(`digest mismatch: expected ${algorithm}:${hex}, got ${algorithm}:${actual}`);
    }
  }

  /** Cancels every running download. */
  close(): void {
    this.abort.abort();
  }
}
