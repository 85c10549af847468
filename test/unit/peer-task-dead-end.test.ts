import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDeadEnd } from '../../src/daemon/download/peer-task.js';

describe('isDeadEnd (which parents a stalled download drops)', () => {
  const now = 100_000;
  const parent = (pieces: number[], grewAgoMs: number, seed = false) => ({
    seed,
    pieces: new Set(pieces),
    grewAt: now - grewAgoMs,
  });

  it('drops a finished partial peer: pieces, none needed, none gained for the whole stall', () => {
    assert.equal(isDeadEnd(parent([0, 1], 20_000), [5, 6], now), true);
  });

  it('keeps parents that hold a needed piece, that still gain pieces, that hold none yet, and seeds', () => {
    assert.equal(isDeadEnd(parent([0, 5], 20_000), [5, 6], now), false, 'holds a needed piece');
    assert.equal(isDeadEnd(parent([0, 1], 2_000), [5, 6], now), false, 'still downloading');
    assert.equal(isDeadEnd(parent([], 60_000), [5, 6], now), false, 'waiting for the source like us');
    assert.equal(isDeadEnd(parent([0, 1], 60_000, true), [5, 6], now), false, 'a seed fetches everything');
  });
});
