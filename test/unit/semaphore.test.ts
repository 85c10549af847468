import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Semaphore } from '../../src/async/index.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('Semaphore', () => {
  it('admits up to its capacity and hands each freed slot to the longest waiter', async () => {
    const slots = new Semaphore(2);
    const a = await slots.acquire();
    const b = await slots.acquire();
    const order: string[] = [];
    const queue = async (name: string) => {
      const release = await slots.acquire();
      order.push(name);
      return release;
    };
    const c = queue('c');
    const d = queue('d');
    await tick();
    assert.deepEqual(order, [], 'no slot was free');
    assert.equal(slots.inUse, 2);
    a();
    a(); // a second call gives nothing back twice
    await tick();
    assert.deepEqual(order, ['c']);
    b();
    await tick();
    assert.deepEqual(order, ['c', 'd']);
    (await c)();
    (await d)();
    assert.equal(slots.inUse, 0);
  });

  it('callers that queue again after each unit take turns', async () => {
    const slots = new Semaphore(1);
    const served: string[] = [];
    const worker = async (name: string) => {
      for (let i = 0; i < 3; i++) {
        const release = await slots.acquire();
        served.push(name);
        await tick();
        release();
      }
    };
    await Promise.all([worker('x'), worker('y')]);
    assert.deepEqual(served, ['x', 'y', 'x', 'y', 'x', 'y']);
  });

  it('an aborted wait leaves the queue and rejects; a bad capacity is refused', async () => {
    const slots = new Semaphore(1);
    const held = await slots.acquire();
    const abort = new AbortController();
    const waiting = slots.acquire(abort.signal);
    abort.abort(new Error('gone'));
    await assert.rejects(waiting, /gone/);
    held();
    assert.equal(slots.inUse, 0, 'the aborted waiter must not have taken the slot');
    assert.throws(() => new Semaphore(0), RangeError);
  });
});
