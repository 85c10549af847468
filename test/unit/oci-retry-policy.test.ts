import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  backoffDelay,
  isRetryableNetworkError,
  isRetryableStatus,
  parseRetryAfter,
} from '../../src/image/oci/retry-policy.js';

describe('registry retry policy', () => {
  it('retries 5xx (but not 501/505), 408 and 429 only', () => {
    for (const status of [500, 502, 503, 504, 408, 429])
      assert.equal(isRetryableStatus(status), true, String(status));
    for (const status of [400, 401, 403, 404, 416, 501, 505])
      assert.equal(isRetryableStatus(status), false, String(status));
  });

  it('recognises resets and timeouts, also when wrapped', () => {
    assert.equal(isRetryableNetworkError(Object.assign(new Error('x'), { code: 'ECONNRESET' })), true);
    assert.equal(isRetryableNetworkError(new Error('x', { cause: { code: 'UND_ERR_SOCKET' } })), true);
    assert.equal(isRetryableNetworkError(new Error('plain')), false);
    assert.equal(isRetryableNetworkError(Object.assign(new Error('x'), { code: 'ENOTFOUND' })), false);
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    const now = Date.parse('2024-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('Mon, 01 Jan 2024 00:00:05 GMT', now), 5000);
    assert.equal(parseRetryAfter('Sun, 31 Dec 2023 00:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
  });

  it('backs off exponentially with jitter, capped, and honours Retry-After up to a limit', () => {
    const policy = { retries: 5, baseDelayMs: 100, maxDelayMs: 1000 };
    for (let attempt = 1; attempt <= 8; attempt++) {
      const ceiling = Math.min(1000, 100 * 2 ** (attempt - 1));
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelay(policy, attempt);
        assert.ok(delay >= 0 && delay <= ceiling, `attempt ${attempt}: ${delay} > ${ceiling}`);
      }
    }
    assert.ok(backoffDelay(policy, 1, 5000) >= 5000);
    assert.equal(backoffDelay(policy, 1, 3_600_000), 60_000);
  });
});
