import assert from 'node:assert/strict';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  applyPlan,
  InitError,
  type InitRequest,
  parseProxy,
  parseRegistries,
  planInit,
  readIfExists,
} from '../../src/init/index.js';

const proxy = parseProxy('127.0.0.1:4001');

function memoryReader(files: Record<string, string>) {
  return async (path: string) => files[path];
}

describe('planInit', () => {
  const containerd = (files: Record<string, string>) =>
    planInit(
      {
        runtime: 'containerd',
        registries: parseRegistries(['docker.io,http://127.0.0.1:5000']),
        proxy,
        configPath: '/c/config.toml',
      },
      memoryReader(files),
    );

  it('plans containerd hosts.toml files before the config that points at them', async () => {
    const plan = await containerd({});
    assert.deepEqual(
      plan.files.map((f) => [f.path, f.changed]),
      [
        ['/c/certs.d/docker.io/hosts.toml', true],
        ['/c/certs.d/127.0.0.1:5000/hosts.toml', true],
        ['/c/config.toml', true],
      ],
    );
    assert.match(plan.restart, /^restart containerd to load \/c\/config\.toml/);
    assert.match(plan.notes.join('\n'), /--hosts-dir \/c\/certs\.d/);
  });

  it('says no restart is needed when only hosts.toml changes, and nothing when all is in place', async () => {
    const first = await containerd({});
    const written = Object.fromEntries(first.files.map((f) => [f.path, f.after]));
    const withoutHub = { ...written };
    delete withoutHub['/c/certs.d/docker.io/hosts.toml'];
    const hostsOnly = await containerd(withoutHub);
    assert.deepEqual(
      hostsOnly.files.map((f) => f.changed),
      [true, false, false],
    );
    assert.match(hostsOnly.restart, /^no restart needed/);
    const done = await containerd(written);
    assert.ok(done.files.every((f) => !f.changed && f.after === f.before));
    assert.equal(done.restart, 'nothing to restart');
  });

  it('uses the hosts dir an existing config_path names', async () => {
    const plan = await containerd({
      '/c/config.toml':
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/srv/h"\n',
    });
    assert.equal(plan.files[0]!.path, '/srv/h/docker.io/hosts.toml');
    assert.equal(plan.files[2]!.changed, false);
    assert.match(plan.restart, /^no restart needed/);
  });

  it('plans nothing for docker without Docker Hub, with the warning', async () => {
    const req: InitRequest = {
      runtime: 'docker',
      registries: parseRegistries(['ghcr.io']),
      proxy,
      configPath: '/d/daemon.json',
    };
    const plan = await planInit(req, memoryReader({}));
    assert.deepEqual(plan.files, []);
    assert.equal(plan.warnings.length, 1);
    assert.equal(plan.restart, 'nothing to restart');
  });

  it('tells podman users which upstream the daemon must default to', async () => {
    const plan = await planInit(
      {
        runtime: 'podman',
        registries: parseRegistries(['http://127.0.0.1:5000']),
        proxy,
        configPath: '/p/r.conf',
      },
      memoryReader({}),
    );
    assert.match(plan.notes.join('\n'), /proxy\.registryMirror\.addr: http:\/\/127\.0\.0\.1:5000/);
    assert.match(plan.restart, /^no restart needed/);
  });
});

describe('applyPlan', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-init-apply-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const podman = async (configPath: string, registry: string) =>
    planInit({ runtime: 'podman', registries: parseRegistries([registry]), proxy, configPath }, readIfExists);

  it('creates missing files and directories; a dry run writes nothing', async () => {
    const path = join(dir, 'a', 'b', 'registries.conf');
    const plan = await podman(path, 'docker.io');
    assert.deepEqual(await applyPlan(plan, { dryRun: true }), [{ path, action: 'created' }]);
    assert.equal(await readIfExists(path), undefined);
    assert.deepEqual(await applyPlan(plan), [{ path, action: 'created' }]);
    assert.equal(await readFile(path, 'utf8'), plan.files[0]!.after);
    assert.equal((await stat(path)).mode & 0o777, 0o644);
    assert.deepEqual(await readdir(join(dir, 'a', 'b')), ['registries.conf']);
  });

  it('backs up before each change, never over an existing backup, and keeps the mode', async () => {
    const path = join(dir, 'keep.conf');
    await writeFile(path, '# original\nunqualified-search-registries = []\n');
    await chmod(path, 0o600);
    const first = await applyPlan(await podman(path, 'docker.io'));
    assert.deepEqual(first, [{ path, action: 'updated', backup: `${path}.bak` }]);
    assert.equal(await readFile(`${path}.bak`, 'utf8'), '# original\nunqualified-search-registries = []\n');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await stat(`${path}.bak`)).mode & 0o777, 0o600);

    const dry = await applyPlan(await podman(path, 'quay.io'), { dryRun: true });
    assert.deepEqual(dry, [{ path, action: 'updated', backup: `${path}.bak.1` }]);
    const afterFirst = await readFile(path, 'utf8');
    const second = await applyPlan(await podman(path, 'quay.io'));
    assert.deepEqual(second, [{ path, action: 'updated', backup: `${path}.bak.1` }]);
    assert.equal(await readFile(`${path}.bak.1`, 'utf8'), afterFirst);
    assert.equal(await readFile(`${path}.bak`, 'utf8'), '# original\nunqualified-search-registries = []\n');

    assert.deepEqual(await applyPlan(await podman(path, 'quay.io')), [{ path, action: 'unchanged' }]);
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('keep')).sort(), [
      'keep.conf',
      'keep.conf.bak',
      'keep.conf.bak.1',
    ]);
  });

  it('replaces the file a symlink points at, leaving the link', async () => {
    await mkdir(join(dir, 'real'));
    const target = join(dir, 'real', 'registries.conf');
    await writeFile(target, '');
    const link = join(dir, 'linked.conf');
    await symlink(target, link);
    await applyPlan(await podman(link, 'docker.io'));
    assert.match(await readFile(target, 'utf8'), /127\.0\.0\.1:4001/);
    assert.ok((await lstat(link)).isSymbolicLink());
  });

  it('turns a directory in place of the config into one clear error', async () => {
    await assert.rejects(
      () => podman(dir, 'docker.io'),
      (err: unknown) => err instanceof InitError && err.message === `cannot read ${dir}: it is a directory`,
    );
  });
});
