import { create } from '@bufbuild/protobuf';
import { type Download, type Piece, PieceSchema, type TaskInfo, TaskInfoSchema } from '../../rpc/index.js';
import { pieceCount } from '../../task/index.js';
import { Dag } from './dag.js';
import type { Peer } from './peer.js';

export type TaskState = 'Pending' | 'Running' | 'Succeeded' | 'Failed';

/** The scheduler asked a seed peer to fetch this task from the source. */
export interface SeedTrigger {
  hostId: string;
  at: number;
  /** The seed's peer, once it registered. */
  peerId?: string;
  /** When the seed download failed (or the seed vanished before finishing). */
  failedAt?: number;
}

export class Task {
  state: TaskState = 'Pending';
  /** -1 while unknown. */
  contentLength = -1;
  /** 0 while unknown. */
  pieceLength = 0;
  /** Piece count reported at the end of a back-to-source download with unknown length. */
  reportedPieceCount = 0;
  /** Digests recorded from back-to-source peers: the only trust anchor for piece data. */
  readonly pieces = new Map<number, Piece>();
  readonly peers = new Map<string, Peer>();
  readonly dag = new Dag();
  seedTrigger: SeedTrigger | undefined;
  /** Set while the task has no peers (GC forgets it after taskTtl). */
  emptySince: number | undefined;
  readonly createdAt: number;
  updatedAt: number;

  constructor(
    readonly id: string,
    readonly download: Download,
    now: number,
  ) {
    this.createdAt = now;
    this.updatedAt = now;
    this.emptySince = now;
  }

  get pieceCount(): number {
    if (this.contentLength >= 0 && this.pieceLength > 0)
      return pieceCount(this.contentLength, this.pieceLength);
    return this.reportedPieceCount;
  }

  /** Records a digest if none is known for the piece; returns whether it was new. */
  recordPiece(piece: Piece): boolean {
    if (this.pieces.has(piece.number)) return false;
    this.pieces.set(
      piece.number,
      create(PieceSchema, {
        number: piece.number,
        offset: piece.offset,
        length: piece.length,
        digest: piece.digest,
      }),
    );
    return true;
  }

  toInfo(): TaskInfo {
    return create(TaskInfoSchema, {
      id: this.id,
      contentLength: this.contentLength,
      pieceLength: this.pieceLength,
      pieceCount: this.pieceCount,
      pieces: [...this.pieces.values()].sort((a, b) => a.number - b.number),
    });
  }
}
