import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpreadGate } from '../../src/daemon/upload/spread-gate.js';

describe('SpreadGate (super-seeding)', () => {
  it('serves a piece once, defers others while it uploads and for holdMs after, then serves again', () => {
    let now = 1000;
    const gate = new SpreadGate(3000, () => now);
    assert.deepEqual(gate.ask('t', 1), { serve: true });
    assert.deepEqual(gate.ask('t', 1), { serve: false, retryAfterMs: 3000 }, 'deferred while uploading');
    assert.deepEqual(gate.ask('t', 2), { serve: true }, 'other pieces are not affected');
    assert.deepEqual(gate.ask('u', 1), { serve: true }, 'nor other tasks');
    now += 500;
    gate.finished('t', 1, true);
    now += 1000;
    assert.deepEqual(gate.ask('t', 1), { serve: false, retryAfterMs: 2000 });
    now += 2000;
    assert.deepEqual(gate.ask('t', 1), { serve: true }, 'served again once the hold is over');
  });

  it('on a slow link the hold lasts as long as the piece needs to reach every child', () => {
    let now = 0;
    const gate = new SpreadGate(3000, () => now);
    assert.equal(gate.ask('t', 1).serve, true);
    now = 2000;
    assert.deepEqual(gate.ask('t', 1), { serve: false, retryAfterMs: 3000 }, 'while uploading');
    now = 4000;
    assert.deepEqual(gate.ask('t', 1), { serve: false, retryAfterMs: 4000 }, 'as long as it has taken');
    gate.finished('t', 1, true, { pieceMs: 4000, children: 7 }); // 3 generations of 4 s, 3 times over
    now += 35_000;
    assert.equal(gate.ask('t', 1).serve, false);
    now += 1000;
    assert.equal(gate.ask('t', 1).serve, true);

    assert.equal(gate.ask('t', 2).serve, true);
    now += 100;
    gate.finished('t', 2, true, { pieceMs: 40, children: 20 }); // a LAN: holdMs
    now += 3000;
    assert.equal(gate.ask('t', 2).serve, true);
  });

  it('a failed upload frees the piece at once', () => {
    const gate = new SpreadGate(3000, () => 0);
    assert.equal(gate.ask('t', 7).serve, true);
    gate.finished('t', 7, false);
    assert.equal(gate.ask('t', 7).serve, true);
  });

  it('holdMs 0 serves every request (normal peers)', () => {
    const gate = new SpreadGate(0, () => 0);
    for (let i = 0; i < 3; i++) assert.equal(gate.ask('t', 1).serve, true);
  });

  it('forgets expired holds once it tracks many pieces', () => {
    let now = 0;
    const gate = new SpreadGate(10, () => now);
    for (let n = 0; n < 5000; n++) {
      gate.ask('t', n);
      gate.finished('t', n, true);
    }
    now = 100;
    assert.equal(gate.ask('t', 0).serve, true);
    assert.ok((gate as unknown as { held: Map<string, number> }).held.size < 5000, 'expired entries swept');
  });
});
