/**
 * Inline extended attributes (the "ibody" after an inode). Damselfly never writes shared xattrs.
 * ibody = 12-byte header (name filter u32 = 0, shared count u8 = 0, 7 reserved) + entries, each
 * `name_len u8, name_index u8, value_size u16, suffix, value`, padded to 4 bytes. `i_xattr_icount`
 * = 0 without xattrs, else (ibody size − 12) / 4 + 1.
 */

import { decodeStrictUtf8 } from './strict-utf8.js';

export const XATTR_IBODY_HEADER_SIZE = 12;
const ENTRY_HEADER_SIZE = 4;
const MAX_SUFFIX_LENGTH = 255;
const MAX_VALUE_SIZE = 0xffff;
const MAX_ICOUNT = 0xffff;
/** Shared by every inode without xattrs (never written to). */
const NO_XATTRS = Buffer.alloc(0);

/** EROFS name indexes; `exact` prefixes are whole names (ACLs), the others need a suffix. */
const PREFIXES: ReadonlyArray<{ index: number; prefix: string; exact: boolean }> = [
  { index: 1, prefix: 'user.', exact: false },
  { index: 2, prefix: 'system.posix_acl_access', exact: true },
  { index: 3, prefix: 'system.posix_acl_default', exact: true },
  { index: 4, prefix: 'trusted.', exact: false },
  { index: 6, prefix: 'security.', exact: false },
];

/** Why an xattr name or a set of xattrs cannot be encoded or decoded; the caller adds where. */
export class XattrError extends Error {}

interface XattrEntry {
  index: number;
  suffix: Buffer;
  value: Buffer;
}

function splitName(name: string): { index: number; suffix: string } {
  for (const { index, prefix, exact } of PREFIXES) {
    if (exact ? name === prefix : name.startsWith(prefix) && name.length > prefix.length) {
      return { index, suffix: name.slice(prefix.length) };
    }
  }
  throw new XattrError(
    `xattr name ${JSON.stringify(name)} has no supported prefix (user., trusted., security., system.posix_acl_access, system.posix_acl_default)`,
  );
}

/** The ibody for `xattrs` (empty Buffer when there are none), entries sorted by name bytes. */
export function encodeXattrIbody(xattrs: ReadonlyMap<string, Buffer>): Buffer {
  if (xattrs.size === 0) return NO_XATTRS;
  const entries = [...xattrs].map(([name, value]) => toEntry(name, value));
  entries.sort(compareEntries);
  const size = entries.reduce((sum, e) => sum + entrySize(e), XATTR_IBODY_HEADER_SIZE);
  if ((size - XATTR_IBODY_HEADER_SIZE) / 4 + 1 > MAX_ICOUNT) {
    throw new XattrError(`xattrs take ${size} bytes; an inode holds at most ${(MAX_ICOUNT - 1) * 4 + 12}`);
  }
  const body = Buffer.alloc(size);
  let at = XATTR_IBODY_HEADER_SIZE;
  for (const entry of entries) {
    body.writeUInt8(entry.suffix.length, at);
    body.writeUInt8(entry.index, at + 1);
    body.writeUInt16LE(entry.value.length, at + 2);
    entry.suffix.copy(body, at + ENTRY_HEADER_SIZE);
    entry.value.copy(body, at + ENTRY_HEADER_SIZE + entry.suffix.length);
    at += entrySize(entry);
  }
  return body;
}

function toEntry(name: string, value: Buffer): XattrEntry {
  if (!Buffer.isBuffer(value)) throw new XattrError(`xattr ${JSON.stringify(name)}: value is not a Buffer`);
  const { index, suffix } = splitName(name);
  const suffixBytes = Buffer.from(suffix, 'utf8');
  if (suffixBytes.toString('utf8') !== suffix || suffixBytes.includes(0)) {
    throw new XattrError(`xattr name ${JSON.stringify(name)} is not valid UTF-8 without NUL`);
  }
  if (suffixBytes.length > MAX_SUFFIX_LENGTH) {
    throw new XattrError(
      `xattr name ${JSON.stringify(name)} is longer than ${MAX_SUFFIX_LENGTH} bytes after its prefix`,
    );
  }
  if (value.length > MAX_VALUE_SIZE) {
    throw new XattrError(
      `xattr ${JSON.stringify(name)}: value of ${value.length} bytes exceeds ${MAX_VALUE_SIZE}`,
    );
  }
  return { index, suffix: suffixBytes, value };
}

function compareEntries(a: XattrEntry, b: XattrEntry): number {
  return a.index - b.index || Buffer.compare(a.suffix, b.suffix);
}

function entrySize(entry: XattrEntry): number {
  return alignTo4(ENTRY_HEADER_SIZE + entry.suffix.length + entry.value.length);
}

function alignTo4(n: number): number {
  return (n + 3) & ~3;
}

/** Bytes of the ibody an inode with this `i_xattr_icount` carries. */
export function ibodySize(icount: number): number {
  return icount === 0 ? 0 : XATTR_IBODY_HEADER_SIZE + 4 * (icount - 1);
}

export function icountOf(ibody: Buffer): number {
  return ibody.length === 0 ? 0 : (ibody.length - XATTR_IBODY_HEADER_SIZE) / 4 + 1;
}

/** Decodes an ibody written by `encodeXattrIbody`; throws `XattrError` on anything malformed. */
export function decodeXattrIbody(ibody: Buffer): Map<string, Buffer> {
  const xattrs = new Map<string, Buffer>();
  if (ibody.length === 0) return xattrs;
  if (ibody.length <= XATTR_IBODY_HEADER_SIZE) {
    throw new XattrError(`xattr ibody of ${ibody.length} bytes holds no entry`);
  }
  const sharedCount = ibody.readUInt8(4);
  if (sharedCount !== 0)
    throw new XattrError(`${sharedCount} shared xattrs (Damselfly writes inline xattrs only)`);
  let at = XATTR_IBODY_HEADER_SIZE;
  while (at < ibody.length) {
    if (at + ENTRY_HEADER_SIZE > ibody.length)
      throw new XattrError(`xattr entry at ibody byte ${at} is truncated`);
    const suffixLength = ibody.readUInt8(at);
    const index = ibody.readUInt8(at + 1);
    const valueSize = ibody.readUInt16LE(at + 2);
    const end = at + ENTRY_HEADER_SIZE + suffixLength + valueSize;
    if (end > ibody.length) throw new XattrError(`xattr entry at ibody byte ${at} runs past the ibody`);
    const suffix = ibody.subarray(at + ENTRY_HEADER_SIZE, at + ENTRY_HEADER_SIZE + suffixLength);
    const name = fullName(index, suffix, at);
    if (xattrs.has(name)) throw new XattrError(`xattr ${JSON.stringify(name)} appears twice`);
    xattrs.set(name, Buffer.from(ibody.subarray(end - valueSize, end)));
    at = alignTo4(end);
  }
  if (at !== ibody.length) throw new XattrError('xattr entries do not fill the ibody exactly');
  return xattrs;
}

function fullName(index: number, suffix: Buffer, at: number): string {
  const known = PREFIXES.find((p) => p.index === index);
  if (!known) throw new XattrError(`xattr entry at ibody byte ${at}: unsupported name index ${index}`);
  if (known.exact !== (suffix.length === 0)) {
    throw new XattrError(
      `xattr entry at ibody byte ${at}: name index ${index} with a ${suffix.length}-byte suffix`,
    );
  }
  if (suffix.includes(0)) throw new XattrError(`xattr entry at ibody byte ${at}: NUL in the name`);
  const text = decodeStrictUtf8(suffix);
  if (text === undefined) throw new XattrError(`xattr entry at ibody byte ${at}: name is not valid UTF-8`);
  return known.prefix + text;
}
