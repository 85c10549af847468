/**
 * Names, symlink targets and xattr names are UTF-8 strings in the model. Decoding is strict (a
 * malformed sequence would otherwise become U+FFFD and change the bytes on re-encoding) and keeps
 * a leading BOM (U+FEFF is a legal first character of a name; dropping it could merge two names).
 */

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The string for `bytes`, or undefined when they are not valid UTF-8. */
export function decodeStrictUtf8(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}
