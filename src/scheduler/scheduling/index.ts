export { BAD_PARENT_MEAN_FACTOR, isBadByPieceCosts } from './bad-parent.js';
export { type FindParentsOptions, findCandidateParents, sample } from './candidates.js';
export { HashRing } from './consistent-hash.js';
export * from './evaluator.js';
export {
  CHILD_MAX_LAG_PIECES,
  cheapFilterReason,
  type FilterLimits,
  type FilterReason,
  filterReason,
  hasData,
  NO_LIMITS,
  TRANSIENT_REASONS,
} from './filters.js';
export type { ChildProgress, ChildView, EdgeChecker, HostView, PeerView } from './views.js';
