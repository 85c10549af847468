import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  choosePlatform,
  formatPlatform,
  normalizePlatform,
  parsePlatform,
  platformScore,
} from '../../src/image/oci/index.js';

describe('platforms', () => {
  it('parses and formats os/arch[/variant]', () => {
    assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.equal(formatPlatform({ os: 'linux', architecture: 'arm64', variant: 'v8' }), 'linux/arm64/v8');
    for (const bad of ['linux', 'linux/', 'a/b/c/d', 'linux/amd 64'])
      assert.throws(() => parsePlatform(bad), TypeError);
  });

  it('normalizes aliases and default variants', () => {
    assert.deepEqual(normalizePlatform({ os: 'Linux', architecture: 'x86_64' }), {
      os: 'linux',
      architecture: 'amd64',
      variant: 'v1',
    });
    assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'aarch64' }), {
      os: 'linux',
      architecture: 'arm64',
      variant: 'v8',
    });
    assert.equal(normalizePlatform({ os: 'linux', architecture: 'armhf' }).variant, 'v7');
    assert.equal(normalizePlatform({ os: 'linux', architecture: 's390x' }).variant, '');
  });

  it('matches arm64 with and without v8, and never across os or arch', () => {
    const arm64 = { os: 'linux', architecture: 'arm64' };
    assert.ok(platformScore(arm64, { os: 'linux', architecture: 'arm64', variant: 'v8' }) !== undefined);
    assert.ok(platformScore({ ...arm64, variant: 'v8' }, arm64) !== undefined);
    assert.ok(platformScore({ os: 'linux', architecture: 'aarch64' }, arm64) !== undefined);
    assert.equal(platformScore(arm64, { os: 'linux', architecture: 'amd64' }), undefined);
    assert.equal(platformScore(arm64, { os: 'windows', architecture: 'arm64' }), undefined);
  });

  it('lets newer variants run older images and prefers the closest', () => {
    const candidates = [
      { os: 'linux', architecture: 'arm', variant: 'v5' },
      { os: 'linux', architecture: 'arm', variant: 'v6' },
      { os: 'linux', architecture: 'amd64' },
    ];
    assert.equal(choosePlatform({ os: 'linux', architecture: 'arm', variant: 'v7' }, candidates), 1);
    assert.equal(choosePlatform({ os: 'linux', architecture: 'arm', variant: 'v5' }, candidates), 0);
    assert.equal(choosePlatform({ os: 'linux', architecture: 'x86_64' }, candidates), 2);
    assert.equal(
      choosePlatform({ os: 'linux', architecture: 'arm', variant: 'v5' }, candidates.slice(1)),
      -1,
    );
  });

  it('skips entries without a platform and attestation entries', () => {
    const candidates = [
      undefined,
      { os: 'unknown', architecture: 'unknown' },
      { os: 'linux', architecture: 'amd64' },
    ];
    assert.equal(choosePlatform({ os: 'linux', architecture: 'amd64' }, candidates), 2);
  });
});
