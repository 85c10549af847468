import { clone, create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { AsyncQueue } from '../async/index.js';
import type { SchedulerConfig } from '../config/index.js';
import type { Logger } from '../observability/index.js';
import {
  type AnnounceHostRequest,
  type AnnouncePeerRequest,
  type AnnouncePeerResponse,
  AnnouncePeerResponseSchema,
  type DownloadPeerBackToSourceFinishedRequest,
  type DownloadPeerBackToSourceStartedRequest,
  type DownloadPieceFailedRequest,
  type DownloadPieceFinishedRequest,
  DownloadSchema,
  type LeaveHostRequest,
  type LeavePeerRequest,
  type Piece,
  type RegisterPeerRequest,
  type ReschedulePeerRequest,
  SchedulerService,
  type SeedTaskResponse,
  SeedTaskResponseSchema,
  type SeedTasksRequest,
  type StatPeerRequest,
  type StatTaskRequest,
} from '../rpc/index.js';
import { firstDownload, mayBackToSource, refusalReason } from '../task/index.js';
import { type ScheduleResult, SchedulerMetrics } from './metrics.js';
import {
  type Host,
  type Peer,
  type PeerConnection,
  type PeerState,
  type RemovalReason,
  ResourceStore,
  type Task,
} from './resource/index.js';
import {
  cheapFilterReason,
  findCandidateParents,
  HashRing,
  hasData,
  TRANSIENT_REASONS,
} from './scheduling/index.js';

/**
 * A failed seed download is not retried for this long (Dragonfly waits 30 min; a short window keeps a
 * flaky origin from pinning every later peer to the source). A trigger whose seed never registered a
 * peer within this long also counts as failed.
 */
export const SEED_RETRY_MS = 30_000;
/** A peer told to go to the source counts as a coming data source for this long (until it starts). */
export const PENDING_SOURCE_GRACE_MS = 30_000;
/** Piece digests reported within this window go out in one message. */
export const DIGEST_BATCH_MS = 5;
/** How often a peer with fewer than candidateParentLimit parents is offered newly useful parents. */
export const PARENT_TOP_UP_MS = 1000;

export interface SchedulerCoreOptions {
  config: SchedulerConfig;
  logger: Logger;
  /** Clock in ms (tests). */
  now?: () => number;
  /** Uniform [0, 1) (tests). */
  random?: () => number;
}

class PeerStream implements PeerConnection {
  readonly outbox = new AsyncQueue<AnnouncePeerResponse>();
  peer: Peer | undefined;

  get open(): boolean {
    return !this.outbox.closed;
  }

  send(response: AnnouncePeerResponse): void {
    this.outbox.push(response);
  }

  end(): void {
    this.outbox.close();
  }
}

function respond(
  response: MessageInitShape<typeof AnnouncePeerResponseSchema>['response'],
): AnnouncePeerResponse {
  return create(AnnouncePeerResponseSchema, { response });
}

const invalid = (msg: string) => new ConnectError(msg, Code.InvalidArgument);

/**
 * The scheduler's behaviour behind the gRPC service: host and peer bookkeeping, the schedule loop,
 * seed triggering and digest relaying. Everything runs on the event loop; there are no locks because
 * every handler is synchronous between awaits.
 */
export class SchedulerCore {
  private readonly config: SchedulerConfig;
  private readonly log: Logger;
  readonly store: ResourceStore;
  readonly metrics: SchedulerMetrics;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly seedStreams = new Map<string, AsyncQueue<SeedTaskResponse>>();
  private readonly peerStreams = new Set<PeerStream>();
  private readonly digestBatches = new Map<
    Task,
    { items: { piece: Piece; from: string }[]; timer: NodeJS.Timeout }
  >();
  private ring: { key: string; ring: HashRing } | undefined;
  private gcTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(opts: SchedulerCoreOptions) {
    this.config = opts.config;
    this.log = opts.logger;
    this.store = new ResourceStore({
      peerRemoved: (peer, reason, previous) => this.peerRemoved(peer, reason, previous),
    });
    this.metrics = new SchedulerMetrics(this.store);
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
  }

  /** Registers the Connect service on a router. */
  readonly routes = (router: ConnectRouter): void => {
    router.service(SchedulerService, {
      announceHost: (req) => {
        this.announceHost(req);
        return {};
      },
      leaveHost: (req) => {
        this.leaveHost(req);
        return {};
      },
      announcePeer: (requests, ctx) => this.announcePeer(requests, ctx),
      statTask: (req) => this.statTask(req),
      statPeer: (req) => this.statPeer(req),
      leavePeer: (req) => {
        this.leavePeer(req);
        return {};
      },
      seedTasks: (req, ctx) => this.seedTasks(req, ctx),
    });
  };

  start(): void {
    this.gcTimer = setInterval(() => this.runGc(), this.config.gc.interval);
    this.gcTimer.unref();
  }

  /** Stops timers and ends every open stream (so the server can close). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.gcTimer);
    for (const b of this.digestBatches.values()) clearTimeout(b.timer);
    this.digestBatches.clear();
    for (const task of this.store.tasks.values()) for (const p of task.peers.values()) this.stopScheduling(p);
    for (const s of this.peerStreams) s.end();
    for (const q of this.seedStreams.values()) q.close();
  }

  runGc(): void {
    const now = this.now();
    const removed = this.store.gc(now, { peerTtl: this.config.gc.peerTtl, taskTtl: this.config.gc.taskTtl });
    for (const id of removed.hosts) this.failInFlightTriggers(id, 'seed host is gone');
    if (removed.hosts.length) this.metrics.gcRemovedTotal.inc({ kind: 'host' }, removed.hosts.length);
    if (removed.peers) this.metrics.gcRemovedTotal.inc({ kind: 'peer' }, removed.peers);
    if (removed.tasks) this.metrics.gcRemovedTotal.inc({ kind: 'task' }, removed.tasks);
    if (removed.hosts.length || removed.peers || removed.tasks) {
      this.log.info(
        { hosts: removed.hosts.length, peers: removed.peers, tasks: removed.tasks },
        'gc reclaimed',
      );
    }
  }

  /** Hosts whose SeedTasks stream is open right now. */
  connectedSeeds(): string[] {
    return [...this.seedStreams.keys()];
  }

  // ---- hosts ----

  announceHost(req: AnnounceHostRequest): void {
    const h = req.host;
    if (!h || h.id === '') throw invalid('host.id is required');
    if (h.ip === '') throw invalid('host.ip is required');
    if (h.uploadPort < 0 || h.uploadPort > 65535) throw invalid('host.upload_port is out of range');
    if (!Number.isFinite(req.intervalMs) || req.intervalMs < 0) throw invalid('interval_ms must be >= 0');
    const known = this.store.hosts.has(h.id);
    this.store.announceHost(h, req.intervalMs, this.now());
    this.metrics.announceHostTotal.inc();
    if (!known) this.log.info({ hostId: h.id, type: h.type, ip: h.ip, port: h.uploadPort }, 'host announced');
  }

  leaveHost(req: LeaveHostRequest): void {
    this.metrics.leaveHostTotal.inc();
    const host = this.store.removeHost(req.hostId, this.now(), 'leave');
    if (!host) return;
    this.failInFlightTriggers(host.id, 'seed host left');
    this.log.info({ hostId: host.id }, 'host left');
  }

  // ---- seed peers ----

  async *seedTasks(req: SeedTasksRequest, ctx: HandlerContext): AsyncGenerator<SeedTaskResponse> {
    if (req.hostId === '') throw invalid('host_id is required');
    if (this.stopped) throw new ConnectError('scheduler is shutting down', Code.Unavailable);
    const queue = new AsyncQueue<SeedTaskResponse>();
    this.seedStreams.get(req.hostId)?.close();
    this.seedStreams.set(req.hostId, queue);
    const onAbort = () => queue.close();
    ctx.signal.addEventListener('abort', onAbort);
    this.log.info({ hostId: req.hostId, announced: this.store.hosts.has(req.hostId) }, 'seed peer connected');
    try {
      for await (const item of queue) yield item;
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      if (this.seedStreams.get(req.hostId) === queue) {
        this.seedStreams.delete(req.hostId);
        this.failInFlightTriggers(req.hostId, 'seed peer disconnected');
        this.log.info({ hostId: req.hostId }, 'seed peer disconnected');
      }
    }
  }

  /** Hosts with an open SeedTasks stream that are announced and alive, other than `except`. */
  private availableSeeds(except: Host): Host[] {
    const now = this.now();
    const seeds: Host[] = [];
    for (const id of this.seedStreams.keys()) {
      const host = this.store.hosts.get(id);
      if (host && host !== except && !host.isDead(now)) seeds.push(host);
    }
    return seeds;
  }

  private pickSeed(taskId: string, seeds: Host[]): Host {
    const ids = seeds.map((s) => s.id).sort();
    const key = ids.join('\n');
    if (this.ring?.key !== key) this.ring = { key, ring: new HashRing(ids) };
    const id = this.ring.ring.pick(taskId)!;
    return seeds.find((s) => s.id === id)!;
  }

  private seedTriggerFailed(task: Task, now: number): boolean {
    const t = task.seedTrigger;
    if (!t) return false;
    if (t.failedAt !== undefined) return true;
    return t.peerId === undefined && now - t.at > SEED_RETRY_MS;
  }

  private markSeedTriggerFailed(task: Task, why: string): void {
    const t = task.seedTrigger;
    if (!t || t.failedAt !== undefined) return;
    t.failedAt = this.now();
    this.metrics.seedTriggerFailedTotal.inc();
    this.log.warn({ taskId: task.id, hostId: t.hostId, reason: why }, 'seed download failed');
  }

  private failInFlightTriggers(hostId: string, why: string): void {
    for (const task of this.store.tasks.values()) {
      const t = task.seedTrigger;
      if (t && t.hostId === hostId && t.peerId === undefined) this.markSeedTriggerFailed(task, why);
    }
  }

  /** Asks a seed to fetch the task unless one is on it or failed within SEED_RETRY_MS. */
  private maybeTriggerSeed(task: Task, peer: Peer, seeds: Host[], now: number): void {
    const t = task.seedTrigger;
    if (t) {
      if (!this.seedTriggerFailed(task, now)) return;
      if (t.failedAt === undefined) this.markSeedTriggerFailed(task, 'seed peer never registered');
      if (now - t.failedAt! <= SEED_RETRY_MS) return;
    }
    const seed = this.pickSeed(task.id, seeds);
    const download = clone(DownloadSchema, peer.download);
    download.needBackToSource = true;
    this.seedStreams.get(seed.id)!.push(create(SeedTaskResponseSchema, { taskId: task.id, download }));
    task.seedTrigger = { hostId: seed.id, at: now };
    this.metrics.seedTriggerTotal.inc();
    this.log.info({ taskId: task.id, peerId: peer.id, seedHostId: seed.id }, 'seed peer triggered');
  }

  // ---- peers ----

  async *announcePeer(
    requests: AsyncIterable<AnnouncePeerRequest>,
    ctx: HandlerContext,
  ): AsyncGenerator<AnnouncePeerResponse> {
    if (this.stopped) throw new ConnectError('scheduler is shutting down', Code.Unavailable);
    this.metrics.announcePeerTotal.inc();
    const stream = new PeerStream();
    this.peerStreams.add(stream);
    const onAbort = () => stream.outbox.close();
    ctx.signal.addEventListener('abort', onAbort);
    void this.pumpRequests(requests, stream);
    try {
      for await (const response of stream.outbox) yield response;
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      stream.outbox.close();
      this.peerStreams.delete(stream);
      this.streamClosed(stream);
    }
  }

  private async pumpRequests(
    requests: AsyncIterable<AnnouncePeerRequest>,
    stream: PeerStream,
  ): Promise<void> {
    try {
      for await (const req of requests) {
        if (!stream.open) break;
        this.handlePeerRequest(stream, req);
      }
      stream.outbox.close();
    } catch (err) {
      if (err instanceof ConnectError) {
        if (err.code !== Code.Canceled) this.log.debug({ err: err.message }, 'announce peer stream error');
        stream.outbox.close(err);
      } else {
        this.log.error({ err }, 'announce peer handler failed');
        stream.outbox.close(new ConnectError('internal error', Code.Internal));
      }
    }
  }

  private streamClosed(stream: PeerStream): void {
    const peer = stream.peer;
    if (!peer || peer.connection !== stream) return;
    peer.connection = undefined;
    this.stopScheduling(peer);
    if (peer.state !== 'Succeeded' && !peer.isTerminal()) {
      this.store.removePeer(peer, this.now(), 'stream-closed');
    }
  }

  /** Store callback: a peer is gone from its task. */
  private peerRemoved(peer: Peer, reason: RemovalReason, previous: PeerState): void {
    this.stopScheduling(peer);
    const conn = peer.connection;
    peer.connection = undefined;
    if (conn?.open) conn.end();
    const t = peer.task.seedTrigger;
    if (t?.peerId === peer.id) {
      // A seed that finished and later dropped the task may be asked again; one that vanished mid-way failed.
      if (previous === 'Succeeded') peer.task.seedTrigger = undefined;
      else this.markSeedTriggerFailed(peer.task, `seed peer removed (${reason})`);
    }
    this.log.debug({ taskId: peer.task.id, peerId: peer.id, reason, previous }, 'peer removed');
  }

  handlePeerRequest(stream: PeerStream, req: AnnouncePeerRequest): void {
    const r = req.request;
    if (!stream.peer) {
      if (r.case !== 'registerPeer') throw invalid('the first message must be register_peer');
      this.registerPeer(stream, req, r.value);
      return;
    }
    const peer = stream.peer;
    if (peer.connection !== stream) {
      // Re-registered elsewhere or removed (LeavePeer, GC): this stream no longer speaks for it.
      stream.end();
      return;
    }
    if (req.peerId !== peer.id || req.taskId !== peer.task.id) {
      throw invalid('task_id and peer_id must match the registered peer');
    }
    peer.updatedAt = this.now();
    switch (r.case) {
      case 'registerPeer':
        throw invalid('peer is already registered on this stream');
      case 'downloadPeerStarted':
        if (peer.state === 'ReceivedNormal' || peer.state === 'ReceivedEmpty') peer.state = 'Running';
        return;
      case 'downloadPeerBackToSourceStarted':
        this.backToSourceStarted(peer, r.value);
        return;
      case 'reschedulePeer':
        this.reschedule(peer, r.value);
        return;
      case 'downloadPeerFinished':
        this.peerFinished(peer, r.value.contentLength, 0, 'p2p');
        return;
      case 'downloadPeerBackToSourceFinished':
        this.peerBackToSourceFinished(peer, r.value);
        return;
      case 'downloadPeerFailed':
        this.peerFailed(peer, r.value.description, 'p2p');
        return;
      case 'downloadPeerBackToSourceFailed':
        this.peerFailed(peer, r.value.description, 'back_to_source');
        return;
      case 'downloadPieceFinished':
        this.pieceFinished(peer, r.value);
        return;
      case 'downloadPieceBackToSourceFinished':
        if (!r.value.piece) throw invalid('piece is required');
        this.pieceBackToSourceFinished(peer, r.value.piece);
        return;
      case 'downloadPieceFailed':
        this.pieceFailed(peer, r.value);
        return;
      default:
        throw invalid('empty request');
    }
  }

  private registerPeer(stream: PeerStream, req: AnnouncePeerRequest, reg: RegisterPeerRequest): void {
    if (req.hostId === '' || req.taskId === '' || req.peerId === '') {
      throw invalid('host_id, task_id and peer_id are required');
    }
    const host = this.store.hosts.get(req.hostId);
    if (!host) throw new ConnectError('host not announced', Code.FailedPrecondition);
    const now = this.now();
    const download = reg.download ?? create(DownloadSchema);
    this.metrics.registerPeerTotal.inc();
    const task = this.store.getOrCreateTask(req.taskId, download, now);
    const peer = this.store.addPeer(task, host, req.peerId, download, now);
    peer.connection = stream;
    stream.peer = peer;
    const stateBefore = task.state;
    if (task.state !== 'Succeeded') task.state = 'Running';
    const log = this.log.child({ taskId: task.id, peerId: peer.id });
    log.info(
      { hostId: host.id, url: download.url, needBackToSource: download.needBackToSource },
      'peer registered',
    );

    if (download.needBackToSource) {
      peer.state = 'ReceivedNormal';
      const t = task.seedTrigger;
      if (t && t.hostId === host.id && t.peerId === undefined) {
        // The triggered seed took the job (late or not, it is the one doing it now).
        t.peerId = peer.id;
        t.failedAt = undefined;
      }
      this.tellBackToSource(peer, 'download from the source was requested');
      return;
    }
    if (task.state === 'Succeeded' && task.contentLength === 0) {
      peer.state = 'ReceivedEmpty';
      stream.send(respond({ case: 'emptyTask', value: {} }));
      return;
    }
    peer.state = 'ReceivedNormal';
    if (!this.taskHasDataSource(task, peer, now)) {
      const plan = firstDownload(download.priority);
      if (plan === 'forbidden' || plan === 'peers-only') {
        this.failPeer(peer, refusalReason(plan));
        task.state = stateBefore; // nothing was started for it
        return;
      }
      const seedWanted = plan === 'seed' && this.config.seedPeer.enable && host.type === 'normal';
      const seeds = seedWanted ? this.availableSeeds(host) : [];
      if (seeds.length > 0) {
        this.maybeTriggerSeed(task, peer, seeds, now);
      } else if (this.canBackToSource(peer)) {
        this.tellBackToSource(peer, 'no peer has this task and no seed peer is available');
        return;
      }
    }
    this.startScheduling(peer);
  }

  private backToSourceStarted(peer: Peer, v: DownloadPeerBackToSourceStartedRequest): void {
    if (peer.isTerminal() || peer.state === 'Succeeded') return;
    this.stopScheduling(peer);
    peer.state = 'BackToSource';
    peer.backToSource = true;
    // Its data no longer depends on parents.
    peer.task.dag.deleteInEdges(peer.id);
    peer.depth = 0;
    this.setTaskLengths(peer, v.contentLength, v.pieceLength);
  }

  private reschedule(peer: Peer, v: ReschedulePeerRequest): void {
    for (const id of v.failedParentIds) if (id !== '') peer.blockList.add(id);
    if (peer.state !== 'ReceivedNormal' && peer.state !== 'Running') {
      this.log.debug({ taskId: peer.task.id, peerId: peer.id, state: peer.state }, 'reschedule ignored');
      return;
    }
    this.log.debug(
      { taskId: peer.task.id, peerId: peer.id, blocked: v.failedParentIds, reason: v.description },
      'reschedule',
    );
    this.startScheduling(peer);
  }

  private pieceFinished(peer: Peer, v: DownloadPieceFinishedRequest): void {
    const piece = v.piece;
    if (!piece) throw invalid('piece is required');
    if (peer.isTerminal()) return;
    peer.finishedPieces.add(piece.number);
    if (peer.state === 'ReceivedNormal') peer.state = 'Running';
    this.metrics.pieceFinishedTotal.inc({ type: 'p2p' });
    const parent = piece.parentId === '' ? undefined : peer.task.peers.get(piece.parentId);
    if (parent) {
      parent.host.uploadCount++;
      parent.recordPieceCost(piece.costMs);
      parent.updatedAt = this.now();
    }
    this.log.debug(
      {
        taskId: peer.task.id,
        hostId: peer.host.id,
        piece: piece.number,
        parentHostId: parent?.host.id,
        costMs: piece.costMs,
      },
      'piece finished',
    );
  }

  private pieceBackToSourceFinished(peer: Peer, piece: Piece): void {
    if (peer.isTerminal()) return;
    const task = peer.task;
    peer.finishedPieces.add(piece.number);
    peer.backToSource = true;
    if (peer.state !== 'Succeeded') peer.state = 'BackToSource';
    this.metrics.pieceFinishedTotal.inc({ type: 'back_to_source' });
    this.log.debug(
      { taskId: task.id, hostId: peer.host.id, piece: piece.number, costMs: piece.costMs },
      'piece finished from source',
    );
    if (piece.digest === '') return;
    const known = task.pieces.get(piece.number);
    if (known) {
      if (known.digest !== piece.digest) {
        this.log.warn(
          {
            taskId: task.id,
            peerId: peer.id,
            piece: piece.number,
            recorded: known.digest,
            reported: piece.digest,
          },
          'back-to-source peers disagree on a piece digest; keeping the first',
        );
      }
      return;
    }
    task.recordPiece(piece);
    this.queueDigest(task, task.pieces.get(piece.number)!, peer.id);
  }

  private pieceFailed(peer: Peer, v: DownloadPieceFailedRequest): void {
    this.metrics.pieceFailedTotal.inc({ temporary: String(v.temporary) });
    if (v.parentId === '') return;
    const parent = peer.task.peers.get(v.parentId);
    if (parent) parent.host.uploadFailedCount++;
    // Dragonfly blocks the parent for this child on any piece failure; corrupt data makes it permanent
    // (nothing ever removes an entry from the block list).
    peer.blockList.add(v.parentId);
    const fields = { taskId: peer.task.id, peerId: peer.id, parentId: v.parentId, piece: v.pieceNumber };
    if (v.temporary) this.log.debug({ ...fields, reason: v.description }, 'piece download failed');
    else this.log.warn({ ...fields, reason: v.description }, 'parent served corrupt data; blocked');
  }

  private peerFinished(
    peer: Peer,
    contentLength: number,
    pieceCount: number,
    type: 'p2p' | 'back_to_source',
  ): void {
    if (peer.isTerminal() || peer.state === 'Succeeded') return;
    const task = peer.task;
    this.stopScheduling(peer);
    // A zero length from a peer that moved pieces is a missing field, not an empty file.
    const cl =
      contentLength === 0 && (peer.finishedPieces.size > 0 || task.pieces.size > 0) ? -1 : contentLength;
    this.setTaskLengths(peer, cl, 0);
    if (pieceCount > 0 && task.reportedPieceCount === 0) task.reportedPieceCount = pieceCount;
    peer.state = 'Succeeded';
    task.state = 'Succeeded';
    task.dag.deleteInEdges(peer.id);
    this.metrics.peerFinishedTotal.inc({ type });
    this.log.info(
      { taskId: task.id, peerId: peer.id, contentLength: task.contentLength, type },
      'peer finished',
    );
  }

  private peerBackToSourceFinished(peer: Peer, v: DownloadPeerBackToSourceFinishedRequest): void {
    peer.backToSource = true;
    this.peerFinished(peer, v.contentLength, v.pieceCount, 'back_to_source');
  }

  private peerFailed(peer: Peer, description: string, type: 'p2p' | 'back_to_source'): void {
    if (peer.isTerminal() || peer.state === 'Succeeded') return;
    const task = peer.task;
    this.stopScheduling(peer);
    peer.state = 'Failed';
    task.dag.deleteVertex(peer.id);
    this.metrics.peerFailedTotal.inc({ type });
    this.log.warn({ taskId: task.id, peerId: peer.id, type, reason: description }, 'peer failed');
    if (task.seedTrigger?.peerId === peer.id)
      this.markSeedTriggerFailed(task, description || 'seed peer failed');
    if (
      type === 'back_to_source' &&
      task.state === 'Running' &&
      !this.taskHasDataSource(task, peer, this.now())
    ) {
      task.state = 'Failed';
    }
  }

  private setTaskLengths(peer: Peer, contentLength: number, pieceLength: number): void {
    const task = peer.task;
    if (Number.isFinite(contentLength) && contentLength >= 0) {
      if (task.contentLength < 0) task.contentLength = contentLength;
      else if (task.contentLength !== contentLength) {
        this.log.warn(
          { taskId: task.id, peerId: peer.id, known: task.contentLength, reported: contentLength },
          'peers disagree on the content length; keeping the first',
        );
      }
    }
    if (Number.isFinite(pieceLength) && pieceLength > 0) {
      if (task.pieceLength === 0) task.pieceLength = pieceLength;
      else if (task.pieceLength !== pieceLength) {
        this.log.warn(
          { taskId: task.id, peerId: peer.id, known: task.pieceLength, reported: pieceLength },
          'peers disagree on the piece length; keeping the first',
        );
      }
    }
  }

  // ---- digest relay ----

  private queueDigest(task: Task, piece: Piece, from: string): void {
    let batch = this.digestBatches.get(task);
    if (!batch) {
      batch = { items: [], timer: setTimeout(() => this.flushDigests(task), DIGEST_BATCH_MS) };
      this.digestBatches.set(task, batch);
    }
    batch.items.push({ piece, from });
  }

  private flushDigests(task: Task): void {
    const batch = this.digestBatches.get(task);
    this.digestBatches.delete(task);
    if (!batch) return;
    for (const p of task.peers.values()) {
      const conn = p.connection;
      if (!conn?.open || p.isTerminal() || p.state === 'Succeeded') continue;
      const pieces = batch.items.filter((i) => i.from !== p.id).map((i) => i.piece);
      if (pieces.length === 0) continue;
      conn.send(
        respond({
          case: 'pieceDigests',
          value: { pieces, contentLength: task.contentLength, pieceLength: task.pieceLength },
        }),
      );
    }
  }

  // ---- the schedule loop ----

  /** A peer told to go to the source that has not started yet: it will have data soon. */
  private isPendingSource(p: Peer, now: number): boolean {
    return (
      p.toldBackToSourceAt !== undefined &&
      (p.state === 'ReceivedNormal' || p.state === 'Running') &&
      now - p.toldBackToSourceAt <= PENDING_SOURCE_GRACE_MS
    );
  }

  /** Anyone other than `except` has data or is about to fetch it from the source. */
  private taskHasDataSource(task: Task, except: Peer, now: number): boolean {
    for (const p of task.peers.values()) {
      if (p === except || p.isTerminal()) continue;
      if (hasData(p) || this.isPendingSource(p, now)) return true;
    }
    return false;
  }

  /**
   * Some peer could serve `child` once it is less busy or starts fetching: passes every permanent
   * filter (not blocked, not on its host, no cycle). While one exists the child waits without counting.
   */
  private hasUsableSource(child: Peer, now: number): boolean {
    const dag = child.task.dag;
    for (const p of child.task.peers.values()) {
      const r = cheapFilterReason(child, p, this.config.scheduling);
      const usable =
        r === undefined || TRANSIENT_REASONS.has(r) || (r === 'no-data' && this.isPendingSource(p, now));
      if (usable && dag.canAddEdge(p.id, child.id)) return true;
    }
    return false;
  }

  private canBackToSource(peer: Peer): boolean {
    if (peer.download.disableBackToSource || !mayBackToSource(peer.download.priority)) return false;
    const now = this.now();
    let active = 0;
    for (const p of peer.task.peers.values()) {
      if (p !== peer && (p.state === 'BackToSource' || this.isPendingSource(p, now))) active++;
    }
    return active < this.config.scheduling.backToSourceCount;
  }

  private startScheduling(peer: Peer): void {
    if (peer.scheduling) return;
    clearTimeout(peer.scheduleTimer); // a pending parent top-up
    peer.scheduling = true;
    peer.scheduleStartedAt = performance.now();
    this.scheduleAttempt(peer);
  }

  private stopScheduling(peer: Peer): void {
    clearTimeout(peer.scheduleTimer);
    peer.scheduleTimer = undefined;
    peer.scheduling = false;
  }

  private scheduleNext(peer: Peer): void {
    const delay = this.config.scheduling.retryInterval * (0.75 + 0.5 * this.random());
    peer.scheduleTimer = setTimeout(() => {
      peer.scheduleTimer = undefined;
      this.scheduleAttempt(peer);
    }, delay);
  }

  private endSchedule(peer: Peer, result: ScheduleResult): void {
    if (peer.scheduling && peer.scheduleStartedAt !== undefined) {
      this.metrics.scheduleDuration.observe((performance.now() - peer.scheduleStartedAt) / 1000);
    }
    this.stopScheduling(peer);
    this.metrics.scheduleTotal.inc({ result });
  }

  private scheduleAttempt(peer: Peer): void {
    const task = peer.task;
    const conn = peer.connection;
    if (
      this.stopped ||
      !conn?.open ||
      task.peers.get(peer.id) !== peer ||
      (peer.state !== 'ReceivedNormal' && peer.state !== 'Running')
    ) {
      this.stopScheduling(peer);
      return;
    }
    const { scheduling } = this.config;
    const now = this.now();
    const parents = findCandidateParents(peer, task.peers.values(), task.dag, {
      filterParentLimit: scheduling.filterParentLimit,
      candidateParentLimit: scheduling.candidateParentLimit,
      totalPieces: task.pieceCount || task.pieces.size,
      limits: this.config.scheduling,
      random: this.random,
    });
    if (parents.length > 0) {
      task.dag.replaceParents(
        peer.id,
        parents.map((p) => p.id),
      );
      peer.depth = 1 + Math.min(...parents.map((p) => p.depth));
      conn.send(
        respond({
          case: 'normalTask',
          value: { candidateParents: parents.map((p) => p.toProto()), task: task.toInfo() },
        }),
      );
      this.endSchedule(peer, 'normal');
      if (parents.length < scheduling.candidateParentLimit) this.scheduleTopUp(peer);
      this.log.debug(
        { taskId: task.id, peerId: peer.id, parents: parents.map((p) => p.id), attempts: peer.scheduleCount },
        'parents scheduled',
      );
      return;
    }
    if (this.hasUsableSource(peer, now)) {
      this.scheduleNext(peer);
      return;
    }
    peer.scheduleCount++;
    const seedFailed = this.seedTriggerFailed(task, now);
    if (
      (seedFailed || peer.scheduleCount >= scheduling.retryBackToSourceLimit) &&
      this.canBackToSource(peer)
    ) {
      this.tellBackToSource(
        peer,
        seedFailed ? 'the seed peer failed to download the task' : 'no parent found',
      );
      return;
    }
    if (peer.scheduleCount >= scheduling.retryLimit) {
      this.failPeer(
        peer,
        `no parent found after ${peer.scheduleCount} attempts and back-to-source is not allowed`,
      );
      return;
    }
    this.scheduleNext(peer);
  }

  private scheduleTopUp(peer: Peer): void {
    peer.scheduleTimer = setTimeout(() => {
      peer.scheduleTimer = undefined;
      this.topUpParents(peer);
    }, PARENT_TOP_UP_MS);
  }

  /**
   * Peers that start together first see only the seed; as they get data they become useful parents for
   * each other. A peer below candidateParentLimit parents is offered such new parents as they appear
   * (an extra normal_task holding only the new ones; the daemon adds them to those it has).
   */
  private topUpParents(peer: Peer): void {
    const task = peer.task;
    const conn = peer.connection;
    if (this.stopped || peer.scheduling || !conn?.open || task.peers.get(peer.id) !== peer) return;
    if (peer.state !== 'Running' && peer.state !== 'ReceivedNormal') return;
    const limit = this.config.scheduling.candidateParentLimit;
    const current = new Set(task.dag.parents(peer.id));
    if (current.size >= limit) return;
    const fresh = findCandidateParents(peer, task.peers.values(), task.dag, {
      filterParentLimit: this.config.scheduling.filterParentLimit,
      candidateParentLimit: limit,
      totalPieces: task.pieceCount || task.pieces.size,
      limits: this.config.scheduling,
      random: this.random,
    })
      .filter((p) => !current.has(p.id))
      .slice(0, limit - current.size);
    for (const p of fresh) {
      task.dag.addEdge(p.id, peer.id);
      peer.depth = Math.min(peer.depth, 1 + p.depth);
    }
    if (fresh.length > 0) {
      conn.send(
        respond({
          case: 'normalTask',
          value: { candidateParents: fresh.map((p) => p.toProto()), task: task.toInfo() },
        }),
      );
      this.metrics.scheduleTotal.inc({ result: 'top_up' });
    }
    if (current.size + fresh.length < limit) this.scheduleTopUp(peer);
  }

  private tellBackToSource(peer: Peer, description: string): void {
    peer.toldBackToSourceAt = this.now();
    peer.task.dag.deleteInEdges(peer.id);
    peer.connection?.send(respond({ case: 'needBackToSource', value: { description } }));
    this.endSchedule(peer, 'back_to_source');
    this.log.info({ taskId: peer.task.id, peerId: peer.id, reason: description }, 'peer sent back to source');
  }

  /** Ends the peer's download with `failed`: no parent, or its priority forbids what is possible. */
  private failPeer(peer: Peer, description: string): void {
    const conn = peer.connection;
    conn?.send(respond({ case: 'failed', value: { description } }));
    this.endSchedule(peer, 'failed');
    peer.state = 'Failed';
    peer.task.dag.deleteVertex(peer.id);
    this.metrics.peerFailedTotal.inc({ type: 'p2p' });
    this.log.warn({ taskId: peer.task.id, peerId: peer.id, reason: description }, 'peer failed');
    conn?.end();
  }

  // ---- stats ----

  statTask(req: StatTaskRequest) {
    const task = this.store.tasks.get(req.taskId);
    if (!task) throw new ConnectError(`task ${req.taskId} not found`, Code.NotFound);
    return {
      task: task.toInfo(),
      state: task.state,
      peers: [...task.peers.values()].map((p) => p.toProto()),
    };
  }

  statPeer(req: StatPeerRequest) {
    const peer = this.store.findPeer(req.taskId, req.peerId);
    if (!peer) throw new ConnectError(`peer ${req.peerId} of task ${req.taskId} not found`, Code.NotFound);
    return { peer: peer.toProto(), parentIds: peer.task.dag.parents(peer.id) };
  }

  leavePeer(req: LeavePeerRequest): void {
    const peer = this.store.findPeer(req.taskId, req.peerId);
    if (!peer) throw new ConnectError(`peer ${req.peerId} of task ${req.taskId} not found`, Code.NotFound);
    this.store.removePeer(peer, this.now(), 'leave');
  }
}
