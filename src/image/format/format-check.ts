/** Small guards for the reader: every failed check becomes a `BootstrapFormatError`. */

import { BootstrapFormatError } from './errors.js';

export function fail(message: string): never {
  throw new BootstrapFormatError(message);
}

export function check(condition: boolean, message: () => string): asserts condition {
  if (!condition) fail(message());
}

/** Throws unless [offset, offset + length) lies inside a buffer of `total` bytes. */
export function checkRange(offset: number, length: number, total: number, what: () => string): void {
  const inside = Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0;
  check(
    inside && offset + length <= total,
    () => `${what()}: bytes ${offset}+${length} lie outside the ${total}-byte bootstrap`,
  );
}
