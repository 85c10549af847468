/**
 * Encoding of replies to the kernel (`fuse_out_header` and the structs after it). Pure: no I/O.
 * Layouts follow `linux/fuse.h` 7.38; offsets are asserted in test/unit/fuse-protocol.test.ts.
 */
import { StructSize } from './abi.js';
import { FuseError } from './errors.js';
import type { Attr, Entry, InodeNumber, Statfs, Timespec } from './types.js';
import { writeI64, writeU64 } from './u64.js';

/** Cache lifetimes in seconds (fractions allowed), used where an entry does not set its own. */
export interface CacheTimeouts {
  entry: number;
  attr: number;
}

export function encodeOutHeader(totalLength: number, errno: number, unique: number | bigint): Buffer {
  const header = Buffer.alloc(StructSize.OUT_HEADER);
  header.writeUInt32LE(totalLength, 0);
  header.writeInt32LE(-errno, 4);
  writeU64(header, 8, unique);
  return header;
}

/** Splits seconds into the (u64 seconds, u32 nanoseconds) pairs of entry_valid / attr_valid. */
export function splitTimeout(seconds: number): { sec: number; nsec: number } {
  if (!(seconds > 0)) return { sec: 0, nsec: 0 };
  if (!Number.isFinite(seconds) || seconds >= Number.MAX_SAFE_INTEGER) {
    return { sec: Number.MAX_SAFE_INTEGER, nsec: 0 };
  }
  const sec = Math.floor(seconds);
  return { sec, nsec: Math.min(999_999_999, Math.round((seconds - sec) * 1e9)) };
}

const NO_TIME: Timespec = { sec: 0, nsec: 0 };

function sizeOf(attr: Attr): number | bigint {
  return attr.size ?? 0;
}

function defaultBlocks(size: number | bigint): number | bigint {
  return typeof size === 'bigint' ? (size + 511n) / 512n : Math.ceil(size / 512);
}

/** `struct fuse_attr` (88 bytes) at `offset`. */
export function writeAttr(buf: Buffer, offset: number, attr: Attr, nodeid: InodeNumber): void {
  const size = sizeOf(attr);
  const atime = attr.atime ?? NO_TIME;
  const mtime = attr.mtime ?? NO_TIME;
  const ctime = attr.ctime ?? NO_TIME;
  writeU64(buf, offset, attr.ino ?? nodeid);
  writeU64(buf, offset + 8, size);
  writeU64(buf, offset + 16, attr.blocks ?? defaultBlocks(size));
  writeI64(buf, offset + 24, atime.sec);
  writeI64(buf, offset + 32, mtime.sec);
  writeI64(buf, offset + 40, ctime.sec);
  buf.writeUInt32LE(atime.nsec, offset + 48);
  buf.writeUInt32LE(mtime.nsec, offset + 52);
  buf.writeUInt32LE(ctime.nsec, offset + 56);
  buf.writeUInt32LE(attr.mode, offset + 60);
  buf.writeUInt32LE(attr.nlink ?? 1, offset + 64);
  buf.writeUInt32LE(attr.uid ?? 0, offset + 68);
  buf.writeUInt32LE(attr.gid ?? 0, offset + 72);
  buf.writeUInt32LE(attr.rdev ?? 0, offset + 76);
  buf.writeUInt32LE(attr.blksize ?? 0, offset + 80);
  buf.writeUInt32LE(0, offset + 84); // flags: no submount, no DAX
}

/** `struct fuse_entry_out` (128 bytes) at `offset`. nodeid 0 with a timeout is a negative entry. */
export function writeEntryOut(buf: Buffer, offset: number, entry: Entry, timeouts: CacheTimeouts): void {
  const entryValid = splitTimeout(entry.entryTimeout ?? timeouts.entry);
  const attrValid = splitTimeout(entry.attrTimeout ?? timeouts.attr);
  writeU64(buf, offset, entry.ino);
  writeU64(buf, offset + 8, entry.generation ?? 0);
  writeU64(buf, offset + 16, entryValid.sec);
  writeU64(buf, offset + 24, attrValid.sec);
  buf.writeUInt32LE(entryValid.nsec, offset + 32);
  buf.writeUInt32LE(attrValid.nsec, offset + 36);
  writeAttr(buf, offset + 40, entry.attr, entry.ino);
}

export function encodeEntryOut(entry: Entry, timeouts: CacheTimeouts): Buffer {
  const buf = Buffer.alloc(StructSize.ENTRY_OUT);
  writeEntryOut(buf, 0, entry, timeouts);
  return buf;
}

/** A cached "no such name": a LOOKUP reply with node id 0, valid for `seconds`, all else zero. */
export function encodeNegativeEntryOut(seconds: number): Buffer {
  const buf = Buffer.alloc(StructSize.ENTRY_OUT);
  const valid = splitTimeout(seconds);
  writeU64(buf, 16, valid.sec);
  buf.writeUInt32LE(valid.nsec, 32);
  return buf;
}

export function encodeAttrOut(attr: Attr, nodeid: InodeNumber, attrTimeout: number): Buffer {
  const buf = Buffer.alloc(StructSize.ATTR_OUT);
  const valid = splitTimeout(attrTimeout);
  writeU64(buf, 0, valid.sec);
  buf.writeUInt32LE(valid.nsec, 8);
  writeAttr(buf, 16, attr, nodeid);
  return buf;
}

export function encodeOpenOut(fh: number, openFlags: number): Buffer {
  const buf = Buffer.alloc(StructSize.OPEN_OUT);
  writeU64(buf, 0, fh);
  buf.writeUInt32LE(openFlags, 8);
  return buf;
}

export function encodeStatfsOut(st: Statfs): Buffer {
  const buf = Buffer.alloc(StructSize.KSTATFS);
  const bsize = st.bsize ?? 4096;
  writeU64(buf, 0, st.blocks);
  writeU64(buf, 8, st.bfree ?? 0);
  writeU64(buf, 16, st.bavail ?? 0);
  writeU64(buf, 24, st.files);
  writeU64(buf, 32, st.ffree ?? 0);
  buf.writeUInt32LE(bsize, 40);
  buf.writeUInt32LE(st.namelen ?? 255, 44);
  buf.writeUInt32LE(st.frsize ?? bsize, 48);
  return buf;
}

export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
}

export function encodeInitOut(out: InitOut): Buffer {
  const buf = Buffer.alloc(StructSize.INIT_OUT);
  buf.writeUInt32LE(out.major, 0);
  buf.writeUInt32LE(out.minor, 4);
  buf.writeUInt32LE(out.maxReadahead, 8);
  buf.writeUInt32LE(out.flags >>> 0, 12);
  buf.writeUInt16LE(out.maxBackground, 16);
  buf.writeUInt16LE(out.congestionThreshold, 18);
  buf.writeUInt32LE(out.maxWrite, 20);
  buf.writeUInt32LE(out.timeGran, 24);
  buf.writeUInt16LE(out.maxPages, 28);
  // map_alignment (30), flags2 (32) and unused[7] stay 0: INIT_EXT is not negotiated.
  return buf;
}

/** `fuse_getxattr_out`: the answer to a size probe (GETXATTR/LISTXATTR with size 0). */
export function encodeXattrSize(size: number): Buffer {
  const buf = Buffer.alloc(StructSize.GETXATTR_OUT);
  buf.writeUInt32LE(size, 0);
  return buf;
}

/** LISTXATTR's value: every name followed by a NUL (empty names or names holding a NUL are left out). */
export function encodeXattrNames(names: ReadonlyArray<Buffer | string>): Buffer {
  const parts: Buffer[] = [];
  for (const name of names) {
    const bytes = Buffer.from(name);
    if (bytes.length === 0 || bytes.includes(0)) continue;
    parts.push(bytes, NUL);
  }
  return Buffer.concat(parts);
}

const NUL = Buffer.alloc(1);

/**
 * GETXATTR/LISTXATTR size-probe semantics: a request of size 0 gets the value's length, a buffer too
 * small gets ERANGE, otherwise the value itself.
 */
export function encodeXattrReply(value: Buffer, requestedSize: number): Buffer {
  if (requestedSize === 0) return encodeXattrSize(value.length);
  if (value.length > requestedSize) throw new FuseError('ERANGE');
  return value;
}
