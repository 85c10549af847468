import { LayerFormatError } from './errors.js';

/**
 * Decoding of one 512-byte tar header block, field for field as Go's archive/tar reads it (what
 * containerd unpacks with): V7, USTAR (incl. the star variant) and GNU layouts, octal or base-256
 * numbers, the unsigned-or-signed checksum. Names stay raw bytes here; UTF-8 decoding happens once
 * PAX and GNU long names have been applied.
 */

export const TAR_BLOCK_SIZE = 512;

export type TarFormat = 'v7' | 'ustar' | 'star' | 'gnu';

export interface TarHeaderBlock {
  /** The raw typeflag byte (`0x30` for '0', `0` for the old NUL regular-file flag). */
  typeflag: number;
  name: Buffer;
  linkname: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  devMajor: number;
  devMinor: number;
  format: TarFormat;
}

export function isZeroBlock(block: Buffer): boolean {
  for (const byte of block) if (byte !== 0) return false;
  return true;
}

export function decodeHeaderBlock(block: Buffer, offset: number): TarHeaderBlock {
  const fail = (what: string) =>
    new LayerFormatError('EHEADER', `layer tar: invalid header at byte ${offset}: ${what}`);
  if (!checksumMatches(block)) {
    throw fail('checksum mismatch (corrupt tar, or a compressed blob read as plain tar)');
  }
  const format = formatOf(block);
  const number = (start: number, length: number, field: string) => {
    const value = parseNumeric(block.subarray(start, start + length));
    if (value === null) throw fail(`bad ${field} field`);
    return value;
  };
  const header: TarHeaderBlock = {
    typeflag: block[156]!,
    name: cString(block, 0, 100),
    linkname: cString(block, 157, 100),
    mode: number(100, 8, 'mode'),
    uid: number(108, 8, 'uid'),
    gid: number(116, 8, 'gid'),
    size: number(124, 12, 'size'),
    mtime: number(136, 12, 'mtime'),
    devMajor: 0,
    devMinor: 0,
    format,
  };
  if (format !== 'v7') {
    header.devMajor = number(329, 8, 'devmajor');
    header.devMinor = number(337, 8, 'devminor');
  }
  const prefix = prefixOf(block, format);
  if (prefix.length > 0) header.name = Buffer.concat([prefix, Buffer.from('/'), header.name]);
  if (header.size < 0) throw fail('negative size');
  return header;
}

function formatOf(block: Buffer): TarFormat {
  const magic = block.toString('latin1', 257, 263);
  const version = block.toString('latin1', 263, 265);
  if (magic === 'ustar\0') return block.toString('latin1', 508, 512) === 'tar\0' ? 'star' : 'ustar';
  if (magic === 'ustar ' && version === ' \0') return 'gnu';
  return 'v7';
}

/** GNU headers keep atime/ctime where USTAR keeps the name prefix, so only USTAR and star have one. */
function prefixOf(block: Buffer, format: TarFormat): Buffer {
  if (format === 'ustar') return cString(block, 345, 155);
  if (format === 'star') return cString(block, 345, 131);
  return Buffer.alloc(0);
}

/** Sum of the header bytes with the checksum field read as spaces; old tars summed signed bytes. */
function checksumMatches(block: Buffer): boolean {
  const recorded = parseOctal(block.subarray(148, 156));
  if (recorded === null) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK_SIZE; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += byte;
    signed += byte >= 0x80 ? byte - 0x100 : byte;
  }
  return recorded === unsigned || recorded === signed;
}

/** A NUL-terminated field. */
export function cString(block: Buffer, start: number, length: number): Buffer {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return end === -1 ? field : field.subarray(0, end);
}

/** Octal, or GNU base-256 (two's complement, big-endian) when the top bit of the first byte is set. */
export function parseNumeric(field: Buffer): number | null {
  if (field.length > 0 && (field[0]! & 0x80) !== 0) return parseBase256(field);
  return parseOctal(field);
}

function parseBase256(field: Buffer): number | null {
  const negative = (field[0]! & 0x40) !== 0;
  let value = 0n;
  for (let i = 0; i < field.length; i++) {
    let byte = negative ? field[i]! ^ 0xff : field[i]!;
    if (i === 0) byte &= 0x7f;
    value = (value << 8n) | BigInt(byte);
  }
  if (negative) value = -value - 1n;
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) return null;
  return Number(value);
}

/** Fields are padded with spaces or NULs on either side; an empty field is 0. */
function parseOctal(field: Buffer): number | null {
  let start = 0;
  let end = field.length;
  while (start < end && (field[start] === 0x20 || field[start] === 0)) start++;
  while (end > start && (field[end - 1] === 0x20 || field[end - 1] === 0)) end--;
  const text = cString(field.subarray(start, end), 0, end - start).toString('latin1');
  if (text.length === 0) return 0;
  if (!/^[0-7]+$/.test(text)) return null;
  const value = Number.parseInt(text, 8);
  return Number.isSafeInteger(value) ? value : null;
}
