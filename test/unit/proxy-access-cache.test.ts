import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AccessCache } from '../../src/daemon/proxy/access-cache.js';

describe('AccessCache', () => {
  it('remembers a yes per URL and credentials until the TTL ends', () => {
    let now = 1000;
    const cache = new AccessCache(60_000, 100, () => now);
    const alice = AccessCache.key('http://r/v2/a/blobs/x', { authorization: 'Basic YQ==' });
    const bob = AccessCache.key('http://r/v2/a/blobs/x', { authorization: 'Basic Yg==' });
    const anonymous = AccessCache.key('http://r/v2/a/blobs/x', {});
    cache.allow(alice, 123);
    assert.equal(cache.get(alice), 123);
    assert.equal(cache.get(bob), undefined, 'other credentials must be asked again');
    assert.equal(cache.get(anonymous), undefined);
    now += 60_000;
    assert.equal(cache.get(alice), undefined, 'expired');
  });

  it('keeps no credentials in its keys, drops the oldest when full, and can be off', () => {
    const key = AccessCache.key('http://r/x', { authorization: 'Bearer secret-token' });
    assert.doesNotMatch(key, /secret/);
    const small = new AccessCache(60_000, 2);
    for (const k of ['a', 'b', 'c']) small.allow(k, 1);
    assert.equal(small.get('a'), undefined);
    assert.equal(small.get('c'), 1);
    const off = new AccessCache(0);
    off.allow('a', 1);
    assert.equal(off.get('a'), undefined);
  });
});
