export { BAD_PARENT_MEAN_FACTOR, isBadByPieceCosts } from './bad-parent.js';
export { type FindParentsOptions, findCandidateParents, sample } from './candidates.js';
export { HashRing } from './consistent-hash.js';
export * from './evaluator.js';
export { cheapFilterReason, type FilterReason, filterReason, hasData, TRANSIENT_REASONS } from './filters.js';
export type { ChildView, EdgeChecker, HostView, PeerView } from './views.js';
