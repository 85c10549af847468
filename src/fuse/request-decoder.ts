/**
 * Decoding of kernel requests (`fuse_in_header` and the argument structs that follow it). Pure: no I/O.
 * The kernel is trusted, but every length is checked so that a bug here or there surfaces as a
 * FuseProtocolError (answered EIO), never as a read past the message.
 */
import { StructSize } from './abi.js';
import { FuseProtocolError } from './errors.js';
import type { InodeNumber } from './types.js';
import { readU64 } from './u64.js';

export interface InHeader {
  len: number;
  opcode: number;
  unique: number | bigint;
  nodeid: InodeNumber;
  uid: number;
  gid: number;
  pid: number;
}

export interface Request {
  header: InHeader;
  /** The operation's arguments: after the header, before any extension (total_extlen). */
  body: Buffer;
}

export function decodeRequest(message: Buffer): Request {
  if (message.length < StructSize.IN_HEADER) {
    throw new FuseProtocolError(`request of ${message.length} bytes is shorter than fuse_in_header`);
  }
  const len = message.readUInt32LE(0);
  if (len !== message.length) {
    throw new FuseProtocolError(`fuse_in_header.len ${len} but ${message.length} bytes were read`);
  }
  const extensionBytes = message.readUInt16LE(36) * 8;
  if (StructSize.IN_HEADER + extensionBytes > len) {
    throw new FuseProtocolError(`total_extlen ${extensionBytes} exceeds the request`);
  }
  const header: InHeader = {
    len,
    opcode: message.readUInt32LE(4),
    unique: readU64(message, 8),
    nodeid: readU64(message, 16),
    uid: message.readUInt32LE(24),
    gid: message.readUInt32LE(28),
    pid: message.readUInt32LE(32),
  };
  return { header, body: message.subarray(StructSize.IN_HEADER, len - extensionBytes) };
}

function requireLength(body: Buffer, size: number, what: string): void {
  if (body.length < size) {
    throw new FuseProtocolError(`${what}: ${body.length} bytes, expected at least ${size}`);
  }
}

/** A NUL-terminated name (LOOKUP, GETXATTR …); the terminator is required. */
export function decodeName(body: Buffer, what = 'name'): Buffer {
  const end = body.indexOf(0);
  if (end < 0) throw new FuseProtocolError(`${what} is not NUL-terminated`);
  return body.subarray(0, end);
}

export function decodeForget(body: Buffer): number | bigint {
  requireLength(body, StructSize.FORGET_IN, 'fuse_forget_in');
  return readU64(body, 0);
}

export interface ForgetOne {
  ino: InodeNumber;
  nlookup: number | bigint;
}

export function decodeBatchForget(body: Buffer): ForgetOne[] {
  requireLength(body, StructSize.BATCH_FORGET_IN, 'fuse_batch_forget_in');
  const count = body.readUInt32LE(0);
  requireLength(body, StructSize.BATCH_FORGET_IN + count * StructSize.FORGET_ONE, 'fuse_forget_one[]');
  const forgets: ForgetOne[] = [];
  for (let i = 0; i < count; i++) {
    const at = StructSize.BATCH_FORGET_IN + i * StructSize.FORGET_ONE;
    forgets.push({ ino: readU64(body, at), nlookup: readU64(body, at + 8) });
  }
  return forgets;
}

export interface GetattrIn {
  flags: number;
  fh: number | bigint;
}

export function decodeGetattr(body: Buffer): GetattrIn {
  requireLength(body, StructSize.GETATTR_IN, 'fuse_getattr_in');
  return { flags: body.readUInt32LE(0), fh: readU64(body, 8) };
}

/** `fuse_open_in.flags`: the open(2) flags (O_ACCMODE, O_TRUNC …). */
export function decodeOpen(body: Buffer): number {
  requireLength(body, StructSize.OPEN_IN, 'fuse_open_in');
  return body.readUInt32LE(0);
}

export interface ReadIn {
  fh: number | bigint;
  offset: number | bigint;
  size: number;
}

/** READ, READDIR and READDIRPLUS share `fuse_read_in`. */
export function decodeRead(body: Buffer): ReadIn {
  requireLength(body, StructSize.READ_IN, 'fuse_read_in');
  return { fh: readU64(body, 0), offset: readU64(body, 8), size: body.readUInt32LE(16) };
}

export function decodeRelease(body: Buffer): { fh: number | bigint } {
  requireLength(body, StructSize.RELEASE_IN, 'fuse_release_in');
  return { fh: readU64(body, 0) };
}

export interface GetxattrIn {
  /** Size of the caller's buffer; 0 asks for the value's size only. */
  size: number;
  name: Buffer;
}

export function decodeGetxattr(body: Buffer): GetxattrIn {
  requireLength(body, StructSize.GETXATTR_IN, 'fuse_getxattr_in');
  return {
    size: body.readUInt32LE(0),
    name: decodeName(body.subarray(StructSize.GETXATTR_IN), 'xattr name'),
  };
}

export function decodeListxattr(body: Buffer): { size: number } {
  requireLength(body, StructSize.GETXATTR_IN, 'fuse_getxattr_in');
  return { size: body.readUInt32LE(0) };
}

export function decodeAccess(body: Buffer): number {
  requireLength(body, StructSize.ACCESS_IN, 'fuse_access_in');
  return body.readUInt32LE(0);
}

/** The unique of the request being interrupted. */
export function decodeInterrupt(body: Buffer): number | bigint {
  requireLength(body, StructSize.INTERRUPT_IN, 'fuse_interrupt_in');
  return readU64(body, 0);
}

export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
}

export function decodeInit(body: Buffer): InitIn {
  requireLength(body, StructSize.INIT_IN_MIN, 'fuse_init_in');
  return {
    major: body.readUInt32LE(0),
    minor: body.readUInt32LE(4),
    maxReadahead: body.readUInt32LE(8),
    flags: body.readUInt32LE(12),
  };
}
