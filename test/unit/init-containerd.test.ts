import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'smol-toml';
import {
  hostsTomlPath,
  InitError,
  parseProxy,
  parseRegistry,
  planContainerdConfig,
  planHostsToml,
} from '../../src/init/index.js';

const CONFIG = '/etc/containerd/config.toml';
const HOSTS = '/etc/containerd/certs.d/127.0.0.1:5000/hosts.toml';
const proxy = parseProxy('127.0.0.1:4001');
const local = parseRegistry('http://127.0.0.1:5000');

/** smol-toml's tables have a null prototype; plain objects compare with literals. */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}
const toml = (text: string) => plain(parse(text, { integersAsBigInt: true })) as Record<string, unknown>;

/** The relevant part of `containerd config default` (1.6), comments added. */
const DEFAULT_V2 = `# managed by hand
version = 2
root = "/var/lib/containerd"
oom_score = 0

[grpc]
  address = "/run/containerd/containerd.sock"
  max_recv_message_size = 16777216

[plugins]
  [plugins."io.containerd.gc.v1.scheduler"]
    deletion_threshold = 0
    pause_threshold = 0.02
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""
      [plugins."io.containerd.grpc.v1.cri".registry.auths]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
`;

describe('planContainerdConfig', () => {
  it('creates a version 2 config that sets config_path to the certs.d beside it', () => {
    const plan = planContainerdConfig(undefined, CONFIG);
    assert.equal(plan.hostsDir, '/etc/containerd/certs.d');
    assert.equal(plan.configPathKey, 'plugins."io.containerd.grpc.v1.cri".registry.config_path');
    assert.deepEqual(toml(plan.content!), {
      version: 2n,
      plugins: { 'io.containerd.grpc.v1.cri': { registry: { config_path: '/etc/containerd/certs.d' } } },
    });
    assert.match(plan.content!, /^# containerd config written by damselfly init/);
  });

  it('merges into an existing config, keeping every other key with its TOML type', () => {
    const plan = planContainerdConfig(DEFAULT_V2, CONFIG);
    const expected = toml(DEFAULT_V2) as Record<
      string,
      Record<string, Record<string, Record<string, unknown>>>
    >;
    expected.plugins!['io.containerd.grpc.v1.cri']!.registry!.config_path = '/etc/containerd/certs.d';
    assert.deepEqual(toml(plan.content!), expected);
    // 0.02 stays a float and 0 an integer: nothing changes type in the rewrite.
    assert.match(plan.content!, /pause_threshold = 0\.02/);
    assert.match(plan.content!, /deletion_threshold = 0\n/);
    assert.doesNotMatch(plan.content!, /managed by hand/);
  });

  it('is idempotent: a second plan over its own output changes nothing', () => {
    const first = planContainerdConfig(DEFAULT_V2, CONFIG).content!;
    const second = planContainerdConfig(first, CONFIG);
    assert.equal(second.content, undefined);
    assert.equal(second.hostsDir, '/etc/containerd/certs.d');
  });

  it('keeps an existing config_path and uses it (the first of a list) as the hosts dir', () => {
    const text =
      'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/srv/hosts:/etc/docker/certs.d"\n';
    const plan = planContainerdConfig(text, CONFIG);
    assert.equal(plan.content, undefined);
    assert.equal(plan.hostsDir, '/srv/hosts');
  });

  it('uses the images plugin of a version 3 config', () => {
    const text = 'version = 3\n[plugins."io.containerd.cri.v1.runtime"]\nenable_selinux = false\n';
    const plan = planContainerdConfig(text, '/opt/c/config.toml');
    assert.equal(plan.configPathKey, 'plugins."io.containerd.cri.v1.images".registry.config_path');
    assert.deepEqual(toml(plan.content!), {
      version: 3n,
      plugins: {
        'io.containerd.cri.v1.runtime': { enable_selinux: false },
        'io.containerd.cri.v1.images': { registry: { config_path: '/opt/c/certs.d' } },
      },
    });
    const existing = planContainerdConfig(
      'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/etc/containerd/certs.d"\n',
      CONFIG,
    );
    assert.equal(existing.content, undefined);
  });

  it('adds version = 2 to a config without one, unless it uses version 1 plugin ids', () => {
    const plain = toml(planContainerdConfig('root = "/x"\n', CONFIG).content!);
    assert.equal(plain.version, 2n);
    assert.equal(plain.root, '/x');
    const v1 = toml(planContainerdConfig('[plugins.cri]\nsandbox_image = "p"\n', CONFIG).content!);
    assert.equal(v1.version, undefined);
    assert.deepEqual(v1.plugins, {
      cri: { sandbox_image: 'p', registry: { config_path: '/etc/containerd/certs.d' } },
    });
  });

  it('refuses legacy mirrors and configs.tls, which containerd rejects next to config_path', () => {
    assert.throws(
      () =>
        planContainerdConfig(
          `${DEFAULT_V2}        [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n          endpoint = ["https://m"]\n`,
          CONFIG,
        ),
      (err: unknown) => err instanceof InitError && /registry\.mirrors is set/.test(err.message),
    );
    assert.throws(
      () =>
        planContainerdConfig(
          'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."r.io".tls]\ninsecure_skip_verify = true\n',
          CONFIG,
        ),
      /configs\."r\.io"\.tls is set/,
    );
    // An empty mirrors table (what `containerd config default` writes) is fine, as are auth-only configs.
    assert.ok(
      planContainerdConfig(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."r.io".auth]\nusername = "u"\n',
        CONFIG,
      ).content,
    );
  });

  it('refuses bad TOML, unknown versions and non-table keys in the way, naming the file', () => {
    assert.throws(() => planContainerdConfig('version = ', CONFIG), /config\.toml is not valid TOML/);
    assert.throws(() => planContainerdConfig('version = 4\n', CONFIG), /unsupported config version 4/);
    assert.throws(() => planContainerdConfig('version = 2\nplugins = 1\n', CONFIG), /plugins is not a table/);
    assert.throws(
      () =>
        planContainerdConfig(
          'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "rel/dir"\n',
          CONFIG,
        ),
      /not an absolute path/,
    );
  });
});

describe('planHostsToml', () => {
  it('puts the file in a directory named literally after host:port', () => {
    assert.equal(hostsTomlPath('/etc/containerd/certs.d', local), HOSTS);
    assert.equal(
      hostsTomlPath('/etc/containerd/certs.d', parseRegistry('index.docker.io')),
      '/etc/containerd/certs.d/docker.io/hosts.toml',
    );
  });

  it('writes the daemon as the only host, the registry as server, and the header with the scheme', () => {
    const text = planHostsToml(undefined, local, proxy, HOSTS)!;
    assert.deepEqual(toml(text), {
      server: 'http://127.0.0.1:5000',
      host: {
        'http://127.0.0.1:4001': {
          capabilities: ['pull', 'resolve'],
          header: { 'X-Damselfly-Registry': ['http://127.0.0.1:5000'] },
        },
      },
    });
    assert.match(text, /\[host\."http:\/\/127\.0\.0\.1:4001"\]\n {2}capabilities = \["pull", "resolve"\]/);
    const hub = toml(planHostsToml(undefined, parseRegistry('docker.io'), proxy, HOSTS)!);
    assert.equal(hub.server, 'https://registry-1.docker.io');
  });

  it('merges: the daemon first, other hosts and server-level keys kept', () => {
    const existing = `server = "https://old.example"
skip_verify = false
capabilities = ["pull", "resolve", "push"]

[host."https://corp-mirror:5000"]
  capabilities = ["pull"]
  ca = "/etc/certs/corp.pem"

[host."http://127.0.0.1:4001/"]
  capabilities = ["pull"]
  skip_verify = true
  [host."http://127.0.0.1:4001/".header]
    x-damselfly-registry = "https://wrong"
    X-Other = ["1"]
`;
    const next = planHostsToml(existing, local, proxy, HOSTS)!;
    const doc = toml(next) as { host: Record<string, unknown> } & Record<string, unknown>;
    assert.equal(doc.server, 'http://127.0.0.1:5000');
    assert.equal(doc.skip_verify, false);
    assert.deepEqual(doc.capabilities, ['pull', 'resolve', 'push']);
    assert.deepEqual(Object.keys(doc.host), ['http://127.0.0.1:4001/', 'https://corp-mirror:5000']);
    assert.deepEqual(doc.host['http://127.0.0.1:4001/'], {
      capabilities: ['pull', 'resolve'],
      skip_verify: true,
      header: { 'X-Other': ['1'], 'X-Damselfly-Registry': ['http://127.0.0.1:5000'] },
    });
    assert.deepEqual(doc.host['https://corp-mirror:5000'], {
      capabilities: ['pull'],
      ca: '/etc/certs/corp.pem',
    });
    assert.equal(planHostsToml(next, local, proxy, HOSTS), undefined);
  });

  it('moves the daemon ahead of hosts listed before it, then stays unchanged', () => {
    const fresh = planHostsToml(undefined, local, proxy, HOSTS)!;
    assert.equal(planHostsToml(fresh, local, proxy, HOSTS), undefined);
    const behind = `server = "http://127.0.0.1:5000"\n[host."https://m"]\ncapabilities = ["pull"]\n${fresh.slice(fresh.indexOf('[host'))}`;
    const next = planHostsToml(behind, local, proxy, HOSTS)!;
    assert.deepEqual(Object.keys((toml(next) as { host: object }).host), [
      'http://127.0.0.1:4001',
      'https://m',
    ]);
    assert.equal(planHostsToml(next, local, proxy, HOSTS), undefined);
  });

  it('adds a second daemon address rather than replacing one it does not own', () => {
    const first = planHostsToml(undefined, local, proxy, HOSTS)!;
    const other = parseProxy('10.0.0.5:4001');
    const doc = toml(planHostsToml(first, local, other, HOSTS)!) as { host: object };
    assert.deepEqual(Object.keys(doc.host), ['http://10.0.0.5:4001', 'http://127.0.0.1:4001']);
  });

  it('refuses a hosts.toml whose host is not a table', () => {
    assert.throws(
      () => planHostsToml('host = "x"\n', local, proxy, HOSTS),
      /hosts\.toml: host must be a table/,
    );
    assert.throws(() => planHostsToml('server = \n', local, proxy, HOSTS), /not valid TOML/);
  });
});
