/**
 * `damselfly init` end to end through the built CLI, always with --config-path into a temp dir: files
 * written, backups made, a second run changes nothing, --dry-run writes nothing, bad input is one line.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'smol-toml';
import { cliPath } from '../helpers/index.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function init(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath, 'init', ...args], (err, stdout, stderr) => {
      const code = err ? Number((err as { code?: unknown }).code ?? 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Every file under `dir`, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

describe('damselfly init (CLI)', () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-it-init-'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('containerd: writes config.toml and hosts.toml, then is already configured', async () => {
    const dir = join(work, 'containerd');
    const config = join(dir, 'config.toml');
    const args = ['containerd', '--registry', 'docker.io,http://127.0.0.1:5000', '--config-path', config];

    const dry = await init(...args, '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would create .*certs\.d\/127\.0\.0\.1:5000\/hosts\.toml:\n/);
    assert.match(dry.stdout, /X-Damselfly-Registry = \["http:\/\/127\.0\.0\.1:5000"\]/);
    assert.match(dry.stdout, /dry run, nothing written; after a real run: restart containerd/);
    await assert.rejects(readdir(dir), { code: 'ENOENT' });

    const first = await init(...args);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stderr, '');
    assert.deepEqual(await tree(dir), [
      'certs.d/127.0.0.1:5000/hosts.toml',
      'certs.d/docker.io/hosts.toml',
      'config.toml',
    ]);
    const lines = first.stdout.trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, 3), [
      `created ${dir}/certs.d/docker.io/hosts.toml`,
      `created ${dir}/certs.d/127.0.0.1:5000/hosts.toml`,
      `created ${config}`,
    ]);
    assert.match(lines.at(-1)!, /^restart containerd to load/);
    const cfg = parse(await readFile(config, 'utf8')) as {
      plugins: Record<string, { registry: { config_path: string } }>;
    };
    assert.equal(cfg.plugins['io.containerd.grpc.v1.cri']!.registry.config_path, join(dir, 'certs.d'));
    const hub = parse(await readFile(join(dir, 'certs.d/docker.io/hosts.toml'), 'utf8'));
    assert.equal(hub.server, 'https://registry-1.docker.io');

    const second = await init(...args);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /already configured: nothing written\n/);
    assert.match(second.stdout, /nothing to restart\n$/);
    assert.doesNotMatch(second.stdout, /created|updated/);
    assert.equal((await tree(dir)).length, 3);
  });

  it('containerd: merges into an existing config, keeping a backup, and never overwrites one', async () => {
    const dir = join(work, 'merge');
    await mkdir(dir);
    const config = join(dir, 'config.toml');
    const original =
      '# hand-written\nversion = 2\nroot = "/var/lib/containerd"\n\n[grpc]\n  address = "/run/c.sock"\n';
    await writeFile(config, original);

    const run = await init('containerd', '--registry', 'ghcr.io', '--config-path', config);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      new RegExp(
        `updated ${config} \\(backup: ${config}\\.bak; comments and layout of the old file are not kept\\)`,
      ),
    );
    assert.equal(await readFile(`${config}.bak`, 'utf8'), original);
    const merged = parse(await readFile(config, 'utf8')) as Record<string, unknown>;
    assert.equal(merged.root, '/var/lib/containerd');
    assert.deepEqual({ ...(merged.grpc as object) }, { address: '/run/c.sock' });

    // config_path is now set: a new registry only adds its hosts.toml, and config.toml is left alone.
    const more = await init('containerd', '--registry', 'quay.io', '--config-path', config);
    assert.equal(more.code, 0, more.stderr);
    assert.match(more.stdout, /created .*certs\.d\/quay\.io\/hosts\.toml\n/);
    assert.match(more.stdout, new RegExp(`unchanged ${config}\\n`));
    assert.match(more.stdout, /no restart needed/);

    // A hosts.toml that changes gets a backup; an existing .bak is never overwritten.
    const hosts = join(dir, 'certs.d', 'quay.io', 'hosts.toml');
    await writeFile(`${hosts}.bak`, 'older backup\n');
    const moved = await init(
      'containerd',
      '--registry',
      'quay.io',
      '--proxy',
      '10.0.0.5:4001',
      '--config-path',
      config,
    );
    assert.equal(moved.code, 0, moved.stderr);
    assert.match(moved.stdout, new RegExp(`updated ${hosts} \\(backup: ${hosts}\\.bak\\.1;`));
    assert.equal(await readFile(`${hosts}.bak`, 'utf8'), 'older backup\n');
    const quay = parse(await readFile(hosts, 'utf8')) as { host: object };
    assert.deepEqual(Object.keys(quay.host), ['http://10.0.0.5:4001', 'http://127.0.0.1:4001']);
  });

  it('docker: merges daemon.json and warns that only Docker Hub is mirrored', async () => {
    const path = join(work, 'daemon.json');
    await writeFile(path, '{"log-level": "warn", "registry-mirrors": ["https://mirror.gcr.io"]}\n');
    const run = await init('docker', '--registry', 'docker.io,ghcr.io', '--config-path', path);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stderr,
      /^damselfly: warning: Docker applies registry mirrors to Docker Hub only: .*ghcr\.io/,
    );
    assert.match(run.stdout, /restart dockerd/);
    assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), {
      'log-level': 'warn',
      'registry-mirrors': ['http://127.0.0.1:4001', 'https://mirror.gcr.io'],
    });
    assert.match(await readFile(`${path}.bak`, 'utf8'), /mirror\.gcr\.io/);
    const again = await init('docker', '--registry', 'docker.io', '--config-path', path);
    assert.match(again.stdout, /already configured/);
  });

  it('podman: adds the daemon as first mirror in registries.conf', async () => {
    const path = join(work, 'containers', 'registries.conf');
    const run = await init('podman', '--registry', 'http://127.0.0.1:5000', '--config-path', path);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /proxy\.registryMirror\.addr: http:\/\/127\.0\.0\.1:5000/);
    const conf = parse(await readFile(path, 'utf8')) as {
      registry: { location: string; mirror: object[] }[];
    };
    assert.equal(conf.registry[0]!.location, '127.0.0.1:5000');
    assert.deepEqual({ ...conf.registry[0]!.mirror[0]! }, { location: '127.0.0.1:4001', insecure: true });
  });

  it('bad input: one line on stderr, exit 1, nothing written', async () => {
    const path = join(work, 'bad', 'config.toml');
    for (const [args, message] of [
      [['kubelet', '--registry', 'docker.io'], 'unknown container runtime "kubelet"'],
      [['containerd'], '--registry is required'],
      [['containerd', '--registry', 'ftp://r'], 'invalid registry "ftp://r"'],
      [['containerd', '--registry', 'docker.io', '--proxy', 'https://1.2.3.4:4001'], 'invalid proxy'],
    ] as const) {
      const run = await init(...args, '--config-path', path);
      assert.equal(run.code, 1, args.join(' '));
      assert.equal(run.stdout, '');
      assert.ok(run.stderr.startsWith(`damselfly: ${message}`), run.stderr);
      assert.equal(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
    }
    await assert.rejects(readdir(join(work, 'bad')), { code: 'ENOENT' });
  });
});
