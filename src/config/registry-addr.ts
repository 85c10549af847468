/**
 * Registry addresses in config and flags: `host[:port]` (https) or `http(s)://host[:port]`.
 */
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const DOCKER_HUB = 'https://registry-1.docker.io';
/** host, host:port, [v6]:port — what may follow the scheme of a registry origin. */
const AUTHORITY = /^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

export class RegistryAddressError extends Error {
  readonly code = 'EREGISTRYADDR';
}

/**
 * A registry given as `host[:port]` (https) or `http(s)://host[:port]` → its origin, e.g.
 * `http://127.0.0.1:5000`. Docker Hub's aliases map to its API host. Paths, users and queries are refused.
 */
export function registryOrigin(value: string): string {
  const text = value.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `https://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new RegistryAddressError(`invalid registry "${value}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new RegistryAddressError(`invalid registry "${value}": only http and https`);
  }
  if (
    url.username ||
    url.password ||
    url.search ||
    url.hash ||
    (url.pathname !== '/' && url.pathname !== '')
  ) {
    throw new RegistryAddressError(`invalid registry "${value}": give only scheme, host and port`);
  }
  if (!AUTHORITY.test(url.host)) throw new RegistryAddressError(`invalid registry "${value}"`);
  if (DOCKER_HUB_ALIASES.has(url.hostname.toLowerCase())) return DOCKER_HUB;
  return url.origin;
}
