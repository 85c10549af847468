/**
 * Registry addresses as users write them in config and flags: a host (`registry.example.com`,
 * `127.0.0.1:5000`: https) or a URL with a scheme (`http://127.0.0.1:5000`). One parser for the daemon's
 * config and `damselfly init`.
 */

const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
/** Where Docker Hub's registry API answers; `docker.io` itself is only a name. */
export const DOCKER_HUB_ORIGIN = 'https://registry-1.docker.io';
/** The name image references, containerd's hosts dir and registries.conf use for Docker Hub. */
export const DOCKER_HUB_HOST = 'docker.io';

/** A DNS name, an IPv4 address or a bracketed IPv6 address, then an optional port. */
export const AUTHORITY = /^(?<name>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::(?<port>\d{1,5}))?$/i;

export class RegistryAddressError extends Error {
  readonly code = 'EREGISTRYADDR';
}

export interface RegistryAddress {
  /** `scheme://host[:port]`: where the registry API answers (no default port). */
  origin: string;
  /** `host[:port]` as image references name it. */
  host: string;
  /** Plain http (an insecure registry). */
  plainHttp: boolean;
  dockerHub: boolean;
}

/** Throws unless `port` (when given) is 1–65535. */
export function checkPort(port: string | undefined, value: string, what: string): void {
  if (port === undefined) return;
  const n = Number(port);
  if (n < 1 || n > 65535) throw new RegistryAddressError(`invalid ${what} "${value}": port must be 1-65535`);
}

export function parseRegistryAddress(value: string): RegistryAddress {
  const text = value.trim();
  if (text === '') throw new RegistryAddressError('invalid registry "": empty');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
    throw new RegistryAddressError(`invalid registry "${value}": only http:// and https:// are supported`);
  }
  let rest = scheme === undefined ? text : text.slice(scheme.length + 3);
  if (rest.endsWith('/')) rest = rest.slice(0, -1);
  if (/[/?#@]/.test(rest)) {
    throw new RegistryAddressError(
      `invalid registry "${value}": give a host[:port] or a scheme://host[:port], without path, user or query`,
    );
  }
  const m = AUTHORITY.exec(rest);
  if (!m) throw new RegistryAddressError(`invalid registry "${value}": not a host[:port]`);
  checkPort(m.groups?.port, value, 'registry');
  const hostname = m.groups!.name!.toLowerCase();
  const port = m.groups?.port;
  const host = port === undefined ? hostname : `${hostname}:${Number(port)}`;
  if (DOCKER_HUB_ALIASES.has(hostname) && port === undefined) {
    if (scheme === 'http')
      throw new RegistryAddressError(`invalid registry "${value}": Docker Hub is https only`);
    return { origin: DOCKER_HUB_ORIGIN, host: DOCKER_HUB_HOST, plainHttp: false, dockerHub: true };
  }
  const plainHttp = scheme === 'http';
  // URL drops the scheme's default port: `http://r:80` and `http://r` are one registry (and one task id).
  const origin = new URL(`${plainHttp ? 'http' : 'https'}://${host}`).origin;
  return { origin, host, plainHttp, dockerHub: false };
}

/** A registry → its origin, e.g. `http://127.0.0.1:5000`; Docker Hub's names → its API host. */
export function registryOrigin(value: string): string {
  return parseRegistryAddress(value).origin;
}
