import { InitError } from './errors.js';

/**
 * Registries and the daemon's proxy address as `damselfly init` takes them from flags. A registry is a
 * host (`registry.example.com`, `127.0.0.1:5000`: https) or a URL with a scheme (`http://127.0.0.1:5000`).
 */

const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
/** Where Docker Hub's registry API answers; `docker.io` itself is only a name. */
export const DOCKER_HUB_ORIGIN = 'https://registry-1.docker.io';
/** The name containerd (hosts dir) and registries.conf use for Docker Hub. */
export const DOCKER_HUB_HOST = 'docker.io';
/** The daemon's proxy port on its default address. */
export const DEFAULT_PROXY = 'http://127.0.0.1:4001';

/** A DNS name, an IPv4 address or a bracketed IPv6 address, then an optional port. */
const AUTHORITY = /^(?<name>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::(?<port>\d{1,5}))?$/i;

export interface Registry {
  /** What the user typed, for messages. */
  input: string;
  /** `scheme://host[:port]`: where the daemon fetches from, and containerd's fallback `server`. */
  origin: string;
  /** `host[:port]` as image references name it: containerd's hosts dir, registries.conf's location. */
  host: string;
  /** Plain http (an insecure registry for podman). */
  plainHttp: boolean;
  dockerHub: boolean;
}

export interface ProxyAddress {
  /** `http://host:port` */
  url: string;
  /** `host:port` (registries.conf mirror location, Docker's insecure-registries) */
  authority: string;
  /** 127.0.0.0/8, ::1 or localhost: every runtime already trusts plain http there. */
  loopback: boolean;
}

function checkPort(port: string | undefined, value: string, what: string): void {
  if (port === undefined) return;
  const n = Number(port);
  if (n < 1 || n > 65535) throw new InitError(`invalid ${what} "${value}": port must be 1-65535`);
}

/** One `--registry` entry. */
export function parseRegistry(value: string): Registry {
  const text = value.trim();
  if (text === '') throw new InitError('invalid registry "": empty entry in --registry');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
    throw new InitError(`invalid registry "${value}": only http:// and https:// are supported`);
  }
  let rest = scheme === undefined ? text : text.slice(scheme.length + 3);
  if (rest.endsWith('/')) rest = rest.slice(0, -1);
  if (/[/?#@]/.test(rest)) {
    throw new InitError(
      `invalid registry "${value}": give a host[:port] or a scheme://host[:port], without path, user or query`,
    );
  }
  const m = AUTHORITY.exec(rest);
  if (!m) throw new InitError(`invalid registry "${value}": not a host[:port]`);
  checkPort(m.groups?.port, value, 'registry');

  const hostname = m.groups!.name!.toLowerCase();
  const port = m.groups?.port;
  const host = port === undefined ? hostname : `${hostname}:${Number(port)}`;
  if (DOCKER_HUB_ALIASES.has(hostname) && port === undefined) {
    if (scheme === 'http') throw new InitError(`invalid registry "${value}": Docker Hub is https only`);
    return {
      input: value,
      origin: DOCKER_HUB_ORIGIN,
      host: DOCKER_HUB_HOST,
      plainHttp: false,
      dockerHub: true,
    };
  }
  const plainHttp = scheme === 'http';
  return {
    input: value,
    origin: `${plainHttp ? 'http' : 'https'}://${host}`,
    host,
    plainHttp,
    dockerHub: false,
  };
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
  checkPort(m.groups.port, value, 'proxy');
  const authority = `${m.groups.name!.toLowerCase()}:${Number(m.groups.port)}`;
  return { url: `http://${authority}`, authority, loopback: isLoopback(m.groups.name!) };
}
