import {
  AUTHORITY,
  checkPort,
  DOCKER_HUB_HOST,
  DOCKER_HUB_ORIGIN,
  parseRegistryAddress,
  type RegistryAddress,
  RegistryAddressError,
} from '../config/index.js';
import { InitError } from './errors.js';

/**
 * Registries and the daemon's proxy address as `damselfly init` takes them from flags. A registry is a
 * host (`registry.example.com`, `127.0.0.1:5000`: https) or a URL with a scheme (`http://127.0.0.1:5000`).
 */

export { DOCKER_HUB_HOST, DOCKER_HUB_ORIGIN };

/** The daemon's proxy port on its default address. */
export const DEFAULT_PROXY = 'http://127.0.0.1:4001';

/**
 * A registry for init: its `origin` is where the daemon fetches from and containerd's fallback `server`;
 * its `host` names containerd's hosts dir and registries.conf's location.
 */
export interface Registry extends RegistryAddress {
  /** What the user typed, for messages. */
  input: string;
}

export interface ProxyAddress {
  /** `http://host:port` */
  url: string;
  /** `host:port` (registries.conf mirror location, Docker's insecure-registries) */
  authority: string;
  /** 127.0.0.0/8, ::1 or localhost: every runtime already trusts plain http there. */
  loopback: boolean;
}

/** One `--registry` entry. */
export function parseRegistry(value: string): Registry {
  return { input: value, ...asInitError(() => parseRegistryAddress(value)) };
}

/** The config module's parse errors, as `damselfly init` reports them. */
function asInitError<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof RegistryAddressError) throw new InitError(err.message);
    throw err;
  }
}

/**
 * `--registry` values (each may be a comma-separated list) → registries, one per host. The same host twice
 * is folded; the same host with two schemes is a mistake.
 */
export function parseRegistries(values: readonly string[]): Registry[] {
  const byHost = new Map<string, Registry>();
  for (const value of values) {
    for (const entry of value.split(',')) {
      if (entry.trim() === '') throw new InitError(`--registry "${value}" has an empty entry`);
      const registry = parseRegistry(entry);
      const seen = byHost.get(registry.host);
      if (seen && seen.origin !== registry.origin) {
        throw new InitError(
          `registry "${registry.host}" is given twice, as ${seen.origin} and as ${registry.origin}`,
        );
      }
      if (!seen) byHost.set(registry.host, registry);
    }
  }
  if (byHost.size === 0) throw new InitError('--registry names no registry');
  return [...byHost.values()];
}

function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === 'localhost' || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** `--proxy`: `host:port` or `http://host:port` of the daemon's proxy port (plain http). */
export function parseProxy(value: string): ProxyAddress {
  const text = value.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== 'http') {
    throw new InitError(`invalid proxy "${value}": the daemon's proxy port speaks plain http://`);
  }
  let rest = scheme === undefined ? text : text.slice(scheme.length + 3);
  if (rest.endsWith('/')) rest = rest.slice(0, -1);
  const m = AUTHORITY.exec(rest);
  if (!m || /[/?#@]/.test(rest)) throw new InitError(`invalid proxy "${value}": expected host:port`);
  if (m.groups?.port === undefined) throw new InitError(`invalid proxy "${value}": the port is missing`);
  asInitError(() => checkPort(m.groups?.port, value, 'proxy'));
  const authority = `${m.groups.name!.toLowerCase()}:${Number(m.groups.port)}`;
  return { url: `http://${authority}`, authority, loopback: isLoopback(m.groups.name!) };
}
