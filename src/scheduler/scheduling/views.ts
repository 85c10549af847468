import type { HostKind } from '../resource/host.js';
import type { PeerState } from '../resource/peer.js';

// Structural views of hosts and peers, so scheduling stays pure and testable with plain objects.
// The resource classes (Host, Peer, Dag) satisfy them directly.

export interface HostView {
  readonly id: string;
  readonly type: HostKind;
  readonly idc: string;
  readonly location: string;
  readonly concurrentUploads: number;
  readonly concurrentUploadLimit: number;
  readonly uploadCount: number;
  readonly uploadFailedCount: number;
  readonly txBandwidth: number;
  readonly uploadRateLimit: number;
}

export interface PeerView {
  readonly id: string;
  readonly host: HostView;
  readonly state: PeerState;
  readonly finishedPieceCount: number;
  /** Parents it downloads from right now (its in-degree in the task DAG). */
  readonly parentCount: number;
  /** Hops from the source through its parents (0 for a back-to-source peer). */
  readonly depth: number;
  /** Children in the task DAG that are still downloading (not finished, failed or gone). */
  readonly downloadingChildren: readonly ChildProgress[];
  /** Costs (ms) of the pieces this peer served, newest last. */
  readonly pieceCosts: readonly number[];
}

export interface ChildProgress {
  readonly id: string;
  readonly finishedPieceCount: number;
}

export interface ChildView {
  readonly id: string;
  readonly host: HostView;
  readonly blockList: ReadonlySet<string>;
}

export interface EdgeChecker {
  canAddEdge(parent: string, child: string): boolean;
}
