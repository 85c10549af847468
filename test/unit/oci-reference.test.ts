import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatReference,
  InvalidReferenceError,
  parseReference,
  withDigest,
} from '../../src/image/oci/index.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it('defaults to Docker Hub, library/ and latest', () => {
    assert.deepEqual(parseReference('ubuntu'), {
      registry: 'docker.io',
      repository: 'library/ubuntu',
      tag: 'latest',
    });
    assert.deepEqual(parseReference('ubuntu:22.04'), {
      registry: 'docker.io',
      repository: 'library/ubuntu',
      tag: '22.04',
    });
    assert.deepEqual(parseReference('grafana/grafana'), {
      registry: 'docker.io',
      repository: 'grafana/grafana',
      tag: 'latest',
    });
  });

  it('folds Docker Hub aliases into docker.io', () => {
    for (const ref of ['docker.io/ubuntu', 'index.docker.io/library/ubuntu', 'registry-1.docker.io/ubuntu']) {
      assert.deepEqual(parseReference(ref), {
        registry: 'docker.io',
        repository: 'library/ubuntu',
        tag: 'latest',
      });
    }
    assert.equal(parseReference('docker.io/a/b').repository, 'a/b');
  });

  it('recognises registries by dot, port or localhost', () => {
    assert.deepEqual(parseReference('localhost:5000/a/b:tag'), {
      registry: 'localhost:5000',
      repository: 'a/b',
      tag: 'tag',
    });
    assert.deepEqual(parseReference('localhost/foo'), {
      registry: 'localhost',
      repository: 'foo',
      tag: 'latest',
    });
    assert.deepEqual(parseReference('ghcr.io/org/team/app:v1.2'), {
      registry: 'ghcr.io',
      repository: 'org/team/app',
      tag: 'v1.2',
    });
    assert.equal(parseReference('127.0.0.1:5000/x').registry, '127.0.0.1:5000');
    assert.equal(parseReference('[::1]:5000/x').registry, '[::1]:5000');
  });

  it('takes digests, with or without a tag', () => {
    assert.deepEqual(parseReference(`localhost:5000/a@${DIGEST}`), {
      registry: 'localhost:5000',
      repository: 'a',
      digest: DIGEST,
    });
    assert.deepEqual(parseReference(`quay.io/a/b:v1@${DIGEST}`), {
      registry: 'quay.io',
      repository: 'a/b',
      tag: 'v1',
      digest: DIGEST,
    });
  });

  it('round-trips through formatReference', () => {
    for (const ref of [
      'docker.io/library/ubuntu:latest',
      `localhost:5000/a/b:t@${DIGEST}`,
      `ghcr.io/x/y@${DIGEST}`,
    ]) {
      assert.equal(formatReference(parseReference(ref)), ref);
    }
    assert.equal(formatReference(withDigest(parseReference('a/b:c'), DIGEST)), `docker.io/a/b:c@${DIGEST}`);
  });

  it('rejects bad input with a clear error', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /empty/],
      ['Ubuntu', /lowercase/],
      ['localhost:5000/Foo/bar', /lowercase/],
      ['http://localhost:5000/a', /scheme/],
      ['a b', /whitespace/],
      ['foo:bad/tag', /port/],
      ['foo:-bad', /bad tag/],
      [`foo@sha256:${'A'.repeat(64)}`, /lowercase/],
      ['foo@sha256:1234', /64 hex/],
      ['foo@md5:abcd', /invalid digest/],
      ['localhost:99999/a', /port/],
      ['localhost:5000/', /missing repository/],
      ['a//b', /repository component/],
      ['a..b/c_d', /bad registry/],
      [`x/${'a'.repeat(300)}`, /longer than 255/],
    ];
    for (const [input, message] of cases) {
      assert.throws(
        () => parseReference(input),
        (err: unknown) => err instanceof InvalidReferenceError && message.test(err.message),
        `"${input}" should fail with ${message}`,
      );
    }
  });
});
