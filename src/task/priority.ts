/**
 * Dragonfly's download priorities (common.v2.Priority, LEVEL0..6) as they apply to a task no peer can
 * serve yet — its first download. Pure policy: the scheduler acts on it, and a daemon
 * keeps a LEVEL2 download off the source even when the scheduler is gone.
 */

/** What the scheduler does for a peer of a task that no other peer has (or is fetching). */
export type FirstDownload =
  /** LEVEL1: refuse; the task may only be downloaded once it is in the P2P network. */
  | 'forbidden'
  /** LEVEL2: refuse; this peer may take data from other peers only, never from the source. */
  | 'peers-only'
  /** LEVEL3: the peer itself goes to the source; no seed peer is asked. */
  | 'self-back-to-source'
  /** LEVEL0 and LEVEL4–6: a seed peer fetches it (the peer itself if no seed is available). */
  | 'seed';

export function firstDownload(priority: number): FirstDownload {
  switch (priority) {
    case 1:
      return 'forbidden';
    case 2:
      return 'peers-only';
    case 3:
      return 'self-back-to-source';
    default:
      return 'seed';
  }
}

/** LEVEL2 peers never go back to the source, whatever else happens (failed parents, failed seed). */
export function mayBackToSource(priority: number): boolean {
  return firstDownload(priority) !== 'peers-only';
}

/** The reason given to a peer refused by its priority. */
export function refusalReason(plan: 'forbidden' | 'peers-only'): string {
  return plan === 'forbidden'
    ? 'priority LEVEL1: this task is not in the P2P network yet and priority 1 forbids downloading it'
    : 'priority LEVEL2: no peer has this task and priority 2 forbids downloading from the source';
}
