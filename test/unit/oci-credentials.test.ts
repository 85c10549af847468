import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ChainedCredentialStore,
  CredentialsError,
  DockerConfigCredentialStore,
  defaultCredentialStore,
  normalizeRegistryKey,
  StaticCredentialStore,
} from '../../src/image/oci/index.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('registry credentials', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-creds-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function configDir(name: string, config: unknown): Promise<string> {
    const path = join(dir, name);
    await rm(path, { recursive: true, force: true });
    await mkdir(path, { recursive: true });
    await writeFile(join(path, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
    return path;
  }

  it('normalizes config.json keys', () => {
    assert.equal(normalizeRegistryKey('https://index.docker.io/v1/'), 'docker.io');
    assert.equal(normalizeRegistryKey('registry-1.docker.io'), 'docker.io');
    assert.equal(normalizeRegistryKey('http://LocalHost:5000/v2/'), 'localhost:5000');
    assert.equal(normalizeRegistryKey('ghcr.io'), 'ghcr.io');
  });

  it('reads auth (base64 user:pass, with colons in the password) and username/password', async () => {
    const path = await configDir('plain', {
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hubuser:pa:ss') },
        'localhost:5000': { username: 'local', password: 'secret' },
        'https://ghcr.io': { auth: b64('gh:token') },
      },
    });
    const store = new DockerConfigCredentialStore({ configDir: path });
    assert.deepEqual(await store.get('docker.io'), { username: 'hubuser', password: 'pa:ss' });
    assert.deepEqual(await store.get('localhost:5000'), { username: 'local', password: 'secret' });
    assert.deepEqual(await store.get('ghcr.io'), { username: 'gh', password: 'token' });
    assert.equal(await store.get('quay.io'), undefined);
  });

  it('maps a docker.io key to Docker Hub as well', async () => {
    const path = await configDir('hub', { auths: { 'docker.io': { auth: b64('u:p') } } });
    const store = new DockerConfigCredentialStore({ configDir: path });
    assert.deepEqual(await store.get('docker.io'), { username: 'u', password: 'p' });
    assert.deepEqual(await store.get('index.docker.io'), { username: 'u', password: 'p' });
  });

  it('finds config.json through DOCKER_CONFIG, and HOME/.docker otherwise', async () => {
    const path = await configDir('env', { auths: { 'localhost:5000': { auth: b64('env:pw') } } });
    const viaEnv = new DockerConfigCredentialStore({ env: { DOCKER_CONFIG: path } });
    assert.deepEqual(await viaEnv.get('localhost:5000'), { username: 'env', password: 'pw' });
    await configDir(join('home', '.docker'), { auths: { 'localhost:5000': { auth: b64('home:pw') } } });
    const viaHome = new DockerConfigCredentialStore({ env: { HOME: join(dir, 'home') } });
    assert.deepEqual(await viaHome.get('localhost:5000'), { username: 'home', password: 'pw' });
    const missing = new DockerConfigCredentialStore({ env: { DOCKER_CONFIG: join(dir, 'nowhere') } });
    assert.equal(await missing.get('localhost:5000'), undefined);
  });

  it('keeps identity tokens apart from passwords', async () => {
    const path = await configDir('identity', {
      auths: { 'myreg.example': { auth: b64('<token>:'), identitytoken: 'rt' } },
    });
    const store = new DockerConfigCredentialStore({ configDir: path });
    assert.deepEqual(await store.get('myreg.example'), {
      username: '<token>',
      password: '',
      identityToken: 'rt',
    });
  });

  it('reports a broken config.json without quoting it', async () => {
    const path = await configDir('broken', '{"auths": {"x": {"auth": "c2VjcmV0"');
    await assert.rejects(new DockerConfigCredentialStore({ configDir: path }).get('x'), (err: unknown) => {
      assert.ok(err instanceof CredentialsError);
      assert.match(err.message, /not valid JSON/);
      assert.doesNotMatch(err.message, /c2VjcmV0/);
      return true;
    });
    const badAuth = await configDir('bad-auth', { auths: { x: { auth: b64('no-colon') } } });
    await assert.rejects(
      new DockerConfigCredentialStore({ configDir: badAuth }).get('x'),
      /not base64 of user:password/,
    );
  });

  it('runs credential helpers: credHelpers per host, credsStore as the fallback', async () => {
    const bin = join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    const helper = join(bin, 'docker-credential-fake');
    // The helper protocol: server URL on stdin, JSON on stdout; "credentials not found" and exit 1 when unknown.
    await writeFile(
      helper,
      `#!/bin/sh
read server
case "$server" in
  localhost:5000) echo '{"ServerURL":"localhost:5000","Username":"helper","Secret":"s3"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"<token>","Secret":"idtok"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`,
    );
    await chmod(helper, 0o755);
    const path = await configDir('helpers', {
      auths: { 'other.example': { auth: b64('file:pw') } },
      credHelpers: { 'localhost:5000': 'fake' },
      credsStore: 'fake',
    });
    const env = { PATH: `${bin}:${process.env.PATH}`, DOCKER_CONFIG: path };
    const store = new DockerConfigCredentialStore({ env });
    assert.deepEqual(await store.get('localhost:5000'), { username: 'helper', password: 's3' });
    assert.deepEqual(await store.get('docker.io'), {
      username: '<token>',
      password: '',
      identityToken: 'idtok',
    });
    assert.deepEqual(await store.get('other.example'), { username: 'file', password: 'pw' });
    assert.equal(await store.get('unknown.example'), undefined);
  });

  it('treats a missing default credsStore as anonymous, a missing per-host helper as an error', async () => {
    const path = await configDir('missing-helper', {
      credsStore: 'desktop',
      credHelpers: { 'x.example': 'nothere' },
    });
    const store = new DockerConfigCredentialStore({ env: { PATH: '/nonexistent', DOCKER_CONFIG: path } });
    assert.equal(await store.get('docker.io'), undefined);
    await assert.rejects(store.get('x.example'), /docker-credential-nothere is not installed/);
  });

  it('puts explicit credentials before config.json', async () => {
    const path = await configDir('chain', { auths: { 'localhost:5000': { auth: b64('file:pw') } } });
    const store = defaultCredentialStore(
      { 'localhost:5000': { username: 'flag', password: 'pw' } },
      { configDir: path },
    );
    assert.deepEqual(await store.get('localhost:5000'), { username: 'flag', password: 'pw' });
    const chained = new ChainedCredentialStore([
      new StaticCredentialStore({ 'https://index.docker.io/v1/': { username: 'a', password: 'b' } }),
      new DockerConfigCredentialStore({ configDir: path }),
    ]);
    assert.deepEqual(await chained.get('docker.io'), { username: 'a', password: 'b' });
    assert.deepEqual(await chained.get('localhost:5000'), { username: 'file', password: 'pw' });
  });
});
