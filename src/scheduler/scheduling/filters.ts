import { isBadByPieceCosts } from './bad-parent.js';
import type { ChildView, EdgeChecker, PeerView } from './views.js';

/** Why a peer cannot be a parent of a given child. */
export type FilterReason =
  | 'self'
  | 'same-host'
  | 'blocked'
  | 'state'
  | 'no-data'
  | 'bad-parent'
  | 'upload-full'
  | 'cycle';

/** Reasons that may clear by themselves (the parent is busy or was slow once). */
export const TRANSIENT_REASONS: ReadonlySet<FilterReason> = new Set(['bad-parent', 'upload-full']);

/**
 * A candidate holds data a child could use now, or will soon: it is fetching from the source, or it is
 * downloading from parents of its own (Dragonfly's in-degree rule). The second case is what lets peers
 * that start together feed each other instead of all pulling from the seed.
 */
export function hasData(p: PeerView): boolean {
  return (
    p.finishedPieceCount > 0 ||
    p.state === 'BackToSource' ||
    p.state === 'Succeeded' ||
    (p.state === 'Running' && p.parentCount > 0)
  );
}

/** The cheap checks: no graph walk. */
export function cheapFilterReason(child: ChildView, p: PeerView): FilterReason | undefined {
  if (p.id === child.id) return 'self';
  if (p.host.id === child.host.id) return 'same-host';
  if (child.blockList.has(p.id)) return 'blocked';
  if (p.state === 'Failed' || p.state === 'Leave' || p.state === 'Pending') return 'state';
  // A back-to-source peer with no piece yet is allowed: the child waits for its pieces.
  if (!hasData(p)) return 'no-data';
  if (isBadByPieceCosts(p.pieceCosts)) return 'bad-parent';
  if (p.host.concurrentUploadLimit > 0 && p.host.concurrentUploads >= p.host.concurrentUploadLimit) {
    return 'upload-full';
  }
  return undefined;
}

/** Every filter of §4.1, in order; undefined means the peer may be offered to the child. */
export function filterReason(child: ChildView, p: PeerView, dag: EdgeChecker): FilterReason | undefined {
  return cheapFilterReason(child, p) ?? (dag.canAddEdge(p.id, child.id) ? undefined : 'cycle');
}
