import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InitError, parseProxy, parseRegistries, parseRegistry } from '../../src/init/index.js';

describe('parseRegistry', () => {
  it('takes a bare host as https and keeps the port in the host', () => {
    assert.deepEqual(parseRegistry('Registry.Example.com'), {
      input: 'Registry.Example.com',
      origin: 'https://registry.example.com',
      host: 'registry.example.com',
      plainHttp: false,
      dockerHub: false,
    });
    const local = parseRegistry('127.0.0.1:5000');
    assert.equal(local.origin, 'https://127.0.0.1:5000');
    assert.equal(local.host, '127.0.0.1:5000');
  });

  it('keeps the scheme of a URL, and a trailing slash is harmless', () => {
    const r = parseRegistry('http://127.0.0.1:5000/');
    assert.equal(r.origin, 'http://127.0.0.1:5000');
    assert.equal(r.host, '127.0.0.1:5000');
    assert.equal(r.plainHttp, true);
    assert.equal(parseRegistry('HTTPS://ghcr.io').origin, 'https://ghcr.io');
    assert.equal(parseRegistry('[::1]:5000').host, '[::1]:5000');
  });

  it('folds the Docker Hub aliases into docker.io with the registry-1 upstream', () => {
    for (const alias of ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://docker.io']) {
      const r = parseRegistry(alias);
      assert.equal(r.host, 'docker.io');
      assert.equal(r.origin, 'https://registry-1.docker.io');
      assert.equal(r.dockerHub, true);
    }
  });

  it('refuses what is not a registry, naming the value', () => {
    for (const bad of [
      'ftp://x',
      'a/b',
      'https://x/v2',
      'user@host',
      'x:99999',
      'x:0',
      '-bad-',
      'a b',
      'http://docker.io',
      'x?y',
    ]) {
      assert.throws(
        () => parseRegistry(bad),
        (err: unknown) => err instanceof InitError && err.message.includes(`"${bad}"`),
        bad,
      );
    }
  });
});

describe('parseRegistries', () => {
  it('splits commas, accepts repeats and folds duplicates', () => {
    const rs = parseRegistries(['docker.io, ghcr.io', 'index.docker.io', 'http://127.0.0.1:5000']);
    assert.deepEqual(
      rs.map((r) => r.origin),
      ['https://registry-1.docker.io', 'https://ghcr.io', 'http://127.0.0.1:5000'],
    );
  });

  it('refuses an empty entry and one host given with two schemes', () => {
    assert.throws(() => parseRegistries(['a,,b']), /"a,,b" has an empty entry/);
    assert.throws(() => parseRegistries(['http://a:1', 'a:1']), /given twice/);
    assert.throws(() => parseRegistries([]), InitError);
  });
});

describe('parseProxy', () => {
  it('takes host:port or http://host:port', () => {
    assert.deepEqual(parseProxy('127.0.0.1:4001'), {
      url: 'http://127.0.0.1:4001',
      authority: '127.0.0.1:4001',
      loopback: true,
    });
    assert.deepEqual(parseProxy('http://Node-1.example:4001/'), {
      url: 'http://node-1.example:4001',
      authority: 'node-1.example:4001',
      loopback: false,
    });
    assert.equal(parseProxy('localhost:4001').loopback, true);
    assert.equal(parseProxy('[::1]:4001').loopback, true);
    assert.equal(parseProxy('127.9.9.9:4001').loopback, true);
    assert.equal(parseProxy('10.0.0.5:4001').loopback, false);
  });

  it('refuses https, a missing port and paths', () => {
    assert.throws(() => parseProxy('https://127.0.0.1:4001'), /"https:\/\/127.0.0.1:4001".*plain http/);
    assert.throws(() => parseProxy('127.0.0.1'), /port is missing/);
    assert.throws(() => parseProxy('127.0.0.1:70000'), /port must be 1-65535/);
    assert.throws(() => parseProxy('http://127.0.0.1:4001/mirror'), /expected host:port/);
    assert.throws(() => parseProxy(''), InitError);
  });
});
