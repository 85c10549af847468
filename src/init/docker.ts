import { InitError } from './errors.js';
import type { ProxyAddress, Registry } from './registry-host.js';

/**
 * Docker: daemon.json's `registry-mirrors`, which dockerd applies to Docker Hub only (every other
 * registry is pulled directly; a long-standing limitation, see docs/runtime-integration.md).
 *
 * Plain http to the mirror: the classic image store uses the mirror URL's own scheme, but the containerd
 * image store and BuildKit turn `registry-mirrors` into bare hosts and use plain http only for loopback
 * hosts or hosts listed in `insecure-registries` as `http://host:port` (a bare `name:port` there parses as
 * a URL scheme and is lost). So a non-loopback proxy is added there in that form; the classic store
 * accepts it too (it strips the `http://`, logging a warning at start).
 */

export interface DockerPlan {
  /** The new daemon.json, or undefined when nothing changes (or nothing applies). */
  content: string | undefined;
  /** False when no registry is Docker Hub: then Docker has nothing it can route through Damselfly. */
  applies: boolean;
  warnings: string[];
}

type Json = Record<string, unknown>;

function stringList(doc: Json, key: string, path: string): string[] {
  const value = doc[key];
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new InitError(`${path}: "${key}" must be a list of strings`);
  }
  return value;
}

const norm = (s: string) => s.trim().replace(/\/+$/, '').toLowerCase();

export function planDaemonJson(
  current: string | undefined,
  registries: readonly Registry[],
  proxy: ProxyAddress,
  path: string,
): DockerPlan {
  const warnings: string[] = [];
  const others = registries.filter((r) => !r.dockerHub).map((r) => r.host);
  if (others.length > 0) {
    warnings.push(
      `Docker applies registry mirrors to Docker Hub only: pulls from ${others.join(', ')} will not go ` +
        'through Damselfly (use "damselfly init containerd" or "damselfly init podman" for those)',
    );
  }
  if (!registries.some((r) => r.dockerHub)) return { content: undefined, applies: false, warnings };

  let doc: Json = {};
  if (current !== undefined && current.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(current);
    } catch (err) {
      throw new InitError(`${path} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new InitError(`${path} must hold a JSON object`);
    }
    doc = parsed as Json;
  }
  const before = JSON.stringify(doc);

  // First, so Docker tries the daemon before any other mirror (and Docker Hub itself after all of them).
  const mirrors = stringList(doc, 'registry-mirrors', path);
  // An entry the user spelled differently (a trailing slash) is kept as spelled.
  const own = mirrors.find((m) => norm(m) === norm(proxy.url)) ?? proxy.url;
  doc['registry-mirrors'] = [own, ...mirrors.filter((m) => norm(m) !== norm(proxy.url))];

  if (!proxy.loopback) {
    const insecure = stringList(doc, 'insecure-registries', path);
    if (!insecure.some((r) => norm(r) === norm(proxy.url)))
      doc['insecure-registries'] = [...insecure, proxy.url];
  }

  const after = JSON.stringify(doc);
  return {
    content: after === before ? undefined : `${JSON.stringify(doc, null, 2)}\n`,
    applies: true,
    warnings,
  };
}
