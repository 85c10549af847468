import { LayerFormatError } from './errors.js';
import { MAX_NAME_BYTES, MAX_PATH_BYTES } from './limits.js';

/**
 * Entry paths from the archive, made safe: `./a//b/` → ["a", "b"]; the root is []. Absolute paths
 * and `..` components are refused rather than re-rooted (containerd re-roots them; a layer that needs
 * that is malformed, and refusing leaves nothing to get wrong).
 */
export function normalizeEntryPath(raw: string, what: string): string[] {
  if (raw.startsWith('/')) {
    throw new LayerFormatError('EPATH', `layer ${what} "${shown(raw)}" is an absolute path`);
  }
  const components = raw.split('/').filter((part) => part !== '' && part !== '.');
  for (const component of components) {
    if (component === '..') {
      throw new LayerFormatError('EPATH', `layer ${what} "${shown(raw)}" has a ".." component`);
    }
    if (Buffer.byteLength(component) > MAX_NAME_BYTES) {
      throw new LayerFormatError(
        'ENAME_TOO_LONG',
        `layer ${what} "${shown(raw)}" has a component longer than ${MAX_NAME_BYTES} bytes`,
      );
    }
  }
  if (Buffer.byteLength(components.join('/')) > MAX_PATH_BYTES) {
    throw new LayerFormatError(
      'ENAME_TOO_LONG',
      `layer ${what} "${shown(raw)}" is longer than ${MAX_PATH_BYTES} bytes`,
    );
  }
  return components;
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

export type WhiteoutMarker = { kind: 'opaque' } | { kind: 'whiteout'; name: string };

/**
 * `.wh..wh..opq` hides the lower children of its directory; `.wh.NAME` hides lower NAME. Any entry
 * type counts (containerd decides by name alone). Markers naming nothing or the directory itself
 * (`.wh.`, `.wh..`, `.wh...`) are refused, as containerd refuses them.
 */
export function whiteoutMarkerOf(name: string, rawPath: string): WhiteoutMarker | null {
  if (name === OPAQUE_MARKER) return { kind: 'opaque' };
  if (!name.startsWith(WHITEOUT_PREFIX)) return null;
  const target = name.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') {
    throw new LayerFormatError('EWHITEOUT', `layer whiteout "${shown(rawPath)}" names no entry`);
  }
  return { kind: 'whiteout', name: target };
}

/** A whiteout marker is never a directory that holds entries. */
export function checkNoWhiteoutParent(parent: string[], rawPath: string): void {
  if (parent.some((component) => component.startsWith(WHITEOUT_PREFIX))) {
    throw new LayerFormatError('EWHITEOUT', `layer entry "${shown(rawPath)}" lies below a whiteout name`);
  }
}

/** Paths in messages: bounded, since a PAX path may be a megabyte long. */
export function shown(path: string): string {
  return path.length > 200 ? `${path.slice(0, 200)}…` : path;
}
