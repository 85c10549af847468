import { rankParents } from './evaluator.js';
import { cheapFilterReason, type FilterLimits } from './filters.js';
import type { ChildView, EdgeChecker, PeerView } from './views.js';

export interface FindParentsOptions {
  /** Most peers examined per attempt (after the cheap filters). */
  filterParentLimit: number;
  /** Most parents returned. */
  candidateParentLimit: number;
  /** Pieces in the task (0 when unknown: the pieces feature then scores 0 except for finished peers). */
  totalPieces: number;
  limits?: FilterLimits;
  random?: () => number;
}

/** Up to `n` items drawn uniformly without replacement (partial Fisher–Yates; `items` is shuffled in place). */
export function sample<T>(items: T[], n: number, random: () => number = Math.random): T[] {
  const k = Math.min(n, items.length);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(random() * (items.length - i));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items.slice(0, k);
}

/**
 * Dragonfly's FindCandidateParents: filter, sample, rank, keep the best. The cheap filters run over
 * every peer before sampling (Dragonfly samples first) so that in a crowd of peers still waiting for
 * data the few that hold some are not missed; the graph walk for cycles runs only on the sample.
 */
export function findCandidateParents<P extends PeerView>(
  child: ChildView,
  peers: Iterable<P>,
  dag: EdgeChecker,
  opts: FindParentsOptions,
): P[] {
  const eligible: P[] = [];
  for (const p of peers) if (cheapFilterReason(child, p, opts.limits) === undefined) eligible.push(p);
  const sampled = sample(eligible, opts.filterParentLimit, opts.random).filter((p) =>
    dag.canAddEdge(p.id, child.id),
  );
  return rankParents(sampled, child.host, opts.totalPieces).slice(0, opts.candidateParentLimit);
}
