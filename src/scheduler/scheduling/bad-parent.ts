import { PIECE_COST_WINDOW } from '../resource/peer.js';

/** Dragonfly's rule while the cost window is filling: the last piece took over 20× the mean. */
export const BAD_PARENT_MEAN_FACTOR = 20;

/**
 * Dragonfly's piece-cost test: with fewer than 2 samples nobody is bad; until the window is full a
 * parent is bad when its last cost exceeds 20 × the mean of the earlier ones; once full, when it
 * exceeds mean + 3σ of the window.
 */
export function isBadByPieceCosts(costs: readonly number[], window = PIECE_COST_WINDOW): boolean {
  if (costs.length < 2) return false;
  const last = costs[costs.length - 1]!;
  if (costs.length < window) {
    let sum = 0;
    for (let i = 0; i < costs.length - 1; i++) sum += costs[i]!;
    const mean = sum / (costs.length - 1);
    return last > BAD_PARENT_MEAN_FACTOR * mean;
  }
  let sum = 0;
  for (const c of costs) sum += c;
  const mean = sum / costs.length;
  let variance = 0;
  for (const c of costs) variance += (c - mean) ** 2;
  const sigma = Math.sqrt(variance / costs.length);
  return last > mean + 3 * sigma;
}
