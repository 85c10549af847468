import type { Worker } from 'node:worker_threads';
import { siblingModule, startWorker } from '../async/index.js';
import type { ContentMap, ContentMapMessage } from './content-map.js';

export interface ReaderWorkerData {
  fd: number;
  bufferSize: number;
  /** Largest READ answered by the thread itself (see device-reader-worker.ts, "fast reads"). */
  maxRead: number;
  /** Per thread two float64 counters at `slot`: READs answered by the thread, bytes. */
  stats: SharedArrayBuffer;
  slot: number;
}

/** Posted by a reader thread when it stops: the errno code of the failed read (ENODEV normally). */
export interface ReaderEnd {
  end: string;
}

export interface DeviceReaderEvents {
  request(message: Buffer): void;
  /** All reader threads have stopped; `reason` is the first one's (ENODEV: the connection ended). */
  end(reason: string): void;
}

export class DeviceReader {
  private readonly workers: Worker[];
  private readonly stats: Float64Array;
  private running: number;
  private reason: string | undefined;

  constructor(
    data: Pick<ReaderWorkerData, 'fd' | 'bufferSize' | 'maxRead'>,
    threads: number,
    events: DeviceReaderEvents,
  ) {
    this.running = threads;
    const stats = new SharedArrayBuffer(threads * 2 * 8);
    this.stats = new Float64Array(stats);
    this.workers = Array.from({ length: threads }, (_, slot) => this.start({ ...data, stats, slot }, events));
  }

  /** Lets every reader thread answer READs of `nodeid` from `content` itself. */
  publish(nodeid: number, content: ContentMap): void {
    const message: ContentMapMessage = { map: { nodeid, content } };
    for (const worker of this.workers) worker.postMessage(message);
  }

  /** READs the reader threads answered themselves, and their bytes. */
  get fastReads(): { reads: number; bytes: number } {
    let reads = 0;
    let bytes = 0;
    for (let i = 0; i < this.stats.length; i += 2) {
      reads += this.stats[i]!;
      bytes += this.stats[i + 1]!;
    }
    return { reads, bytes };
  }

  /**
   * Threads blocked in read(2) cannot be stopped from here: after a lazy unmount whose connection
   * could not be aborted they stay until the last user of the mount leaves. They must not keep the
   * process alive meanwhile.
   */
  unref(): void {
    for (const worker of this.workers) worker.unref();
  }

  private start(data: ReaderWorkerData, events: DeviceReaderEvents): Worker {
    const worker = startReaderThread(data);
    worker.on('message', (message: Uint8Array | ReaderEnd) => {
      if (message instanceof Uint8Array) {
        events.request(Buffer.from(message.buffer, message.byteOffset, message.byteLength));
      } else {
        this.reason ??= message.end;
      }
    });
    worker.on('error', (err) => {
      this.reason ??= `reader thread failed: ${err.message}`;
    });
    worker.on('exit', () => {
      this.running--;
      if (this.running === 0) events.end(this.reason ?? 'reader threads exited');
    });
    return worker;
  }
}

/** The reader thread module beside this one (`.js` from dist, `.ts` under tsx). */
function startReaderThread(workerData: ReaderWorkerData): Worker {
  return startWorker(siblingModule(import.meta.url, 'device-reader-worker'), {
    workerData,
    name: 'fuse-reader',
  });
}
