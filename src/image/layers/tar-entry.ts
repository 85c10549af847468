import { LayerFormatError } from './errors.js';
import { MAX_XATTR_NAME_BYTES, MAX_XATTR_VALUE_BYTES } from './limits.js';
import type { PaxRecords } from './pax-records.js';
import type { TarHeaderBlock } from './tar-header.js';

/**
 * One logical tar entry: a header block with the PAX records and GNU long names that preceded it
 * applied, in the precedence Go's archive/tar uses (header < PAX < GNU long name).
 */

export type TarEntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo' | 'unknown';

export interface TarEntry {
  type: TarEntryType;
  /** The typeflag as shown in messages and skip counters: `0`, `S`, `0x00`. */
  typeflag: string;
  /** As written in the archive (not normalized yet). */
  path: string;
  linkPath: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Bytes of data following the header; 0 for header-only types whatever the size field says. */
  dataSize: number;
  devMajor: number;
  devMinor: number;
  xattrs: Map<string, Buffer>;
  /** Archive offset of the entry's header block. */
  offset: number;
}

/** What the meta entries (`x`, `L`, `K`) before an entry said about it. */
export interface PendingExtensions {
  pax: PaxRecords | null;
  longName: Buffer | null;
  longLinkName: Buffer | null;
}

const TYPES: Record<number, TarEntryType> = {
  0: 'file',
  48: 'file',
  55: 'file', // contiguous file: a regular file everywhere that matters
  49: 'link',
  50: 'symlink',
  51: 'char',
  52: 'block',
  53: 'directory',
  54: 'fifo',
};
const GNU_SPARSE = 0x53; // 'S'
const MAX_ID = 0xffff_ffff;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function buildTarEntry(
  block: TarHeaderBlock,
  extensions: PendingExtensions,
  offset: number,
): TarEntry {
  const fail = (code: 'EHEADER' | 'EATTRIBUTE' | 'ELIMIT' | 'EUNSUPPORTED_ENTRY', what: string) =>
    new LayerFormatError(code, `layer tar: entry at byte ${offset}: ${what}`);
  if (block.typeflag === GNU_SPARSE) throw fail('EUNSUPPORTED_ENTRY', 'GNU sparse files are not supported');
  let name = block.name;
  let linkName = block.linkname;
  const entry: TarEntry = {
    type: TYPES[block.typeflag] ?? 'unknown',
    typeflag: printableTypeflag(block.typeflag),
    path: '',
    linkPath: '',
    mode: block.mode & 0o7777,
    uid: block.uid,
    gid: block.gid,
    mtimeSec: block.mtime,
    mtimeNsec: 0,
    dataSize: block.size,
    devMajor: block.devMajor,
    devMinor: block.devMinor,
    xattrs: new Map(),
    offset,
  };
  if (extensions.pax) {
    const paths = applyPax(entry, extensions.pax, fail);
    name = paths.name ?? name;
    linkName = paths.linkName ?? linkName;
  }
  name = extensions.longName ?? name;
  linkName = extensions.longLinkName ?? linkName;
  entry.path = decodeName(name, () => fail('EHEADER', 'entry name is not valid UTF-8'));
  entry.linkPath = decodeName(linkName, () =>
    fail('EHEADER', `link target of "${entry.path}" is not valid UTF-8`),
  );
  if (block.typeflag === 0 && entry.path.endsWith('/')) entry.type = 'directory'; // pre-POSIX directories
  if (entry.type !== 'file' && entry.type !== 'unknown') entry.dataSize = 0; // header-only types, as Go reads them
  checkRanges(entry, fail);
  return entry;
}

type Fail = (code: 'EHEADER' | 'EATTRIBUTE' | 'ELIMIT' | 'EUNSUPPORTED_ENTRY', what: string) => Error;

/** Applies the records that describe the entry; returns PAX path/linkpath (still bytes). */
function applyPax(entry: TarEntry, pax: PaxRecords, fail: Fail): { name?: Buffer; linkName?: Buffer } {
  const paths: { name?: Buffer; linkName?: Buffer } = {};
  const libarchiveXattrs = new Map<string, Buffer>();
  for (const [key, value] of pax) {
    if (key.startsWith('SCHILY.xattr.')) {
      entry.xattrs.set(key.slice('SCHILY.xattr.'.length), value);
      continue;
    }
    if (key.startsWith('LIBARCHIVE.xattr.')) {
      const [xattrName, xattrValue] = decodeLibarchiveXattr(key, value, fail);
      libarchiveXattrs.set(xattrName, xattrValue);
      continue;
    }
    if (key.startsWith('GNU.sparse.')) throw fail('EUNSUPPORTED_ENTRY', 'GNU sparse files are not supported');
    if (value.length === 0) continue; // an empty record keeps the header's value (Go does the same)
    const text = value.toString('latin1');
    if (key === 'path') paths.name = value;
    else if (key === 'linkpath') paths.linkName = value;
    else if (key === 'size') entry.dataSize = paxInteger(text, key, fail);
    else if (key === 'uid') entry.uid = paxInteger(text, key, fail);
    else if (key === 'gid') entry.gid = paxInteger(text, key, fail);
    else if (key === 'mtime') [entry.mtimeSec, entry.mtimeNsec] = paxTime(text, fail);
  }
  // libarchive writes both forms for one attribute; SCHILY is what containerd reads, so it wins.
  for (const [xattrName, xattrValue] of libarchiveXattrs) {
    if (!entry.xattrs.has(xattrName)) entry.xattrs.set(xattrName, xattrValue);
  }
  return paths;
}

function paxInteger(text: string, key: string, fail: Fail): number {
  const value = /^[0-9]{1,16}$/.test(text) ? Number.parseInt(text, 10) : Number.NaN;
  if (!Number.isSafeInteger(value))
    throw fail('EHEADER', `bad PAX ${key} ${JSON.stringify(text.slice(0, 40))}`);
  return value;
}

/** `"1234.5678"` → [1234, 567800000]; negative times keep nsec in [0, 1e9) like time.Unix does. */
function paxTime(text: string, fail: Fail): [number, number] {
  const match = /^(-?)([0-9]{1,16})(?:\.([0-9]*))?$/.exec(text);
  if (!match) throw fail('EHEADER', `bad PAX mtime ${JSON.stringify(text.slice(0, 40))}`);
  const seconds = Number.parseInt(match[2]!, 10);
  const nanos = Number.parseInt((match[3] ?? '').slice(0, 9).padEnd(9, '0'), 10);
  if (match[1] !== '-') return [seconds, nanos];
  return nanos === 0 ? [-seconds, 0] : [-seconds - 1, 1e9 - nanos];
}

/** `LIBARCHIVE.xattr.<percent-encoded name>=<base64 value>`. */
function decodeLibarchiveXattr(key: string, value: Buffer, fail: Fail): [string, Buffer] {
  const encoded = key.slice('LIBARCHIVE.xattr.'.length);
  const base64 = value.toString('latin1');
  let name: string;
  try {
    name = decodeURIComponent(encoded);
  } catch {
    throw fail('EHEADER', `bad LIBARCHIVE.xattr name ${JSON.stringify(encoded.slice(0, 80))}`);
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) throw fail('EHEADER', `bad base64 value for xattr ${name}`);
  return [name, Buffer.from(base64, 'base64')];
}

function decodeName(bytes: Buffer, fail: () => Error): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw fail();
  }
}

function checkRanges(entry: TarEntry, fail: Fail): void {
  const where = `"${entry.path}"`;
  if (entry.uid < 0 || entry.uid > MAX_ID || entry.gid < 0 || entry.gid > MAX_ID) {
    throw fail('EATTRIBUTE', `${where}: uid/gid ${entry.uid}/${entry.gid} out of range`);
  }
  const isDevice = entry.type === 'char' || entry.type === 'block';
  if (isDevice && !(inRange(entry.devMajor) && inRange(entry.devMinor))) {
    throw fail('EATTRIBUTE', `${where}: device number ${entry.devMajor}:${entry.devMinor} out of range`);
  }
  for (const [name, value] of entry.xattrs) {
    if (name.length === 0) throw fail('EHEADER', `${where}: empty xattr name`);
    if (Buffer.byteLength(name) > MAX_XATTR_NAME_BYTES || value.length > MAX_XATTR_VALUE_BYTES) {
      throw fail('ELIMIT', `${where}: xattr ${name.slice(0, 80)} exceeds Linux limits`);
    }
  }
}

function inRange(id: number): boolean {
  return id >= 0 && id <= MAX_ID;
}

function printableTypeflag(byte: number): string {
  return byte > 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `0x${byte.toString(16).padStart(2, '0')}`;
}
