import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { AsyncQueue, ChangeSignal, type Semaphore } from '../../async/index.js';
import type { Logger } from '../../observability/index.js';
import {
  type AnnouncePeerRequest,
  AnnouncePeerRequestSchema,
  type AnnouncePeerResponse,
  type Download,
  DownloadSchema,
  type Peer,
  type Piece,
  PieceSchema,
  type SchedulerClient,
  type TaskInfo,
} from '../../rpc/index.js';
import { statSource } from '../../source/index.js';
import { mayBackToSource, pieceCount, pieceLengthFor, pieceRange, piecesCovering } from '../../task/index.js';
import { pieceBuffers } from '../buffer-pool.js';
import type { DaemonMetrics } from '../metrics.js';
import { pieceHasher } from '../piece-hasher.js';
import type { TokenBucket } from '../rate-limiter.js';
import type { SchedulerConnection } from '../scheduler-connection.js';
import type { TaskStorage } from '../storage/index.js';
import { Parent, PieceFetchError } from './parent.js';
import { SourceFetcher } from './source-fetcher.js';

export interface DownloadRequest {
  url: string;
  /** Whole-file digest checked by the caller after the download. */
  digest?: string;
  tag?: string;
  application?: string;
  priority?: number;
  /** Sent to the origin; not part of the task id. */
  headers: Record<string, string>;
  pieceLength?: number;
  /** Set on seed peers triggered by the scheduler. */
  needBackToSource?: boolean;
  disableBackToSource?: boolean;
  /**
   * Only the pieces covering these bytes are wanted (a ranged read: lazy image chunks, resumed blobs).
   * The download then ends when they are stored; the task completes only once every piece is.
   */
  range?: ByteRange;
}

export interface ByteRange {
  start: number;
  length: number;
}

export interface Progress {
  contentLength: number;
  completedLength: number;
  p2pBytes: number;
  sourceBytes: number;
}

export interface PeerTaskDeps {
  storage: TaskStorage;
  scheduler: SchedulerConnection;
  metrics: DaemonMetrics;
  downloadLimiter: TokenBucket;
  logger: Logger;
  concurrentPieceCount: number;
  backToSourceConcurrency: number;
  /** Source ranges in flight across all of this host's downloads (SourceFetcherDeps.hostSlots). */
  sourceSlots: Semaphore;
  /** Piece fetches from parents in flight across all of this host's downloads (see pickSlowPiece). */
  hostFetches: { inFlight: number };
  pieceTimeoutMs: number;
  sourceRetries: number;
}

interface InFlightFetch {
  parent: Parent;
  started: number;
  abort: AbortController;
  /** The bytes are here and being verified or stored: nothing to gain from a second copy. */
  arrived: boolean;
}

/** A piece still in flight after this long (and 3x its expected time) is also asked of another parent. */
const HEDGE_AFTER_MS = 2000;
/**
 * No piece started or landed for this long while pieces are missing: ask the scheduler for more parents.
 * After STALLS_BEFORE_DROP such turns, parents that look like finished partial peers are dropped (see
 * isDeadEnd), which ends in the source if nobody has the missing pieces.
 */
const STALL_MS = 5_000;
const STALLS_BEFORE_DROP = 3;

/**
 * A parent that downloaded only a range and stopped: it holds pieces, none this download still needs,
 * and has gained none for the whole stall. A parent with no pieces yet is waiting for the source like
 * us, and a seed always fetches the whole task: dropping either would only block it for good (the
 * scheduler keeps dropped parents away), however slowly the origin sends.
 */
export function isDeadEnd(
  parent: Pick<Parent, 'seed' | 'pieces' | 'grewAt'>,
  missing: number[],
  now = performance.now(),
): boolean {
  if (parent.seed || parent.pieces.size === 0) return false;
  if (now - parent.grewAt < STALL_MS * STALLS_BEFORE_DROP) return false;
  return !missing.some((n) => parent.pieces.has(n));
}

interface Layout {
  contentLength: number;
  pieceLength: number;
  pieceCount: number;
}

type Request = MessageInitShape<typeof AnnouncePeerRequestSchema>['request'];

export class DownloadError extends Error {
  readonly code = 'EDOWNLOAD';
}

/**
 * One peer's download of one task (Dragonfly's peer task conductor). It registers with the
 * scheduler and follows its answers: download pieces from the candidate parents (several at once,
 * each verified against the digest the source peer recorded), or fetch from the source and report
 * each piece's digest. Without a scheduler it goes to the source on its own.
 */
export class PeerTask extends EventEmitter {
  readonly peerId: string;
  private layout: Layout | null = null;
  private readonly digests = new Map<number, string>();
  private readonly parents = new Map<string, Parent>();
  private readonly failedParents = new Set<string>();
  /** Piece fetches running now; a slow piece may have a second, hedged fetch from another parent. */
  private readonly inFlight = new Map<number, InFlightFetch[]>();
  private fetches = 0;
  private readonly changed = new ChangeSignal();
  private requests = new AsyncQueue<AnnouncePeerRequest>();
  /** Ends the AnnouncePeer call if the scheduler does not close it after our final report. */
  private readonly callAbort = new AbortController();
  private mode: 'waiting' | 'p2p' | 'source' | 'done' = 'waiting';
  private p2pRunning = false;
  private rescheduling = false;
  private startedReported = false;
  private rotation = Math.random();
  /** null: every piece; otherwise the byte ranges whose pieces are wanted (see DownloadRequest.range). */
  private wantedRanges: ByteRange[] | null;
  /** When a piece last started or landed (for STALL_MS), and the fruitless turns since. */
  private lastProgress = performance.now();
  private stalls = 0;
  /** Keeps GC away from the task while this download runs. */
  private unpin: (() => void) | null = null;
  private outcome!: { resolve: () => void; reject: (err: Error) => void };
  readonly progress: Progress = { contentLength: -1, completedLength: 0, p2pBytes: 0, sourceBytes: 0 };
  private readonly log: Logger;

  constructor(
    readonly taskId: string,
    private readonly request: DownloadRequest,
    private readonly deps: PeerTaskDeps,
  ) {
    super();
    this.wantedRanges = request.range ? [request.range] : null;
    this.peerId = `${deps.scheduler.hostId}-${randomUUID()}`;
    this.log = deps.logger.child({ taskId, peerId: this.peerId });
  }

  /**
   * Adds bytes (or, without a range, the whole task) to what this running download fetches. False once it
   * has finished: the caller then starts a new download, which skips the pieces already stored.
   */
  want(range?: ByteRange): boolean {
    if (this.mode === 'done') return false;
    if (!range) this.wantedRanges = null;
    else this.wantedRanges?.push(range);
    this.changed.notify();
    return true;
  }

  /** Runs the download to the end; resolves when every wanted piece is stored. */
  async run(signal: AbortSignal): Promise<void> {
    const task = this.deps.storage.getTask(this.taskId);
    // A stored task is reused only while intact (see TaskStorage.checkIntact); a changed one is gone now.
    if (task?.state === 'succeeded' && (await this.deps.storage.checkIntact(this.taskId))) {
      this.deps.storage.touch(this.taskId);
      this.progress.contentLength = task.contentLength;
      this.progress.completedLength = task.contentLength;
      return;
    }
    const range = this.request.range;
    if (task && task.contentLength >= 0 && range) {
      // The wanted pieces may be here from an earlier ranged read.
      const wanted = piecesCovering(range.start, range.length, task.pieceLength);
      if (wanted.every((n) => n >= task.pieceCount || this.deps.storage.hasPiece(this.taskId, n))) return;
    }
    const done = new Promise<void>((resolve, reject) => {
      this.outcome = { resolve, reject };
    });
    const client = this.deps.scheduler.clientFor(this.taskId);
    if (!client) {
      this.log.info('no scheduler configured; downloading from the source');
      this.startBackToSource(false);
    } else {
      void this.converse(client, signal);
    }
    const onAbort = () => this.outcome.reject(new DownloadError('download cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await done;
      this.mode = 'done';
    } finally {
      this.unpin?.();
      signal.removeEventListener('abort', onAbort);
      this.mode = 'done';
      for (const p of this.parents.values()) p.close();
      this.changed.notify();
      // Give the final report a moment to leave before closing the stream.
      setTimeout(() => this.requests.close(), 50).unref();
      setTimeout(() => this.callAbort.abort(), 10_000).unref();
    }
  }

  private send(request: Request): void {
    this.requests.push(
      create(AnnouncePeerRequestSchema, {
        hostId: this.deps.scheduler.hostId,
        taskId: this.taskId,
        peerId: this.peerId,
        request,
      }),
    );
  }

  private download(): Download {
    const r = this.request;
    return create(DownloadSchema, {
      url: r.url,
      digest: r.digest ?? '',
      tag: r.tag ?? '',
      application: r.application ?? '',
      priority: r.priority ?? 0,
      requestHeader: r.headers,
      pieceLength: r.pieceLength ?? 0,
      needBackToSource: r.needBackToSource ?? false,
      disableBackToSource: r.disableBackToSource ?? false,
    });
  }

  /** The AnnouncePeer conversation with the scheduler. */
  private async converse(client: SchedulerClient, signal: AbortSignal): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      let answered = false;
      this.requests = new AsyncQueue<AnnouncePeerRequest>();
      this.send({ case: 'registerPeer', value: { download: this.download() } });
      try {
        await this.deps.scheduler.ensureAnnounced(client);
        // Read to the end even after finishing: breaking out would cancel the call and could drop our
        // final report, making the scheduler think we left instead of finished.
        const callSignal = AbortSignal.any([signal, this.callAbort.signal]);
        for await (const res of client.announcePeer(this.requests, { signal: callSignal })) {
          answered = true;
          if (this.mode !== 'done') this.onResponse(res);
        }
        if (this.mode !== 'done' && this.mode !== 'source')
          throw new Error('the scheduler closed the stream');
        return;
      } catch (err) {
        if (signal.aborted || this.mode === 'done') return;
        if (err instanceof DownloadError) {
          this.outcome.reject(err);
          return;
        }
        if (this.mode === 'source') return;
        // A restarted scheduler has forgotten our host: announce again and register once more.
        const forgotten = ConnectError.from(err).code === Code.FailedPrecondition;
        if (forgotten && !answered && attempt === 0) {
          this.deps.scheduler.markUnannounced(client);
          continue;
        }
        // The scheduler is unreachable or went away: the source is still there.
        this.log.warn({ err: (err as Error).message }, 'scheduler unavailable; downloading from the source');
        this.startBackToSource(false);
        return;
      }
    }
  }

  private onResponse(res: AnnouncePeerResponse): void {
    const r = res.response;
    switch (r.case) {
      case 'normalTask':
        this.rescheduling = false;
        if (r.value.task) this.adoptTaskInfo(r.value.task);
        this.addParents(r.value.candidateParents);
        if (!this.startedReported) {
          this.startedReported = true;
          this.send({ case: 'downloadPeerStarted', value: {} });
        }
        this.startP2P();
        break;
      case 'pieceDigests':
        for (const p of r.value.pieces) this.digests.set(p.number, p.digest);
        if (r.value.contentLength >= 0 && r.value.pieceLength > 0) {
          this.setLayout(r.value.contentLength, r.value.pieceLength);
        }
        this.changed.notify();
        break;
      case 'needBackToSource':
        this.log.info({ reason: r.value.description }, 'scheduler says: back to source');
        this.startBackToSource(true);
        break;
      case 'emptyTask':
        this.setLayout(0, pieceLengthFor(0));
        this.mode = 'p2p';
        void this.finish(false).catch((err: Error) => this.outcome.reject(err));
        break;
      case 'failed':
        throw new DownloadError(`scheduler: ${r.value.description || 'download failed'}`);
      default:
        break;
    }
  }

  private adoptTaskInfo(task: TaskInfo): void {
    for (const p of task.pieces) this.digests.set(p.number, p.digest);
    if (task.contentLength >= 0 && task.pieceLength > 0) this.setLayout(task.contentLength, task.pieceLength);
  }

  private setLayout(contentLength: number, pieceLength: number): void {
    if (this.layout) return;
    this.layout = { contentLength, pieceLength, pieceCount: pieceCount(contentLength, pieceLength) };
    this.progress.contentLength = contentLength;
    this.putTask(contentLength, pieceLength);
    this.progress.completedLength = this.storedBytes();
  }

  private putTask(contentLength: number, pieceLength: number): void {
    this.deps.storage.putTask(this.taskId, { url: this.request.url, contentLength, pieceLength });
    this.unpin ??= this.deps.storage.acquire(this.taskId);
  }

  private storedBytes(): number {
    return this.deps.storage.listPieces(this.taskId).reduce((sum, p) => sum + p.length, 0);
  }

  private addParents(peers: Peer[]): void {
    for (const peer of peers) {
      if (!peer.host || this.parents.has(peer.id) || this.failedParents.has(peer.id)) continue;
      const parent = new Parent(peer);
      this.parents.set(peer.id, parent);
      parent
        .sync(this.taskId, () => {
          if (!this.layout && parent.layout)
            this.setLayout(parent.layout.contentLength, parent.layout.pieceLength);
          this.changed.notify();
        })
        .catch((err) => {
          if (this.mode === 'done' || parent.closed) return;
          this.dropParent(parent, `piece sync failed: ${(err as Error).message}`);
        });
    }
    this.changed.notify();
  }

  private dropParent(parent: Parent, reason: string): void {
    if (!this.parents.has(parent.id)) return;
    this.log.warn({ parent: parent.id, reason }, 'dropping parent');
    parent.close();
    this.parents.delete(parent.id);
    this.failedParents.add(parent.id);
    this.changed.notify();
  }

  /** The wanted pieces not stored yet, starting at this peer's random rotation. */
  private missing(): number[] {
    if (!this.layout) return [];
    const out: number[] = [];
    const n = this.layout.pieceCount;
    const start = Math.floor(this.rotation * n);
    for (let i = 0; i < n; i++) {
      const number = (start + i) % n;
      if (this.isWanted(number) && !this.deps.storage.hasPiece(this.taskId, number)) out.push(number);
    }
    return out;
  }

  private isWanted(number: number): boolean {
    if (this.wantedRanges === null) return true;
    const { pieceLength } = this.layout!;
    const first = number * pieceLength;
    const last = first + pieceLength - 1;
    return this.wantedRanges.some((r) => r.start <= last && r.start + r.length - 1 >= first);
  }

  /** Every piece of the task stored (not only the wanted ones). */
  private complete(): boolean {
    return this.deps.storage.listPieces(this.taskId).length === this.layout!.pieceCount;
  }

  /** Nothing in flight or startable for STALL_MS while pieces are missing: see STALL_MS. */
  private handleStall(missing: number[]): void {
    if (this.fetches > 0 || performance.now() - this.lastProgress < STALL_MS || missing.length === 0) return;
    this.lastProgress = performance.now();
    if (++this.stalls < STALLS_BEFORE_DROP) {
      if (this.rescheduling) return;
      this.rescheduling = true;
      this.send({
        case: 'reschedulePeer',
        value: { failedParentIds: [], description: 'no parent offers the pieces still needed' },
      });
      return;
    }
    this.stalls = 0;
    for (const parent of [...this.parents.values()]) {
      if (isDeadEnd(parent, missing)) this.dropParent(parent, 'it holds none of the pieces still needed');
    }
  }

  private startP2P(): void {
    if (this.p2pRunning || this.mode === 'source' || this.mode === 'done') return;
    this.mode = 'p2p';
    this.p2pRunning = true;
    this.p2pLoop()
      .catch((err) => this.outcome.reject(err as Error))
      .finally(() => {
        this.p2pRunning = false;
      });
  }

  /** Keeps up to concurrentPieceCount piece downloads going, spread over the parents by speed. */
  private async p2pLoop(): Promise<void> {
    const abort = new AbortController();
    try {
      while (this.mode === 'p2p') {
        // One walk over the pieces per turn: picks below only move pieces into flight.
        const missing = this.missing();
        if (this.layout && missing.length === 0 && this.fetches === 0) {
          await this.finish(false);
          return;
        }
        while (this.fetches < this.deps.concurrentPieceCount) {
          let pick = this.pickPiece(missing);
          if (!pick) {
            pick = this.pickSlowPiece();
            if (pick) this.deps.metrics.pieceHedges.inc();
          }
          if (!pick) break;
          this.lastProgress = performance.now();
          void this.fetchFromParent(pick.number, pick.parent, abort.signal);
        }
        this.handleStall(missing);
        if (this.parents.size === 0 && this.fetches === 0 && !this.rescheduling) {
          this.rescheduling = true;
          this.send({
            case: 'reschedulePeer',
            value: { failedParentIds: [...this.failedParents], description: 'no usable parent left' },
          });
        }
        await this.changed.wait(500);
      }
    } finally {
      abort.abort();
    }
  }

  /** Parents that can take one more request now, and how many each may have at once. */
  private usableParents(): { usable: Parent[]; cap: number } {
    const now = Date.now();
    const usable = [...this.parents.values()].filter((p) => !p.closed && p.busyUntil <= now);
    const cap = Math.max(2, Math.ceil(this.deps.concurrentPieceCount / Math.max(usable.length, 1)) + 1);
    return { usable: usable.filter((p) => p.inFlight < cap), cap };
  }

  /**
   * Rarest first: of the pieces that can start now, the one held by the fewest parents (ties: this
   * peer's own random rotation, so peers that start together fetch different pieces and can trade).
   * Pieces only the seed holds go first, while the common ones come from other peers; a seed uploads each
   * piece once and defers the others who ask (Parent.offers), who then get it from the peer that has it.
   */
  private pickPiece(missing: number[]): { number: number; parent: Parent } | null {
    const { usable } = this.usableParents();
    if (usable.length === 0) return null;
    const now = Date.now();
    let best: { number: number; holders: Parent[] } | null = null;
    for (const number of missing) {
      if (this.inFlight.has(number) || !this.digests.has(number)) continue;
      const holders = usable.filter((p) => p.offers(number, now));
      if (holders.length === 0 || (best && holders.length >= best.holders.length)) continue;
      best = { number, holders };
      if (holders.length === 1) break;
    }
    return best && { number: best.number, parent: chooseParent(best.holders) };
  }

  /**
   * Switching away from a slow parent: when no new piece can be started, a piece that has taken far
   * longer than its parent's speed promises is also requested from another parent; the first verified
   * copy wins and the other request is cancelled.
   */
  private pickSlowPiece(): { number: number; parent: Parent } | null {
    // One second copy at a time, and none while the host has a full load of fetches (its downloads
    // together): when the node's own link is the slow part, every piece looks slow and copies only split
    // that link further (bench/mirror.ts at N=20 saw 718 copies for 520 pieces; with five layers
    // downloading at once, one copy for every second piece).
    if (this.deps.hostFetches.inFlight >= this.deps.concurrentPieceCount) return null;
    for (const running of this.inFlight.values()) if (running.length > 1) return null;
    const { usable } = this.usableParents();
    const now = performance.now();
    for (const [number, running] of this.inFlight) {
      if (running.length !== 1) continue;
      const { parent, started } = running[0]!;
      const expected = parent.speed > 0 ? (this.layout!.pieceLength / parent.speed) * 1000 : HEDGE_AFTER_MS;
      if (now - started < Math.max(HEDGE_AFTER_MS, 3 * expected)) continue;
      if (running[0]!.arrived) continue;
      const others = usable.filter((p) => p !== parent && p.offers(number, Date.now()));
      if (others.length > 0) return { number, parent: chooseParent(others) };
    }
    return null;
  }

  private async fetchFromParent(number: number, parent: Parent, loopSignal: AbortSignal): Promise<void> {
    const layout = this.layout!;
    const range = pieceRange(number, layout.contentLength, layout.pieceLength);
    const me: InFlightFetch = {
      parent,
      started: performance.now(),
      abort: new AbortController(),
      arrived: false,
    };
    const running = this.inFlight.get(number) ?? [];
    running.push(me);
    this.inFlight.set(number, running);
    this.fetches++;
    this.deps.hostFetches.inFlight++;
    parent.inFlight++;
    const signal = AbortSignal.any([loopSignal, me.abort.signal]);
    let data: Buffer | undefined;
    try {
      await this.deps.downloadLimiter.take(range.length, signal);
      data = await parent.fetchPiece(this.taskId, number, this.deps.pieceTimeoutMs, signal);
      me.arrived = true;
      const digest = await pieceHasher.digest(data);
      const expected = this.digests.get(number);
      if (data.length !== range.length || digest !== expected) {
        this.deps.metrics.pieceVerifyFailures.inc();
        this.send({
          case: 'downloadPieceFailed',
          value: {
            pieceNumber: number,
            parentId: parent.id,
            temporary: false,
            description: 'digest mismatch',
          },
        });
        this.dropParent(parent, `piece ${number} failed verification (got ${digest}, want ${expected})`);
        return;
      }
      if (me.abort.signal.aborted || this.deps.storage.hasPiece(this.taskId, number)) return; // a hedged copy won
      for (const other of running) if (other !== me) other.abort.abort();
      await this.deps.storage.writePiece(this.taskId, { ...range, digest }, data);
      // A copy asked for while this one was being verified or stored would otherwise run on (up to the
      // piece timeout) and hold the download open after its last piece.
      for (const other of running) if (other !== me) other.abort.abort();
      this.lastProgress = performance.now();
      this.stalls = 0;
      const costMs = Math.round(performance.now() - me.started);
      parent.recordSpeed(data.length, costMs);
      parent.failures = 0;
      this.account('p2p', data.length);
      this.send({
        case: 'downloadPieceFinished',
        value: { piece: this.piece(range, digest, parent.id, costMs) },
      });
    } catch (err) {
      if (signal.aborted || parent.closed || this.mode !== 'p2p') return;
      if (err instanceof PieceFetchError && err.busy) {
        parent.busyUntil = Date.now() + 300;
        return;
      }
      if (err instanceof PieceFetchError && err.deferredMs > 0) {
        parent.defer(number, err.deferredMs);
        return;
      }
      parent.failures++;
      this.deps.metrics.pieceFailures.inc({ type: 'p2p' });
      this.send({
        case: 'downloadPieceFailed',
        value: {
          pieceNumber: number,
          parentId: parent.id,
          temporary: true,
          description: (err as Error).message,
        },
      });
      if (parent.failures >= 3 || !parent.pieces.has(number)) {
        this.dropParent(parent, (err as Error).message);
      }
    } finally {
      // fetchPiece's buffer: verified, written (writePiece has settled) or dropped; nothing holds it now.
      pieceBuffers.give(data);
      parent.inFlight--;
      this.fetches--;
      this.deps.hostFetches.inFlight--;
      running.splice(running.indexOf(me), 1);
      if (running.length === 0) this.inFlight.delete(number);
      this.changed.notify();
    }
  }

  private piece(
    range: { number: number; offset: number; length: number },
    digest: string,
    parentId = '',
    costMs = 0,
  ): Piece {
    return create(PieceSchema, { ...range, digest, parentId, costMs });
  }

  private account(type: 'p2p' | 'back_to_source', bytes: number): void {
    this.deps.metrics.downloadTraffic.inc({ type }, bytes);
    this.deps.metrics.downloadPieces.inc({ type });
    if (type === 'p2p') this.progress.p2pBytes += bytes;
    else this.progress.sourceBytes += bytes;
    this.progress.completedLength += bytes;
    this.emit('progress', this.progress);
  }

  private startBackToSource(report: boolean): void {
    if (this.mode === 'source' || this.mode === 'done') return;
    if (this.request.disableBackToSource || !mayBackToSource(this.request.priority ?? 0)) {
      const why = this.request.disableBackToSource
        ? 'back-to-source is disabled'
        : 'priority 2 forbids the source';
      this.outcome.reject(new DownloadError(`no peer has this task and ${why}`));
      return;
    }
    this.mode = 'source';
    for (const p of this.parents.values()) p.close();
    this.parents.clear();
    this.changed.notify();
    this.backToSource(report).catch((err: Error) => {
      if (report) this.send({ case: 'downloadPeerBackToSourceFailed', value: { description: err.message } });
      this.outcome.reject(err);
    });
  }

  /** Fetches every missing piece from the origin (ranged GETs, several at once) and reports digests. */
  private async backToSource(report: boolean): Promise<void> {
    // Wait for in-flight peer downloads to settle so no piece is written twice at once.
    while (this.fetches > 0) await this.changed.wait(100);
    const { url, headers } = this.request;
    const info = await statSource(url, headers);
    const pieceLength =
      this.layout?.pieceLength ?? this.request.pieceLength ?? pieceLengthFor(info.contentLength);
    if (info.contentLength >= 0) {
      if (this.layout && this.layout.contentLength !== info.contentLength) {
        this.log.warn('the source size differs from what peers reported; starting over from the source');
        this.layout = null;
      }
      this.setLayout(info.contentLength, pieceLength);
    }
    if (report) {
      this.send({
        case: 'downloadPeerBackToSourceStarted',
        value: { contentLength: info.contentLength, pieceLength },
      });
    }
    const fetcher = new SourceFetcher(
      this.taskId,
      { url, headers },
      {
        storage: this.deps.storage,
        downloadLimiter: this.deps.downloadLimiter,
        metrics: this.deps.metrics,
        concurrency: this.deps.backToSourceConcurrency,
        hostSlots: this.deps.sourceSlots,
        retries: this.deps.sourceRetries,
      },
      (piece) => {
        this.account('back_to_source', piece.length);
        if (report) {
          this.send({
            case: 'downloadPieceBackToSourceFinished',
            value: { piece: this.piece(piece, piece.digest, '', piece.costMs) },
          });
        }
      },
    );
    if (info.supportsRange && this.layout) {
      // Ranges wanted by later readers (want()) arrive while fetching: go round until none is missing.
      for (let missing = this.missing(); missing.length > 0; missing = this.missing()) {
        await fetcher.fetchRanges(missing, this.layout.contentLength, this.layout.pieceLength);
      }
    } else {
      // Unknown length: record the task now; its size is fixed once the body ends.
      if (!this.layout) this.putTask(-1, pieceLength);
      await fetcher.fetchSequential(pieceLength, this.layout?.contentLength ?? null, (total) => {
        if (!this.layout) this.setLayout(total, pieceLength);
      });
    }
    await this.finish(report);
  }

  private async finish(fromSource: boolean): Promise<void> {
    if (this.mode === 'done') return;
    const layout = this.layout!;
    const missing = this.missing();
    if (missing.length > 0) throw new DownloadError(`${missing.length} pieces still missing`);
    this.mode = 'done';
    // A ranged download may leave other pieces missing: the task stays incomplete (and is no seed for them).
    if (this.complete()) this.deps.storage.markSucceeded(this.taskId);
    if (fromSource) {
      this.send({
        case: 'downloadPeerBackToSourceFinished',
        value: { contentLength: layout.contentLength, pieceCount: layout.pieceCount },
      });
    } else {
      this.send({ case: 'downloadPeerFinished', value: { contentLength: layout.contentLength } });
    }
    this.outcome.resolve();
  }
}

/** A seed's share of the choice when a normal peer holds the same piece: keep its upload for rare pieces. */
const SEED_WEIGHT = 0.25;

/** Unprobed parents first (to learn their speed), then weighted random by speed and load. */
function chooseParent(holders: Parent[]): Parent {
  const fresh = holders.find((p) => p.speed === 0 && p.inFlight === 0);
  if (fresh) return fresh;
  const weights = holders.map((p) => ((p.speed || 1) / (p.inFlight + 1)) * (p.seed ? SEED_WEIGHT : 1));
  let r = Math.random() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < holders.length; i++) {
    r -= weights[i]!;
    if (r <= 0) return holders[i]!;
  }
  return holders[holders.length - 1]!;
}
