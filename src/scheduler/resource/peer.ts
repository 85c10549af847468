import { create } from '@bufbuild/protobuf';
import {
  type AnnouncePeerResponse,
  type Download,
  type Peer as PeerMessage,
  PeerSchema,
} from '../../rpc/index.js';
import type { Host } from './host.js';
import type { Task } from './task.js';

/**
 * Dragonfly's peer states (the Tiny/Small size scopes do not exist here: every non-empty task is
 * "Normal"). Failed and Leave are terminal; Succeeded only moves to Leave.
 */
export type PeerState =
  | 'Pending'
  | 'ReceivedEmpty'
  | 'ReceivedNormal'
  | 'Running'
  | 'BackToSource'
  | 'Succeeded'
  | 'Failed'
  | 'Leave';

/** Rolling window of piece costs kept per peer (Dragonfly keeps 2000). */
export const PIECE_COST_WINDOW = 2000;

/** What the service hangs on a peer while its AnnouncePeer stream is open. */
export interface PeerConnection {
  readonly open: boolean;
  send(response: AnnouncePeerResponse): void;
  /** Ends the response stream (after what was sent). */
  end(): void;
}

export class Peer {
  state: PeerState = 'Pending';
  readonly finishedPieces = new Set<number>();
  /** Parents this peer must not be offered again (failed, rescheduled away from, corrupt). */
  readonly blockList = new Set<string>();
  /** Costs (ms) of the pieces this peer served to children, newest last. */
  readonly pieceCosts: number[] = [];
  /** Ever fetched from the source (set on BackToSource, stays after Succeeded). */
  backToSource = false;
  /** When the scheduler answered need_back_to_source; the peer counts as a coming data source. */
  toldBackToSourceAt: number | undefined;
  /**
   * Hops from the source through the parents the scheduler gave (1 + the least depth of those parents;
   * 0 without parents, as for a peer fetching from the source). Set when parents are given.
   */
  depth = 0;
  /** Empty schedules so far (continues across reschedules). */
  scheduleCount = 0;
  /** Set while a schedule loop is pending for this peer. */
  scheduleTimer: NodeJS.Timeout | undefined;
  scheduleStartedAt: number | undefined;
  scheduling = false;
  connection: PeerConnection | undefined;
  readonly createdAt: number;
  updatedAt: number;

  constructor(
    readonly id: string,
    readonly task: Task,
    readonly host: Host,
    readonly download: Download,
    now: number,
  ) {
    this.createdAt = now;
    this.updatedAt = now;
  }

  get finishedPieceCount(): number {
    return this.finishedPieces.size;
  }

  get parentCount(): number {
    return this.task.dag.parents(this.id).length;
  }

  get downloadingChildren(): Peer[] {
    const children: Peer[] = [];
    for (const id of this.task.dag.children(this.id)) {
      const child = this.task.peers.get(id);
      if (child && child.state !== 'Succeeded' && !child.isTerminal()) children.push(child);
    }
    return children;
  }

  isTerminal(): boolean {
    return this.state === 'Failed' || this.state === 'Leave';
  }

  /** Finished, or neither failed nor gone. */
  isAlive(): boolean {
    return !this.isTerminal();
  }

  recordPieceCost(costMs: number): void {
    if (!Number.isFinite(costMs) || costMs < 0) return;
    this.pieceCosts.push(costMs);
    if (this.pieceCosts.length > PIECE_COST_WINDOW) this.pieceCosts.shift();
  }

  toProto(): PeerMessage {
    const count = this.task.pieceCount;
    const finished = this.state === 'Succeeded' && count > 0 ? count : this.finishedPieces.size;
    return create(PeerSchema, {
      id: this.id,
      host: this.host.toProto(),
      finishedPieces: finished,
      backToSource: this.backToSource,
      state: this.state,
    });
  }
}
