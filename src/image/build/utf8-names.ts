/**
 * The image model holds names and symlink targets as strings, so they must be valid UTF-8:
 * anything else is refused (ENONUTF8NAME) with the offending bytes shown as \xNN.
 */
import { ImageBuildError } from './errors.js';

/** The bytes as a string, or null when they are not valid UTF-8 (decoding would not round-trip). */
export function utf8OrNull(raw: Buffer): string | null {
  const text = raw.toString('utf8');
  return Buffer.byteLength(text) === raw.length && Buffer.from(text).equals(raw) ? text : null;
}

export function utf8Name(raw: Buffer, dir: string): string {
  const name = utf8OrNull(raw);
  if (name === null) {
    throw new ImageBuildError(
      'ENONUTF8NAME',
      `${dir}/${escapeBytes(raw)}: the name is not valid UTF-8; image names must be UTF-8 (rename it)`,
    );
  }
  return name;
}

export function utf8Target(raw: Buffer, path: string): string {
  const target = utf8OrNull(raw);
  if (target === null) {
    throw new ImageBuildError(
      'ENONUTF8NAME',
      `${path}: the symlink target ${escapeBytes(raw)} is not valid UTF-8; image symlink targets must be UTF-8`,
    );
  }
  return target;
}

/** Printable ASCII as is, everything else as \xNN. */
export function escapeBytes(raw: Buffer): string {
  let out = '';
  for (const b of raw)
    out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return out;
}
