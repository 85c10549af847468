import { registryOrigin } from '../../config/index.js';

/**
 * Which registry a mirror request is for. containerd names it in `?ns=<host>` (no scheme), hosts.toml
 * written by `damselfly init` also sends `X-Damselfly-Registry: <url>` (with the scheme), and skopeo and
 * podman send neither, so the configured default applies.
 */

export const REGISTRY_HEADER = 'x-damselfly-registry';

export class UpstreamError extends Error {
  readonly code = 'EUPSTREAM';
}

function origin(value: string, what: string): string {
  try {
    return registryOrigin(value);
  } catch (err) {
    throw new UpstreamError(`${what}: ${(err as Error).message}`);
  }
}

export interface UpstreamHints {
  /** The X-Damselfly-Registry header. */
  header?: string;
  /** containerd's `ns` query parameter: a host without scheme. */
  ns?: string;
  /** The configured default registry origin. */
  defaultOrigin: string;
}

/**
 * The header wins (it carries the scheme); then `ns`, which is https unless it names the default
 * registry's host (so a plain-http default keeps its scheme); then the default.
 */
export function resolveUpstream(hints: UpstreamHints): string {
  if (hints.header?.trim()) return origin(hints.header, REGISTRY_HEADER);
  if (hints.ns?.trim()) {
    const ns = hints.ns.trim();
    if (/:\/\//.test(ns)) throw new UpstreamError(`invalid ns "${ns}": a host is expected`);
    const named = origin(ns, 'ns');
    const fallback = new URL(hints.defaultOrigin);
    return new URL(named).host === fallback.host ? fallback.origin : named;
  }
  return hints.defaultOrigin;
}
