import { DigestError } from '../../task/index.js';
import { parseContentDigest } from './digest.js';
import { InvalidReferenceError } from './errors.js';

/** A parsed image reference. `registry` is as written by users (`docker.io`, `localhost:5000`). */
export interface ImageReference {
  registry: string;
  /** Path inside the registry, e.g. `library/ubuntu`. */
  repository: string;
  tag?: string;
  /** When present it wins over the tag: content is fetched and verified by digest. */
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';
/** Where Docker Hub's registry API actually lives. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
export const DEFAULT_TAG = 'latest';

// The grammar of github.com/distribution/reference, rewritten as anchored pieces.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;
const IPV6 = /^\[[0-9a-fA-F:.]+\]$/;
const PORT = /^\d{1,5}$/;
const MAX_NAME_LENGTH = 255;

/**
 * Parses `[registry/]repository[:tag][@digest]` the way Docker does: no registry means Docker Hub,
 * a single-component Hub name gets `library/`, and no tag and no digest means `latest`.
 * The first component is a registry when it has a `.` or a `:`, or is `localhost`.
 */
export function parseReference(ref: string): ImageReference {
  if (ref.length === 0) throw new InvalidReferenceError(ref, 'empty');
  if (/\s/.test(ref)) throw new InvalidReferenceError(ref, 'contains whitespace');
  if (/^[a-z]+:\/\//i.test(ref)) {
    throw new InvalidReferenceError(ref, 'leave out the scheme (use --plain-http for http registries)');
  }
  const [nameAndTag, digest] = splitDigest(ref);
  const [name, tag] = splitTag(ref, nameAndTag);
  const [registry, repository] = splitRegistry(ref, name);
  checkRepository(ref, repository);
  const parsed: ImageReference = { registry, repository };
  if (tag !== undefined) parsed.tag = tag;
  if (digest !== undefined) parsed.digest = digest;
  if (tag === undefined && digest === undefined) parsed.tag = DEFAULT_TAG;
  return parsed;
}

function splitDigest(ref: string): [string, string | undefined] {
  const at = ref.indexOf('@');
  if (at < 0) return [ref, undefined];
  const digest = ref.slice(at + 1);
  try {
    parseContentDigest(digest);
  } catch (err) {
    const reason = err instanceof DigestError ? err.message : String(err);
    throw new InvalidReferenceError(ref, reason);
  }
  return [ref.slice(0, at), digest];
}

function splitTag(ref: string, nameAndTag: string): [string, string | undefined] {
  const colon = nameAndTag.lastIndexOf(':');
  // A colon before the last slash is a registry port, not a tag.
  if (colon < 0 || colon < nameAndTag.lastIndexOf('/')) return [nameAndTag, undefined];
  const tag = nameAndTag.slice(colon + 1);
  if (!TAG.test(tag)) {
    throw new InvalidReferenceError(ref, `bad tag "${tag}" (letters, digits, _ . -; at most 128)`);
  }
  return [nameAndTag.slice(0, colon), tag];
}

function splitRegistry(ref: string, name: string): [string, string] {
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const looksLikeRegistry = first.includes('.') || first.includes(':') || first === 'localhost';
  if (!looksLikeRegistry) {
    return [DOCKER_HUB, slash < 0 ? `library/${name}` : name];
  }
  checkRegistry(ref, first);
  const rest = name.slice(slash + 1);
  if (DOCKER_HUB_ALIASES.has(first.toLowerCase())) {
    return [DOCKER_HUB, rest.includes('/') ? rest : `library/${rest}`];
  }
  return [first, rest];
}

function checkRegistry(ref: string, registry: string): void {
  const portAt = registry.startsWith('[') ? registry.indexOf(']:') + 1 : registry.lastIndexOf(':');
  const host = portAt > 0 ? registry.slice(0, portAt) : registry;
  const port = portAt > 0 ? registry.slice(portAt + 1) : undefined;
  if (!(HOST.test(host) || IPV6.test(host)))
    throw new InvalidReferenceError(ref, `bad registry "${registry}"`);
  if (port !== undefined && !(PORT.test(port) && Number(port) > 0 && Number(port) < 65536)) {
    throw new InvalidReferenceError(ref, `bad registry port "${port}"`);
  }
}

function checkRepository(ref: string, repository: string): void {
  if (repository.length === 0) throw new InvalidReferenceError(ref, 'missing repository name');
  if (repository.length > MAX_NAME_LENGTH) {
    throw new InvalidReferenceError(ref, `repository name longer than ${MAX_NAME_LENGTH} characters`);
  }
  for (const component of repository.split('/')) {
    if (PATH_COMPONENT.test(component)) continue;
    if (PATH_COMPONENT.test(component.toLowerCase())) {
      throw new InvalidReferenceError(ref, 'repository name must be lowercase');
    }
    throw new InvalidReferenceError(
      ref,
      `bad repository component "${component}" (lowercase letters, digits and single . _ __ - between them)`,
    );
  }
}

/** The canonical string: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: ImageReference): string {
  const tag = ref.tag !== undefined ? `:${ref.tag}` : '';
  const digest = ref.digest !== undefined ? `@${ref.digest}` : '';
  return `${ref.registry}/${ref.repository}${tag}${digest}`;
}

/** The same repository pinned to `digest` (the tag is kept for display). */
export function withDigest(ref: ImageReference, digest: string): ImageReference {
  return { ...ref, digest };
}

/** What to put after `/manifests/`: the digest when known, else the tag (checked: it goes into a URL). */
export function manifestReference(ref: ImageReference): string {
  const reference = ref.digest ?? ref.tag ?? DEFAULT_TAG;
  checkTagOrDigest(reference);
  return reference;
}

/** A tag or a digest, as `PUT /manifests/<reference>` takes. */
export function checkTagOrDigest(reference: string): void {
  if (reference.includes(':')) {
    try {
      parseContentDigest(reference);
    } catch (err) {
      throw new InvalidReferenceError(reference, err instanceof DigestError ? err.message : String(err));
    }
  } else if (!TAG.test(reference)) {
    throw new InvalidReferenceError(reference, 'bad tag (letters, digits, _ . -; at most 128)');
  }
}

/** `/v2/<repository>`, after checking the name: references may be built by hand, and it goes into a URL. */
export function repositoryPath(repository: string): string {
  checkRepository(repository, repository);
  return `/v2/${repository}`;
}

/** The host[:port] that serves the registry API for this reference. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry;
}

export function isDockerHub(registry: string): boolean {
  return DOCKER_HUB_ALIASES.has(registry.toLowerCase());
}
