import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWwwAuthenticate } from '../../src/image/oci/index.js';

describe('parseWwwAuthenticate', () => {
  it('parses the distribution bearer challenge', () => {
    const header =
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"';
    assert.deepEqual(parseWwwAuthenticate(header), [
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.docker.io/token',
          service: 'registry.docker.io',
          scope: 'repository:library/ubuntu:pull',
        },
      },
    ]);
  });

  it('keeps commas and escaped quotes inside quoted values', () => {
    const [challenge] = parseWwwAuthenticate(
      'Bearer realm="http://a/token?x=1,2", scope="repository:a:pull,push repository:b:pull", error="say \\"hi\\""',
    );
    assert.equal(challenge?.params.realm, 'http://a/token?x=1,2');
    assert.equal(challenge?.params.scope, 'repository:a:pull,push repository:b:pull');
    assert.equal(challenge?.params.error, 'say "hi"');
  });

  it('splits several challenges and lowercases schemes and names', () => {
    const challenges = parseWwwAuthenticate(
      'Newauth realm="apps", type=1, title="Login, please", BASIC Realm="simple"',
    );
    assert.deepEqual(challenges, [
      { scheme: 'newauth', params: { realm: 'apps', type: '1', title: 'Login, please' } },
      { scheme: 'basic', params: { realm: 'simple' } },
    ]);
  });

  it('accepts several header lines, token68, bare schemes and spaces around =', () => {
    assert.deepEqual(parseWwwAuthenticate(['Basic', 'Bearer realm = "r" , service=s']), [
      { scheme: 'basic', params: {} },
      { scheme: 'bearer', params: { realm: 'r', service: 's' } },
    ]);
    assert.deepEqual(parseWwwAuthenticate('Negotiate abc123==, Basic realm="x"'), [
      { scheme: 'negotiate', params: {}, token68: 'abc123==' },
      { scheme: 'basic', params: { realm: 'x' } },
    ]);
  });

  it('survives garbage without throwing or looping', () => {
    assert.deepEqual(parseWwwAuthenticate(undefined), []);
    assert.deepEqual(parseWwwAuthenticate(''), []);
    for (const junk of [
      '"',
      ',,,',
      '= = =',
      'Bearer realm="unterminated',
      'Bearer realm=@@@, @ x',
      '\u0000\u00ff',
    ]) {
      assert.ok(Array.isArray(parseWwwAuthenticate(junk)), junk);
    }
    assert.equal(parseWwwAuthenticate('Bearer realm="unterminated')[0]?.params.realm, 'unterminated');
  });
});
