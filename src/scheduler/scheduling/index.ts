export { BAD_PARENT_MEAN_FACTOR, isBadByPieceCosts } from './bad-parent.js';
export { type FindParentsOptions, findCandidateParents, sample } from './candidates.js';
export { HashRing } from './consistent-hash.js';
export * from './evaluator.js';
export {
  cheapFilterReason,
  type FilterLimits,
  type FilterReason,
  filterReason,
  hasData,
  NO_LIMITS,
  SEED_CHILD_MAX_LAG_PIECES,
  TRANSIENT_REASONS,
} from './filters.js';
export type { ChildProgress, ChildView, EdgeChecker, HostView, PeerView } from './views.js';
