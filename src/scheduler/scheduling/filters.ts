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
  | 'seed-busy'
  | 'parent-busy'
  | 'cycle';

export interface FilterLimits {
  /**
   * Most children still downloading, and keeping up, that a seed peer feeds in one task (0 = no
   * limit). The seed's upload is what the swarm lives on: a child beyond the limit is given peers that
   * already hold (or are receiving) the seed's pieces, so the seed sends each piece about once instead
   * of racing its children for the same fresh pieces.
   */
  seedChildLimit: number;
  /**
   * The same for normal peers (0 = no limit), for those fewer than childLimitDepth hops from the
   * source. With uplinks alike, a chain is what lets every peer upload all the time (a peer with two
   * children keeping up halves what each gets); the depth bound keeps a crowd from becoming a chain
   * of a thousand hops, each adding a piece's time.
   */
  childLimit: number;
  childLimitDepth: number;
}

/**
 * A child more than this many pieces behind its parent is not keeping up (a slow link, or a parent that
 * already has most of the task): it does not count against the child limits, so one slow child cannot
 * hold back the whole swarm. Twice the daemon's default pieces in flight, so a child in step with its
 * parent is never below it.
 */
export const CHILD_MAX_LAG_PIECES = 16;

export const NO_LIMITS: FilterLimits = { seedChildLimit: 0, childLimit: 0, childLimitDepth: 0 };

/** Reasons that may clear by themselves (the parent is busy or was slow once). */
export const TRANSIENT_REASONS: ReadonlySet<FilterReason> = new Set([
  'bad-parent',
  'upload-full',
  'seed-busy',
  'parent-busy',
]);

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
export function cheapFilterReason(
  child: ChildView,
  p: PeerView,
  limits: FilterLimits = NO_LIMITS,
): FilterReason | undefined {
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
  const limit = childLimitOf(p, limits);
  if (limit > 0 && feedsEnough(p, child, limit)) return p.host.type === 'seed' ? 'seed-busy' : 'parent-busy';
  return undefined;
}

/** How many children keeping up `parent` may feed (0 = any number). */
function childLimitOf(parent: PeerView, limits: FilterLimits): number {
  if (parent.host.type === 'seed') return limits.seedChildLimit;
  return parent.depth < limits.childLimitDepth ? limits.childLimit : 0;
}

/** Whether `parent` already feeds `limit` children other than `child` that keep up with it. */
function feedsEnough(parent: PeerView, child: ChildView, limit: number): boolean {
  let keepingUp = 0;
  for (const c of parent.downloadingChildren) {
    const lag = parent.finishedPieceCount - c.finishedPieceCount;
    if (c.id !== child.id && lag <= CHILD_MAX_LAG_PIECES) keepingUp++;
  }
  return keepingUp >= limit;
}

/** Every filter of §4.1, in order; undefined means the peer may be offered to the child. */
export function filterReason(
  child: ChildView,
  p: PeerView,
  dag: EdgeChecker,
  limits: FilterLimits = NO_LIMITS,
): FilterReason | undefined {
  return cheapFilterReason(child, p, limits) ?? (dag.canAddEdge(p.id, child.id) ? undefined : 'cycle');
}
