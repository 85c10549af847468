import { InitError } from './errors.js';
import type { ProxyAddress, Registry } from './registry-host.js';
import { isTable, parseToml, stringifyToml, type Table } from './toml.js';

/**
 * Podman, CRI-O, skopeo and buildah: registries.conf (version 2) gets, for each registry, a `[[registry]]`
 * whose first `[[registry.mirror]]` is the daemon's proxy. These tools send no `ns=` and cannot add a
 * header, so the daemon sends such requests to its `proxy.registryMirror.addr`.
 */

export interface PodmanPlan {
  /** The new registries.conf, or undefined when it is already right. */
  content: string | undefined;
  warnings: string[];
}

function tableList(value: unknown, what: string, path: string): Table[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every(isTable)) {
    throw new InitError(`${path}: ${what} must be an array of tables ([[${what}]])`);
  }
  return value;
}

const norm = (s: unknown) => (typeof s === 'string' ? s.trim().replace(/\/+$/, '').toLowerCase() : undefined);

export function planRegistriesConf(
  current: string | undefined,
  registries: readonly Registry[],
  proxy: ProxyAddress,
  path: string,
): PodmanPlan {
  const warnings: string[] = [];
  if (registries.length > 1) {
    warnings.push(
      `podman and skopeo do not tell the mirror which registry a request is for, so the daemon sends ` +
        `every one to its proxy.registryMirror.addr: only one of ${registries.map((r) => r.host).join(', ')} ` +
        'can be served by one daemon proxy port (a pull from another may get a different image of the same name)',
    );
  }
  const doc = current === undefined ? {} : parseToml(current, path);
  if (isTable(doc.registries)) {
    throw new InitError(
      `${path} uses the version 1 format ([registries.search], [registries.insecure]); containers refuse ` +
        'to mix it with [[registry]] tables: convert it to version 2 first (see containers-registries.conf(5))',
    );
  }
  const before = stringifyToml(doc);
  const entries = tableList(doc.registry, 'registry', path);
  for (const registry of registries) {
    // An entry's prefix defaults to its location; the one whose prefix is exactly this host is its entry.
    let entry = entries.find((e) => norm(e.prefix ?? e.location) === registry.host);
    if (!entry) {
      entry = { location: registry.host };
      entries.push(entry);
    }
    if (registry.plainHttp) entry.insecure = true;
    const mirrors = tableList(entry.mirror, 'registry.mirror', path);
    const own = mirrors.find((m) => norm(m.location) === proxy.authority) ?? {};
    entry.mirror = [
      { ...own, location: proxy.authority, insecure: true },
      ...mirrors.filter((m) => m !== own),
    ];
  }
  doc.registry = entries;
  const next = stringifyToml(doc);
  if (next === before) return { content: undefined, warnings };
  const header =
    current === undefined || current.trim() === ''
      ? '# Written by damselfly init: pulls by podman, CRI-O, skopeo and buildah from these registries go\n' +
        `# through the Damselfly daemon's registry mirror at ${proxy.authority}.\n`
      : '';
  return { content: header + next, warnings };
}
