import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'smol-toml';
import { parseProxy, parseRegistries, planRegistriesConf } from '../../src/init/index.js';

const PATH = '/etc/containers/registries.conf';
const proxy = parseProxy('127.0.0.1:4001');

/** smol-toml's tables have a null prototype; plain objects compare with literals. */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}
const toml = (text: string) => plain(parse(text, { integersAsBigInt: true })) as Record<string, unknown>;

describe('planRegistriesConf', () => {
  it('creates a [[registry]] per registry with the daemon as insecure mirror', () => {
    const plan = planRegistriesConf(undefined, parseRegistries(['http://127.0.0.1:5000']), proxy, PATH);
    assert.deepEqual(plan.warnings, []);
    assert.deepEqual(toml(plan.content!), {
      registry: [
        {
          location: '127.0.0.1:5000',
          insecure: true,
          mirror: [{ location: '127.0.0.1:4001', insecure: true }],
        },
      ],
    });
    const hub = toml(planRegistriesConf(undefined, parseRegistries(['docker.io']), proxy, PATH).content!);
    assert.deepEqual(hub.registry, [
      { location: 'docker.io', mirror: [{ location: '127.0.0.1:4001', insecure: true }] },
    ]);
  });

  it('merges: other keys, registries and mirrors kept, the daemon first mirror', () => {
    const current = `# comment
unqualified-search-registries = ["docker.io", "quay.io"]
short-name-mode = "enforcing"

[[registry]]
location = "127.0.0.1:5000"
insecure = false
[[registry.mirror]]
location = "other.mirror:5000"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "quay.io"
location = "quay.io"
blocked = false
`;
    const plan = planRegistriesConf(
      current,
      parseRegistries(['http://127.0.0.1:5000', 'quay.io']),
      proxy,
      PATH,
    );
    assert.deepEqual(toml(plan.content!), {
      'unqualified-search-registries': ['docker.io', 'quay.io'],
      'short-name-mode': 'enforcing',
      registry: [
        {
          location: '127.0.0.1:5000',
          insecure: true,
          mirror: [
            { location: '127.0.0.1:4001', insecure: true },
            { location: 'other.mirror:5000', 'pull-from-mirror': 'digest-only' },
          ],
        },
        {
          prefix: 'quay.io',
          location: 'quay.io',
          blocked: false,
          mirror: [{ location: '127.0.0.1:4001', insecure: true }],
        },
      ],
    });
    assert.equal(
      planRegistriesConf(plan.content, parseRegistries(['http://127.0.0.1:5000', 'quay.io']), proxy, PATH)
        .content,
      undefined,
    );
  });

  it('moves an existing daemon mirror first, keeping its extra keys, then stays unchanged', () => {
    const current = `[[registry]]
location = "ghcr.io"
[[registry.mirror]]
location = "m.example"
[[registry.mirror]]
location = "127.0.0.1:4001"
pull-from-mirror = "all"
`;
    const ghcr = parseRegistries(['ghcr.io']);
    const next = planRegistriesConf(current, ghcr, proxy, PATH).content!;
    assert.deepEqual((toml(next).registry as { mirror: unknown }[])[0]!.mirror, [
      { location: '127.0.0.1:4001', 'pull-from-mirror': 'all', insecure: true },
      { location: 'm.example' },
    ]);
    assert.equal(planRegistriesConf(next, ghcr, proxy, PATH).content, undefined);
  });

  it('leaves an https registry marked insecure by the user as it is', () => {
    const current = '[[registry]]\nlocation = "r.example"\ninsecure = true\n';
    const next = toml(planRegistriesConf(current, parseRegistries(['r.example']), proxy, PATH).content!);
    assert.equal((next.registry as { insecure: boolean }[])[0]!.insecure, true);
  });

  it('warns that one daemon port serves one registry when given several', () => {
    const plan = planRegistriesConf(undefined, parseRegistries(['docker.io,quay.io']), proxy, PATH);
    assert.equal(plan.warnings.length, 1);
    assert.match(plan.warnings[0]!, /only one of docker\.io, quay\.io can be served/);
  });

  it('refuses the version 1 format and malformed registry tables, naming the file', () => {
    const r = parseRegistries(['docker.io']);
    assert.throws(
      () => planRegistriesConf('[registries.search]\nregistries = ["docker.io"]\n', r, proxy, PATH),
      /registries\.conf uses the version 1 format/,
    );
    assert.throws(
      () => planRegistriesConf('registry = "x"\n', r, proxy, PATH),
      /registry must be an array of tables/,
    );
    assert.throws(() => planRegistriesConf('[[registry]\n', r, proxy, PATH), /not valid TOML/);
  });
});
