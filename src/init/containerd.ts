import { dirname, isAbsolute, join } from 'node:path';
import { InitError } from './errors.js';
import type { ProxyAddress, Registry } from './registry-host.js';
import { dottedKey, isTable, parseToml, stringifyToml, type Table, tableAt } from './toml.js';

/**
 * containerd: config.toml points the CRI plugin's registry `config_path` at a hosts dir, and each
 * registry gets `<hostsDir>/<host>/hosts.toml` whose first host is the daemon's mirror. containerd tries
 * the hosts in order and falls back to `server`, so a daemon that is down costs a retry, not a failed pull.
 */

/** The header that tells the daemon's mirror which registry (with scheme) a request is for. */
export const REGISTRY_HEADER = 'X-Damselfly-Registry';
const REGISTRY_HEADER_LOWER = REGISTRY_HEADER.toLowerCase();

export interface ContainerdConfigPlan {
  /** The new config.toml, or undefined when `config_path` is already set and nothing changes. */
  content: string | undefined;
  /** Where the hosts.toml files go: the existing `config_path` if set, else `<dir of config>/certs.d`. */
  hostsDir: string;
  /** The key that holds `config_path`, for messages. */
  configPathKey: string;
}

/** The CRI registry table for each config version (1: plugin ids, 2: plugin URIs, 3: split CRI plugins). */
const REGISTRY_KEYS: Record<number, readonly string[]> = {
  1: ['plugins', 'cri', 'registry'],
  2: ['plugins', 'io.containerd.grpc.v1.cri', 'registry'],
  3: ['plugins', 'io.containerd.cri.v1.images', 'registry'],
};

function configVersion(doc: Table, path: string): number | undefined {
  const v = doc.version;
  if (v === undefined) return undefined;
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !REGISTRY_KEYS[n]) {
    throw new InitError(`${path}: unsupported config version ${String(v)} (damselfly init knows 1, 2 and 3)`);
  }
  return n;
}

/**
 * A file without `version` is version 1 to containerd, where plugins are keyed by short ids (`cri`,
 * `linux`). If it holds such keys it is kept as version 1; otherwise (a new file, or one with no or only
 * URI-keyed plugin tables) `version = 2` is added, which every containerd since 1.5 reads and 2.x migrates.
 */
function effectiveVersion(doc: Table, path: string): { version: number; addVersion: boolean } {
  const declared = configVersion(doc, path);
  if (declared !== undefined) return { version: declared, addVersion: false };
  const plugins = doc.plugins;
  if (isTable(plugins) && Object.keys(plugins).some((k) => !k.includes('.'))) {
    return { version: 1, addVersion: false };
  }
  return { version: 2, addVersion: true };
}

/** containerd refuses `config_path` next to the deprecated `mirrors` and `configs.<host>.tls`. */
function checkNoLegacyMirrors(registry: Table, keys: readonly string[], path: string): void {
  const mirrors = registry.mirrors;
  if (isTable(mirrors) && Object.keys(mirrors).length > 0) {
    throw new InitError(
      `${path}: ${dottedKey([...keys, 'mirrors'])} is set, and containerd refuses it together with ` +
        'config_path; move those mirrors into hosts.toml files (see docs/runtime-integration.md), then run again',
    );
  }
  const configs = registry.configs;
  if (isTable(configs)) {
    for (const [host, config] of Object.entries(configs)) {
      if (isTable(config) && config.tls !== undefined) {
        throw new InitError(
          `${path}: ${dottedKey([...keys, 'configs', host, 'tls'])} is set, and containerd refuses it ` +
            'together with config_path; move it into a hosts.toml file (ca, client, skip_verify), then run again',
        );
      }
    }
  }
}

/** Plans config.toml (`current` undefined: no such file). `configPath` must be absolute. */
export function planContainerdConfig(current: string | undefined, configPath: string): ContainerdConfigPlan {
  const doc = current === undefined ? {} : parseToml(current, configPath);
  const { version, addVersion } = effectiveVersion(doc, configPath);
  const keys = REGISTRY_KEYS[version]!;
  const configPathKey = dottedKey([...keys, 'config_path']);
  const registry = tableAt(doc, keys, configPath);
  const existing = registry.config_path;
  if (existing !== undefined && typeof existing !== 'string') {
    throw new InitError(`${configPath}: ${configPathKey} must be a string`);
  }
  if (existing) {
    // containerd takes a list of dirs (split like $PATH) and uses the first that has the host's dir.
    const first = existing.split(':').find((p) => p !== '') ?? '';
    if (!isAbsolute(first)) {
      throw new InitError(`${configPath}: ${configPathKey} "${existing}" is not an absolute path`);
    }
    return { content: undefined, hostsDir: first, configPathKey };
  }
  checkNoLegacyMirrors(registry, keys, configPath);
  const hostsDir = join(dirname(configPath), 'certs.d');
  registry.config_path = hostsDir;
  const out: Table = addVersion ? { version: 2n, ...doc } : doc;
  const header =
    current === undefined || current.trim() === ''
      ? '# containerd config written by damselfly init: CRI image pulls read their registry hosts from\n' +
        `# ${hostsDir}/<registry>/hosts.toml, which send them through the Damselfly daemon.\n`
      : '';
  return { content: header + stringifyToml(out), hostsDir, configPathKey };
}

/** `<hostsDir>/<host[:port]>/hosts.toml`: containerd looks the dir up by the literal registry host. */
export function hostsTomlPath(hostsDir: string, registry: Registry): string {
  return join(hostsDir, registry.host, 'hosts.toml');
}

function sameHostUrl(a: string, b: string): boolean {
  const norm = (s: string) => s.trim().replace(/\/+$/, '').toLowerCase();
  return norm(a) === norm(b);
}

function freshHostsToml(registry: Registry, proxy: ProxyAddress): string {
  const q = (s: string) => JSON.stringify(s);
  const key = `host.${q(proxy.url)}`;
  return [
    `# Written by damselfly init: pulls from ${registry.host} go through the Damselfly daemon's registry`,
    `# mirror at ${proxy.url}; if it fails, containerd falls back to the next host and then to server.`,
    `server = ${q(registry.origin)}`,
    '',
    `[${key}]`,
    '  capabilities = ["pull", "resolve"]',
    `  [${key}.header]`,
    `    ${REGISTRY_HEADER} = [${q(registry.origin)}]`,
    '',
  ].join('\n');
}

/**
 * Plans one hosts.toml. An existing file keeps its other hosts (after ours: containerd tries hosts in
 * order) and its server-level keys; `server` becomes the registry's origin, and our host entry keeps any
 * keys the user added (ca, skip_verify…). Returns undefined when the file is already right.
 */
export function planHostsToml(
  current: string | undefined,
  registry: Registry,
  proxy: ProxyAddress,
  path: string,
): string | undefined {
  if (current === undefined || current.trim() === '') return freshHostsToml(registry, proxy);
  const before = parseToml(current, path);
  const doc = parseToml(current, path);
  const hosts = doc.host ?? {};
  if (!isTable(hosts)) throw new InitError(`${path}: host must be a table of [host."<url>"] entries`);
  const ownKey = Object.keys(hosts).find((k) => sameHostUrl(k, proxy.url));
  const own = ownKey === undefined ? {} : hosts[ownKey];
  if (!isTable(own)) throw new InitError(`${path}: host."${ownKey}" must be a table`);
  const header = own.header ?? {};
  if (!isTable(header)) throw new InitError(`${path}: host."${ownKey}".header must be a table`);
  const entry: Table = {
    ...own,
    capabilities: ['pull', 'resolve'],
    header: {
      ...Object.fromEntries(
        Object.entries(header).filter(([k]) => k.toLowerCase() !== REGISTRY_HEADER_LOWER),
      ),
      [REGISTRY_HEADER]: [registry.origin],
    },
  };
  const others = Object.entries(hosts).filter(([k]) => k !== ownKey);
  doc.server = registry.origin;
  doc.host = Object.fromEntries([[ownKey ?? proxy.url, entry], ...others]);
  const next = stringifyToml(doc);
  return next === stringifyToml(before) ? undefined : next;
}
