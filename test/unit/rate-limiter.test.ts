import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBucket } from '../../src/daemon/rate-limiter.js';

describe('TokenBucket', () => {
  it('lets a one-second burst through, then paces to the rate', async () => {
    const bucket = new TokenBucket(1_000_000);
    const start = performance.now();
    await bucket.take(1_000_000); // the burst
    await bucket.take(300_000); // must wait ~0.3 s
    const elapsed = performance.now() - start;
    assert.ok(elapsed >= 250, `paced: ${elapsed} ms`);
  });

  it('is a no-op when unlimited', async () => {
    const bucket = new TokenBucket(0);
    assert.equal(bucket.unlimited, true);
    const start = performance.now();
    await bucket.take(1e12);
    assert.ok(performance.now() - start < 50);
  });

  it('can be aborted while waiting', async () => {
    const bucket = new TokenBucket(1000);
    await bucket.take(1000);
    await assert.rejects(bucket.take(10_000, AbortSignal.timeout(20)), /abort/i);
  });
});
