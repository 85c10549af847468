import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../../observability/index.js';
import { isTaskId } from '../../task/index.js';
import { pieceBuffers } from '../buffer-pool.js';
import type { DaemonMetrics } from '../metrics.js';
import type { TokenBucket } from '../rate-limiter.js';
import { type PieceRecord, StorageError, type TaskStorage } from '../storage/index.js';
import { SpreadGate } from './spread-gate.js';
import { UploadAdmission } from './upload-admission.js';

const WRITE_SLICE = 256 * 1024;

/**
 * On a 429 for one piece only (the seed uploaded it moments ago, see SpreadGate): milliseconds until the
 * piece may be asked for here again. The parent itself is not busy; other pieces may be asked at once.
 */
export const PIECE_DEFERRED_HEADER = 'x-damselfly-piece-deferred';

/** What the sync stream sends: task layout (once known) and the piece numbers the parent holds. */
interface SyncWatcher {
  piece(piece: PieceRecord): void;
  succeeded(): void;
  deleted(): void;
}

export interface PieceSyncMessage {
  contentLength?: number;
  pieceLength?: number;
  pieceCount?: number;
  pieces?: number[];
  done?: boolean;
  error?: string;
}

/**
 * Serves pieces to other peers over plain HTTP/1.1 (keep-alive):
 * - GET /tasks/<id>/pieces        NDJSON: the pieces held now, then each new one as it lands (SyncPieces)
 * - GET /tasks/<id>/pieces/<n>    the bytes of piece n
 * Only tasks in local storage are served; the concurrent-upload limit, and on a slow link the backlog
 * (UploadAdmission), answer 429 "busy" when reached. A seed
 * peer (`pieceHoldMs` > 0) uploads a piece once and defers other askers for a while (SpreadGate).
 */
export class UploadServer {
  private server: Server | null = null;
  private active = 0;
  private uploads = 0;
  private failures = 0;
  private window = { start: Date.now(), bytes: 0, rate: 0 };
  private readonly gate: SpreadGate;
  private readonly admission = new UploadAdmission();

  constructor(
    private readonly storage: TaskStorage,
    private readonly limiter: TokenBucket,
    private readonly concurrentLimit: number,
    private readonly metrics: DaemonMetrics,
    private readonly logger: Logger,
    pieceHoldMs = 0,
  ) {
    this.gate = new SpreadGate(pieceHoldMs);
    this.watchStorage();
  }

  async listen(host: string, port: number): Promise<number> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        // A child cancelling a piece (it got it elsewhere first) is routine, not a warning.
        const level = res.destroyed ? 'debug' : 'warn';
        this.logger[level]({ err: (err as Error).message, url: req.url }, 'upload request failed');
        if (!res.headersSent) answer(res, 500, 'internal error\n');
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 60_000;
    this.server = server;
    server.listen(port, host);
    await once(server, 'listening');
    const address = server.address();
    return typeof address === 'object' && address ? address.port : port;
  }

  /** Load figures announced to the scheduler. */
  load() {
    const elapsed = (Date.now() - this.window.start) / 1000;
    if (elapsed >= 5) this.window = { start: Date.now(), bytes: 0, rate: this.window.bytes / elapsed };
    return {
      concurrentUploads: this.active,
      uploadCount: this.uploads,
      uploadFailedCount: this.failures,
      txBandwidth: Math.round(this.window.rate),
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const m = /^\/tasks\/([^/?]+)\/pieces(?:\/(\d+))?(?:\?.*)?$/.exec(req.url ?? '');
    if (req.method !== 'GET' || !m || !isTaskId(m[1]!)) {
      answer(res, 404, 'not found\n');
      return;
    }
    const taskId = m[1]!;
    if (!this.storage.getTask(taskId)) {
      answer(res, 404, 'task not here\n');
      return;
    }
    if (m[2] === undefined) this.syncPieces(taskId, req, res);
    else await this.servePiece(taskId, Number(m[2]), res);
  }

  /** Storage events for one task, fanned out to its open sync streams (one storage listener each). */
  private readonly watchers = new Map<string, Set<SyncWatcher>>();

  private watchStorage(): void {
    const each = (id: string, f: (w: SyncWatcher) => void) => {
      for (const w of this.watchers.get(id) ?? []) f(w);
    };
    this.storage.on('piece', (id, piece) => each(id, (w) => w.piece(piece)));
    this.storage.on('succeeded', (id) => each(id, (w) => w.succeeded()));
    this.storage.on('deleted', (id) => each(id, (w) => w.deleted()));
  }

  private syncPieces(taskId: string, req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const send = (msg: PieceSyncMessage) => res.write(`${JSON.stringify(msg)}\n`);
    let sentLayout = false;
    const layout = () => {
      const task = this.storage.getTask(taskId);
      if (!task || task.contentLength < 0 || sentLayout) return;
      send({ contentLength: task.contentLength, pieceLength: task.pieceLength, pieceCount: task.pieceCount });
      sentLayout = true;
    };
    const end = (last: PieceSyncMessage) => {
      send(last);
      unwatch();
      res.end();
    };
    const finishIfDone = () => {
      if (this.storage.getTask(taskId)?.state !== 'succeeded') return;
      layout();
      end({ done: true });
    };
    const watcher: SyncWatcher = {
      piece: (piece) => {
        layout();
        send({ pieces: [piece.number] });
      },
      succeeded: finishIfDone,
      deleted: () => end({ error: 'task deleted' }),
    };
    const watchers = this.watchers.get(taskId) ?? new Set();
    watchers.add(watcher);
    this.watchers.set(taskId, watchers);
    const unwatch = () => {
      watchers.delete(watcher);
      if (watchers.size === 0 && this.watchers.get(taskId) === watchers) this.watchers.delete(taskId);
    };
    req.once('close', unwatch);
    layout();
    send({ pieces: this.storage.listPieces(taskId).map((p) => p.number) });
    finishIfDone();
  }

  private async servePiece(taskId: string, number: number, res: ServerResponse): Promise<void> {
    const piece = this.storage.getPiece(taskId, number);
    if (!piece) {
      answer(res, 404, 'piece not here\n');
      return;
    }
    if (this.active >= this.concurrentLimit) return this.refuseBusy(res);
    const gate = this.gate.ask(taskId, number);
    if (!gate.serve) {
      this.metrics.uploadDeferred.inc();
      answer(res, 429, 'piece just uploaded to another peer; ask it\n', {
        'retry-after': String(Math.ceil(gate.retryAfterMs / 1000)),
        [PIECE_DEFERRED_HEADER]: String(gate.retryAfterMs),
      });
      return;
    }
    if (!this.admission.admit(piece.length)) {
      this.gate.finished(taskId, number, false);
      return this.refuseBusy(res);
    }
    let unsent = piece.length;
    this.active++;
    this.metrics.concurrentUploads.set(this.active);
    let release: (() => void) | null = null;
    let completed = false;
    const data = pieceBuffers.take(piece.length);
    let responseClosed = false;
    res.once('close', () => {
      responseClosed = true;
    });
    try {
      release = this.storage.acquire(taskId);
      await this.storage.readPiece(taskId, number, data);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
      for (let off = 0; off < data.length; off += WRITE_SLICE) {
        const slice = data.subarray(off, off + WRITE_SLICE);
        await this.limiter.take(slice.length);
        if (!res.write(slice)) await drainOrClose(res);
        if (res.destroyed) throw new Error('peer closed the connection');
        this.window.bytes += slice.length;
        this.admission.sent(slice.length);
        unsent -= slice.length;
        this.metrics.uploadTraffic.inc(slice.length);
      }
      res.end();
      completed = true;
      this.uploads++;
      this.metrics.uploadPieces.inc();
      this.storage.touch(taskId);
    } catch (err) {
      if (err instanceof StorageError && !res.headersSent) {
        // Deleted or evicted between the check and the read.
        answer(res, 404, 'piece not here\n');
        return;
      }
      this.failures++;
      throw err;
    } finally {
      // The pooled buffer goes back once nothing can touch it: the read into it has settled (we are past
      // it) and the response is over ('close' follows the last socket write's completion, or the
      // connection's end; the socket may hold slices of it until then). Giving it back on 'close' alone
      // let a child that hung up mid-read hand the buffer to a download while the read still filled it:
      // a verified piece was overwritten before it was stored, and served corrupt from then on.
      if (responseClosed) pieceBuffers.give(data);
      else res.once('close', () => pieceBuffers.give(data));
      this.admission.ended(unsent);
      const rate = this.admission.bytesPerSecond;
      this.gate.finished(taskId, number, completed, {
        pieceMs: rate > 0 ? (piece.length / rate) * 1000 : 0,
        children: this.watchers.get(taskId)?.size ?? 1,
      });
      release?.();
      this.active--;
      this.metrics.concurrentUploads.set(this.active);
    }
  }

  private refuseBusy(res: ServerResponse): void {
    this.metrics.uploadRejected.inc();
    answer(res, 429, 'busy\n', { 'retry-after': '1' });
  }

  async close(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}

/**
 * A short refusal with its length declared, so the child can read it to the end and keep the connection
 * (without a length, writeHead + end(text) is sent chunked and the child drops the connection).
 */
function answer(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(text) }).end(text);
}

/** Waits until `res` can take more data or is gone, leaving no listener behind. */
function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
