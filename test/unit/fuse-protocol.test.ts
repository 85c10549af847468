/**
 * The FUSE wire format of src/fuse against the kernel ABI: struct layouts are written out below as
 * in `linux/fuse.h` (and checked against the header itself when it is installed), then every encoder
 * and decoder is compared byte for byte with buffers built from those layouts.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { InitFlag, Opcode, StructSize } from '../../src/fuse/abi.js';
import { DirentPacker, direntSize, isValidDirentName } from '../../src/fuse/dirent-packer.js';
import { FuseError, FuseProtocolError } from '../../src/fuse/errors.js';
import { negotiateInit, WANTED_INIT_FLAGS } from '../../src/fuse/init-negotiation.js';
import { connectionId, mountOptions, parseMountinfo } from '../../src/fuse/kernel-mount.js';
import {
  encodeAttrOut,
  encodeEntryOut,
  encodeInitOut,
  encodeNegativeEntryOut,
  encodeOpenOut,
  encodeOutHeader,
  encodeStatfsOut,
  encodeXattrNames,
  encodeXattrReply,
  splitTimeout,
} from '../../src/fuse/reply-encoder.js';
import {
  decodeBatchForget,
  decodeGetattr,
  decodeGetxattr,
  decodeInit,
  decodeInterrupt,
  decodeName,
  decodeOpen,
  decodeRead,
  decodeRelease,
  decodeRequest,
} from '../../src/fuse/request-decoder.js';
import type { Attr } from '../../src/fuse/types.js';
import { normalizeU64, readU64 } from '../../src/fuse/u64.js';

// ---- Layouts, field by field, as declared in linux/fuse.h (7.38) ----

type FieldType = 'u64' | 'u32' | 'u16' | 'i32' | `struct ${string}` | `u32[${number}]`;
type Layout = ReadonlyArray<readonly [string, FieldType]>;

const LAYOUTS: Record<string, Layout> = {
  fuse_attr: [
    ['ino', 'u64'],
    ['size', 'u64'],
    ['blocks', 'u64'],
    ['atime', 'u64'],
    ['mtime', 'u64'],
    ['ctime', 'u64'],
    ['atimensec', 'u32'],
    ['mtimensec', 'u32'],
    ['ctimensec', 'u32'],
    ['mode', 'u32'],
    ['nlink', 'u32'],
    ['uid', 'u32'],
    ['gid', 'u32'],
    ['rdev', 'u32'],
    ['blksize', 'u32'],
    ['flags', 'u32'],
  ],
  fuse_entry_out: [
    ['nodeid', 'u64'],
    ['generation', 'u64'],
    ['entry_valid', 'u64'],
    ['attr_valid', 'u64'],
    ['entry_valid_nsec', 'u32'],
    ['attr_valid_nsec', 'u32'],
    ['attr', 'struct fuse_attr'],
  ],
  fuse_attr_out: [
    ['attr_valid', 'u64'],
    ['attr_valid_nsec', 'u32'],
    ['dummy', 'u32'],
    ['attr', 'struct fuse_attr'],
  ],
  fuse_open_out: [
    ['fh', 'u64'],
    ['open_flags', 'u32'],
    ['padding', 'u32'],
  ],
  fuse_kstatfs: [
    ['blocks', 'u64'],
    ['bfree', 'u64'],
    ['bavail', 'u64'],
    ['files', 'u64'],
    ['ffree', 'u64'],
    ['bsize', 'u32'],
    ['namelen', 'u32'],
    ['frsize', 'u32'],
    ['padding', 'u32'],
    ['spare', 'u32[6]'],
  ],
  fuse_init_in: [
    ['major', 'u32'],
    ['minor', 'u32'],
    ['max_readahead', 'u32'],
    ['flags', 'u32'],
    ['flags2', 'u32'],
    ['unused', 'u32[11]'],
  ],
  fuse_init_out: [
    ['major', 'u32'],
    ['minor', 'u32'],
    ['max_readahead', 'u32'],
    ['flags', 'u32'],
    ['max_background', 'u16'],
    ['congestion_threshold', 'u16'],
    ['max_write', 'u32'],
    ['time_gran', 'u32'],
    ['max_pages', 'u16'],
    ['map_alignment', 'u16'],
    ['flags2', 'u32'],
    ['unused', 'u32[7]'],
  ],
  fuse_in_header: [
    ['len', 'u32'],
    ['opcode', 'u32'],
    ['unique', 'u64'],
    ['nodeid', 'u64'],
    ['uid', 'u32'],
    ['gid', 'u32'],
    ['pid', 'u32'],
    ['total_extlen', 'u16'],
    ['padding', 'u16'],
  ],
  fuse_out_header: [
    ['len', 'u32'],
    ['error', 'i32'],
    ['unique', 'u64'],
  ],
  fuse_read_in: [
    ['fh', 'u64'],
    ['offset', 'u64'],
    ['size', 'u32'],
    ['read_flags', 'u32'],
    ['lock_owner', 'u64'],
    ['flags', 'u32'],
    ['padding', 'u32'],
  ],
  fuse_getattr_in: [
    ['getattr_flags', 'u32'],
    ['dummy', 'u32'],
    ['fh', 'u64'],
  ],
  fuse_open_in: [
    ['flags', 'u32'],
    ['open_flags', 'u32'],
  ],
  fuse_release_in: [
    ['fh', 'u64'],
    ['flags', 'u32'],
    ['release_flags', 'u32'],
    ['lock_owner', 'u64'],
  ],
  fuse_getxattr_in: [
    ['size', 'u32'],
    ['padding', 'u32'],
  ],
  fuse_getxattr_out: [
    ['size', 'u32'],
    ['padding', 'u32'],
  ],
  fuse_batch_forget_in: [
    ['count', 'u32'],
    ['dummy', 'u32'],
  ],
  fuse_forget_one: [
    ['nodeid', 'u64'],
    ['nlookup', 'u64'],
  ],
  fuse_interrupt_in: [['unique', 'u64']],
  fuse_dirent: [
    ['ino', 'u64'],
    ['off', 'u64'],
    ['namelen', 'u32'],
    ['type', 'u32'],
  ],
};

function fieldSize(type: FieldType): number {
  if (type.startsWith('struct ')) return layoutSize(type.slice('struct '.length));
  const array = /^u32\[(\d+)\]$/.exec(type);
  if (array) return 4 * Number(array[1]);
  return { u64: 8, u32: 4, u16: 2, i32: 4 }[type as 'u64']!;
}

function layoutSize(struct: string): number {
  return LAYOUTS[struct]!.reduce((sum, [, type]) => sum + fieldSize(type), 0);
}

function offsetOf(struct: string, field: string): number {
  let offset = 0;
  for (const [name, type] of LAYOUTS[struct]!) {
    if (name === field) return offset;
    offset += fieldSize(type);
  }
  throw new Error(`${struct}.${field}?`);
}

interface Values {
  [field: string]: number | bigint | Values;
}

/** Builds a struct from its layout; absent fields are zero. */
function pack(struct: string, values: Values): Buffer {
  const buf = Buffer.alloc(layoutSize(struct));
  for (const [name, type] of LAYOUTS[struct]!) {
    const value = values[name];
    if (value === undefined) continue;
    const at = offsetOf(struct, name);
    if (type.startsWith('struct ')) pack(type.slice(7), value as Values).copy(buf, at);
    else if (type === 'u64') buf.writeBigUInt64LE(BigInt(value as number), at);
    else if (type === 'u32') buf.writeUInt32LE(Number(value), at);
    else if (type === 'u16') buf.writeUInt16LE(Number(value), at);
    else if (type === 'i32') buf.writeInt32LE(Number(value), at);
  }
  return buf;
}

/** `struct name { … };` bodies of linux/fuse.h, reduced to (field, type) pairs. */
function parseHeaderStructs(text: string): Map<string, Layout> {
  const structs = new Map<string, Layout>();
  const types: Record<string, FieldType> = {
    uint64_t: 'u64',
    uint32_t: 'u32',
    uint16_t: 'u16',
    int32_t: 'i32',
  };
  for (const match of text.matchAll(/struct (\w+) \{([^}]*)\};/g)) {
    const fields: Array<[string, FieldType]> = [];
    for (const line of match[2]!.split(';')) {
      const decl = /^\s*(?:struct (\w+)|(\w+))\s+(\w+)(?:\[(\d+)\])?\s*$/.exec(
        line.replace(/\/\*[\s\S]*?\*\//g, ''),
      );
      if (!decl) continue;
      const [, nested, scalar, name, count] = decl;
      const type: FieldType = nested ? `struct ${nested}` : count ? `u32[${Number(count)}]` : types[scalar!]!;
      fields.push([name!, type]);
    }
    structs.set(match[1]!, fields);
  }
  return structs;
}

const HEADER = '/usr/include/linux/fuse.h';

describe('fuse ABI layouts', () => {
  it('match /usr/include/linux/fuse.h', {
    skip: !existsSync(HEADER) && 'linux-libc-dev not installed',
  }, () => {
    const header = parseHeaderStructs(readFileSync(HEADER, 'utf8'));
    for (const [name, layout] of Object.entries(LAYOUTS)) {
      assert.deepEqual(header.get(name), layout, `struct ${name}`);
    }
  });

  it('struct sizes used by the encoders', () => {
    assert.equal(StructSize.IN_HEADER, layoutSize('fuse_in_header'));
    assert.equal(StructSize.OUT_HEADER, layoutSize('fuse_out_header'));
    assert.equal(StructSize.ATTR, layoutSize('fuse_attr'));
    assert.equal(StructSize.ENTRY_OUT, layoutSize('fuse_entry_out'));
    assert.equal(StructSize.ATTR_OUT, layoutSize('fuse_attr_out'));
    assert.equal(StructSize.OPEN_OUT, layoutSize('fuse_open_out'));
    assert.equal(StructSize.KSTATFS, layoutSize('fuse_kstatfs'));
    assert.equal(StructSize.INIT_IN, layoutSize('fuse_init_in'));
    assert.equal(StructSize.INIT_OUT, layoutSize('fuse_init_out'));
    assert.equal(StructSize.READ_IN, layoutSize('fuse_read_in'));
    assert.equal(StructSize.GETATTR_IN, layoutSize('fuse_getattr_in'));
    assert.equal(StructSize.RELEASE_IN, layoutSize('fuse_release_in'));
    assert.equal(StructSize.FORGET_ONE, layoutSize('fuse_forget_one'));
    assert.equal(StructSize.DIRENT_HEADER, layoutSize('fuse_dirent'));
    assert.equal(StructSize.DIRENTPLUS_HEADER, layoutSize('fuse_entry_out') + layoutSize('fuse_dirent'));
  });
});

// ---- Requests ----

function request(opcode: number, body: Buffer, header: Values = {}): Buffer {
  const head = pack('fuse_in_header', {
    len: StructSize.IN_HEADER + body.length,
    opcode,
    unique: 42,
    nodeid: 7,
    uid: 1000,
    gid: 100,
    pid: 4321,
    ...header,
  });
  return Buffer.concat([head, body]);
}

describe('fuse request decoding', () => {
  it('reads fuse_in_header and hands over the body', () => {
    const message = request(Opcode.LOOKUP, Buffer.from('name\0'));
    const { header, body } = decodeRequest(message);
    assert.deepEqual(header, { len: 45, opcode: 1, unique: 42, nodeid: 7, uid: 1000, gid: 100, pid: 4321 });
    assert.deepEqual(decodeName(body), Buffer.from('name'));
  });

  it('leaves extensions (total_extlen, 8-byte units) out of the body', () => {
    const message = request(Opcode.LOOKUP, Buffer.concat([Buffer.from('n\0'), Buffer.alloc(8, 0xee)]), {
      total_extlen: 1,
    });
    assert.deepEqual(decodeRequest(message).body, Buffer.from('n\0'));
  });

  it('rejects a length that disagrees with what was read, or a short header', () => {
    const message = request(Opcode.GETATTR, Buffer.alloc(16));
    assert.throws(() => decodeRequest(message.subarray(0, 50)), FuseProtocolError);
    assert.throws(() => decodeRequest(Buffer.alloc(39)), FuseProtocolError);
    const lying = Buffer.from(message);
    lying.writeUInt16LE(10, offsetOf('fuse_in_header', 'total_extlen'));
    assert.throws(() => decodeRequest(lying), FuseProtocolError);
  });

  it('u64 ids are numbers up to 2^53 - 1 and bigints beyond', () => {
    const buf = Buffer.alloc(24);
    buf.writeBigUInt64LE(2n ** 53n - 1n, 0);
    buf.writeBigUInt64LE(2n ** 53n, 8);
    buf.writeBigUInt64LE(2n ** 64n - 1n, 16);
    assert.equal(readU64(buf, 0), Number.MAX_SAFE_INTEGER);
    assert.equal(readU64(buf, 8), 2n ** 53n);
    assert.equal(readU64(buf, 16), 2n ** 64n - 1n);
    assert.equal(normalizeU64(5n), 5);
    assert.equal(normalizeU64(2n ** 60n), 2n ** 60n);
  });

  it('decodes the argument structs', () => {
    assert.deepEqual(
      decodeRead(pack('fuse_read_in', { fh: 3, offset: 2 ** 40 + 5, size: 131072, flags: 0o100000 })),
      { fh: 3, offset: 2 ** 40 + 5, size: 131072 },
    );
    assert.deepEqual(decodeGetattr(pack('fuse_getattr_in', { getattr_flags: 1, fh: 9 })), {
      flags: 1,
      fh: 9,
    });
    assert.equal(decodeOpen(pack('fuse_open_in', { flags: 0o100000 })), 0o100000);
    assert.deepEqual(decodeRelease(pack('fuse_release_in', { fh: 11, flags: 2 })), { fh: 11 });
    assert.equal(decodeInterrupt(pack('fuse_interrupt_in', { unique: 2 ** 33 })), 2 ** 33);
    const getxattr = Buffer.concat([pack('fuse_getxattr_in', { size: 0 }), Buffer.from('user.x\0')]);
    assert.deepEqual(decodeGetxattr(getxattr), { size: 0, name: Buffer.from('user.x') });
    const init = pack('fuse_init_in', { major: 7, minor: 45, max_readahead: 131072, flags: 0x73fffffb });
    assert.deepEqual(decodeInit(init), { major: 7, minor: 45, maxReadahead: 131072, flags: 0x73fffffb });
    // Old kernels send only the first four fields.
    assert.equal(decodeInit(init.subarray(0, 16)).minor, 45);
  });

  it('decodes BATCH_FORGET and refuses a count beyond the body', () => {
    const body = Buffer.concat([
      pack('fuse_batch_forget_in', { count: 2 }),
      pack('fuse_forget_one', { nodeid: 5, nlookup: 3 }),
      pack('fuse_forget_one', { nodeid: 2n ** 63n, nlookup: 1 }),
    ]);
    assert.deepEqual(decodeBatchForget(body), [
      { ino: 5, nlookup: 3 },
      { ino: 2n ** 63n, nlookup: 1 },
    ]);
    body.writeUInt32LE(3, 0);
    assert.throws(() => decodeBatchForget(body), FuseProtocolError);
  });

  it('refuses short argument structs and unterminated names', () => {
    assert.throws(() => decodeRead(Buffer.alloc(39)), FuseProtocolError);
    assert.throws(() => decodeGetattr(Buffer.alloc(8)), FuseProtocolError);
    assert.throws(() => decodeInit(Buffer.alloc(12)), FuseProtocolError);
    assert.throws(() => decodeName(Buffer.from('no-terminator')), FuseProtocolError);
    assert.throws(
      () => decodeGetxattr(Buffer.concat([Buffer.alloc(8), Buffer.from('x')])),
      FuseProtocolError,
    );
  });
});

// ---- Replies ----

const ATTR: Attr = {
  ino: 99,
  mode: 0o100644,
  size: 5000,
  nlink: 2,
  uid: 1000,
  gid: 1001,
  rdev: 0,
  blksize: 4096,
  atime: { sec: 1, nsec: 2 },
  mtime: { sec: 1_700_000_000, nsec: 999_999_999 },
  ctime: { sec: -10, nsec: 5 },
};

const ATTR_VALUES: Values = {
  ino: 99,
  size: 5000,
  blocks: 10,
  atime: 1,
  mtime: 1_700_000_000,
  ctime: BigInt.asUintN(64, -10n),
  atimensec: 2,
  mtimensec: 999_999_999,
  ctimensec: 5,
  mode: 0o100644,
  nlink: 2,
  uid: 1000,
  gid: 1001,
  blksize: 4096,
};

describe('fuse reply encoding', () => {
  it('fuse_out_header carries the negative errno', () => {
    assert.deepEqual(encodeOutHeader(16, 2, 77), pack('fuse_out_header', { len: 16, error: -2, unique: 77 }));
    assert.deepEqual(
      encodeOutHeader(120, 0, 2n ** 62n),
      pack('fuse_out_header', { len: 120, unique: 2n ** 62n }),
    );
  });

  it('fuse_entry_out with timeouts split into seconds and nanoseconds', () => {
    const encoded = encodeEntryOut(
      { ino: 12, generation: 3, attr: ATTR, entryTimeout: 1.25 },
      { entry: 60, attr: 30.5 },
    );
    const expected = pack('fuse_entry_out', {
      nodeid: 12,
      generation: 3,
      entry_valid: 1,
      entry_valid_nsec: 250_000_000,
      attr_valid: 30,
      attr_valid_nsec: 500_000_000,
      attr: ATTR_VALUES,
    });
    assert.deepEqual(encoded, expected);
  });

  it('st_ino defaults to the node id; blocks to ceil(size / 512)', () => {
    const encoded = encodeAttrOut({ mode: 0o100600, size: 513n }, 2n ** 60n, 0);
    const expected = pack('fuse_attr_out', {
      attr: { ino: 2n ** 60n, size: 513, blocks: 2, mode: 0o100600, nlink: 1 },
    });
    assert.deepEqual(encoded, expected);
  });

  it('fuse_attr_out', () => {
    const expected = pack('fuse_attr_out', { attr_valid: 5, attr_valid_nsec: 100, attr: ATTR_VALUES });
    assert.deepEqual(encodeAttrOut(ATTR, 12, 5.0000001), expected);
  });

  it('a negative LOOKUP reply is an entry with node id 0 and an entry timeout', () => {
    const expected = pack('fuse_entry_out', { entry_valid: 30, attr: {} });
    assert.deepEqual(encodeNegativeEntryOut(30), expected);
  });

  it('timeouts: fractions, zero, negatives and infinity', () => {
    assert.deepEqual(splitTimeout(0), { sec: 0, nsec: 0 });
    assert.deepEqual(splitTimeout(-1), { sec: 0, nsec: 0 });
    assert.deepEqual(splitTimeout(Number.NaN), { sec: 0, nsec: 0 });
    assert.deepEqual(splitTimeout(0.001), { sec: 0, nsec: 1_000_000 });
    assert.deepEqual(splitTimeout(Number.POSITIVE_INFINITY), { sec: Number.MAX_SAFE_INTEGER, nsec: 0 });
  });

  it('fuse_open_out, fuse_kstatfs, fuse_init_out', () => {
    assert.deepEqual(encodeOpenOut(5, 3), pack('fuse_open_out', { fh: 5, open_flags: 3 }));
    assert.deepEqual(
      encodeStatfsOut({ blocks: 100, bfree: 1, bavail: 2, files: 3, ffree: 4, bsize: 8192, namelen: 200 }),
      pack('fuse_kstatfs', {
        blocks: 100,
        bfree: 1,
        bavail: 2,
        files: 3,
        ffree: 4,
        bsize: 8192,
        namelen: 200,
        frsize: 8192,
      }),
    );
    const init = {
      major: 7,
      minor: 38,
      maxReadahead: 131072,
      flags: 0x80000001,
      maxBackground: 64,
      congestionThreshold: 48,
      maxWrite: 131072,
      timeGran: 1,
      maxPages: 256,
    };
    assert.deepEqual(
      encodeInitOut(init),
      pack('fuse_init_out', {
        major: 7,
        minor: 38,
        max_readahead: 131072,
        flags: 0x80000001,
        max_background: 64,
        congestion_threshold: 48,
        max_write: 131072,
        time_gran: 1,
        max_pages: 256,
      }),
    );
  });

  it('u64 values out of range are refused, not wrapped', () => {
    assert.throws(() => encodeOpenOut(-1, 0), RangeError);
    assert.throws(() => encodeAttrOut({ mode: 0, size: 2 ** 64 }, 1, 0), RangeError);
  });
});

describe('fuse xattr replies', () => {
  const value = Buffer.from('some value');

  it('size 0 is a probe answered with fuse_getxattr_out', () => {
    assert.deepEqual(encodeXattrReply(value, 0), pack('fuse_getxattr_out', { size: value.length }));
    assert.deepEqual(encodeXattrReply(Buffer.alloc(0), 0), pack('fuse_getxattr_out', { size: 0 }));
  });

  it('a buffer too small is ERANGE; a big enough one gets the value alone', () => {
    assert.throws(
      () => encodeXattrReply(value, value.length - 1),
      (err: unknown) => err instanceof FuseError && err.code === 'ERANGE',
    );
    assert.deepEqual(encodeXattrReply(value, value.length), value);
    assert.deepEqual(encodeXattrReply(value, 65536), value);
  });

  it('LISTXATTR names are NUL-terminated; empty names and names holding NUL are left out', () => {
    const names = encodeXattrNames(['user.a', Buffer.from('security.capability'), '', 'bad\0name']);
    assert.deepEqual(names, Buffer.from('user.a\0security.capability\0'));
    assert.deepEqual(encodeXattrReply(names, 0), pack('fuse_getxattr_out', { size: 27 }));
    assert.throws(() => encodeXattrReply(names, 26), FuseError);
  });
});

// ---- Directory listings ----

function parseDirents(buf: Buffer, plus: boolean): Array<{ entry?: Buffer; dirent: Values; name: string }> {
  const out: Array<{ entry?: Buffer; dirent: Values; name: string }> = [];
  let at = 0;
  while (at < buf.length) {
    const entry = plus ? buf.subarray(at, at + StructSize.ENTRY_OUT) : undefined;
    const d = at + (plus ? StructSize.ENTRY_OUT : 0);
    const namelen = buf.readUInt32LE(d + offsetOf('fuse_dirent', 'namelen'));
    const dirent = {
      ino: buf.readBigUInt64LE(d),
      off: buf.readBigUInt64LE(d + offsetOf('fuse_dirent', 'off')),
      namelen,
      type: buf.readUInt32LE(d + offsetOf('fuse_dirent', 'type')),
    };
    const nameStart = d + layoutSize('fuse_dirent');
    const end = at + direntSize(namelen, plus);
    assert.ok(
      buf.subarray(nameStart + namelen, end).every((byte) => byte === 0),
      'padding is zero',
    );
    out.push({ entry, dirent, name: buf.toString('utf8', nameStart, nameStart + namelen) });
    at = end;
  }
  assert.equal(at, buf.length);
  return out;
}

const TIMEOUTS = { entry: 10, attr: 20 };

describe('fuse dirent packing', () => {
  it('records are 24 + name bytes rounded up to 8 (FUSE_DIRENT_ALIGN)', () => {
    assert.equal(direntSize(1, false), 32);
    assert.equal(direntSize(8, false), 32);
    assert.equal(direntSize(9, false), 40);
    assert.equal(direntSize(1, true), 128 + 32);
    assert.equal(direntSize(255, true), 128 + 280);
  });

  it('packs ino, next offset, type (S_IFMT >> 12) and name', () => {
    const packer = new DirentPacker(4096, false, TIMEOUTS);
    assert.equal(packer.add({ name: '.', ino: 1, mode: 0o040755, offset: 1 }), 'added');
    assert.equal(packer.add({ name: 'file.txt', ino: 5, mode: 0o100644, offset: 2 }), 'added');
    assert.equal(
      packer.add({ name: 'a-link-name', ino: 2n ** 60n, mode: 0o120777, offset: 2n ** 62n }),
      'added',
    );
    assert.equal(
      packer.add({ name: 'fifo', ino: 9, mode: 0o010644, offset: 4, attr: { mode: 0, ino: 77 } }),
      'added',
    );
    const parsed = parseDirents(packer.finish(), false);
    assert.deepEqual(
      parsed.map(({ dirent, name }) => [name, dirent.ino, dirent.off, dirent.type]),
      [
        ['.', 1n, 1n, 4],
        ['file.txt', 5n, 2n, 8],
        ['a-link-name', 2n ** 60n, 2n ** 62n, 10],
        // d_ino follows the attributes' st_ino when given
        ['fifo', 77n, 4n, 1],
      ],
    );
  });

  it('stops at the kernel buffer size: a record that does not fit is refused whole', () => {
    const packer = new DirentPacker(64, false, TIMEOUTS);
    assert.equal(packer.add({ name: 'abcdefgh', ino: 2, mode: 0o100644, offset: 1 }), 'added'); // 32 bytes
    assert.equal(packer.add({ name: 'abcdefghi', ino: 3, mode: 0o100644, offset: 2 }), 'full'); // 40 more
    assert.equal(packer.add({ name: 'x', ino: 4, mode: 0o100644, offset: 3 }), 'added'); // 32: fits exactly
    assert.equal(packer.finish().length, 64);
    assert.equal(packer.count, 2);
  });

  it('grows past its first allocation up to the requested size', () => {
    const capacity = 1024 * 1024;
    const packer = new DirentPacker(capacity, false, TIMEOUTS);
    let added = 0;
    while (
      packer.add({ name: `entry-${added}`, ino: added + 2, mode: 0o100644, offset: added + 1 }) === 'added'
    ) {
      added++;
    }
    const parsed = parseDirents(packer.finish(), false);
    assert.equal(parsed.length, added);
    assert.ok(packer.finish().length > capacity - 40 && packer.finish().length <= capacity);
    assert.equal(parsed.at(-1)!.name, `entry-${added - 1}`);
  });

  it('skips names the kernel would fail the whole listing for', () => {
    for (const bad of ['', 'a/b', 'nul\0', 'x'.repeat(256)])
      assert.equal(isValidDirentName(Buffer.from(bad)), false);
    assert.equal(isValidDirentName(Buffer.from('x'.repeat(255))), true);
    assert.equal(isValidDirentName(Buffer.from([0xff, 0xfe])), true); // names are bytes, not UTF-8
    const packer = new DirentPacker(4096, false, TIMEOUTS);
    assert.equal(packer.add({ name: 'a/b', ino: 2, mode: 0o100644, offset: 1 }), 'invalid-name');
    assert.equal(packer.count, 0);
  });

  it('READDIRPLUS records: fuse_entry_out then fuse_dirent, aligned', () => {
    const packer = new DirentPacker(4096, true, TIMEOUTS);
    packer.add({ name: 'file', ino: 12, mode: 0o100644, offset: 3, attr: ATTR });
    packer.add({ name: 'listed-only', ino: 13, mode: 0o040755, offset: 4 });
    const [withAttr, listedOnly] = parseDirents(packer.finish(), true);
    assert.deepEqual(
      withAttr!.entry,
      pack('fuse_entry_out', { nodeid: 12, entry_valid: 10, attr_valid: 20, attr: ATTR_VALUES }),
    );
    assert.deepEqual(withAttr!.dirent, { ino: 99n, off: 3n, namelen: 4, type: 8 });
    // No attributes: node id 0, which the kernel takes as "list the name, no lookup".
    assert.deepEqual(listedOnly!.entry, Buffer.alloc(StructSize.ENTRY_OUT));
    assert.deepEqual(listedOnly!.dirent, { ino: 13n, off: 4n, namelen: 11, type: 4 });
  });
});

// ---- INIT ----

const KERNEL_OFFER = { major: 7, minor: 45, maxReadahead: 131072, flags: 0x73fffffb };
const LIMITS = { maxRead: 1024 * 1024, maxBackground: 64, maxWrite: 131072 };

describe('fuse INIT negotiation', () => {
  it('asks only for flags the kernel offers, at our minor', () => {
    const decision = negotiateInit(KERNEL_OFFER, LIMITS);
    assert.equal(decision.kind, 'accept');
    const reply = decision.kind === 'accept' ? decision.reply : assert.fail();
    assert.equal(reply.major, 7);
    assert.equal(reply.minor, 38);
    assert.equal(reply.flags, WANTED_INIT_FLAGS);
    for (const flag of ['ASYNC_READ', 'PARALLEL_DIROPS', 'DO_READDIRPLUS', 'MAX_PAGES'] as const) {
      assert.ok(reply.flags & InitFlag[flag], flag);
    }
    for (const flag of [
      'READDIRPLUS_AUTO',
      'WRITEBACK_CACHE',
      'POSIX_LOCKS',
      'EXPORT_SUPPORT',
      'SPLICE_READ',
      'INIT_EXT',
    ] as const) {
      assert.equal(reply.flags & InitFlag[flag], 0, flag);
    }
    assert.equal(reply.maxPages, 256);
    assert.equal(reply.maxReadahead, 131072);
    assert.equal(reply.maxWrite, 131072);
    assert.deepEqual([reply.maxBackground, reply.congestionThreshold, reply.timeGran], [64, 48, 1]);

    const older = negotiateInit({ ...KERNEL_OFFER, minor: 31, flags: InitFlag.ASYNC_READ }, LIMITS);
    assert.ok(
      older.kind === 'accept' && older.reply.minor === 31 && older.reply.flags === InitFlag.ASYNC_READ,
    );
  });

  it('max_pages from maxRead; readahead can only be lowered', () => {
    const pages = (maxRead: number) => {
      const decision = negotiateInit(KERNEL_OFFER, { ...LIMITS, maxRead });
      return decision.kind === 'accept' ? decision.reply.maxPages : -1;
    };
    assert.deepEqual([pages(4096), pages(4097), pages(128 * 1024), pages(4 * 1024 * 1024)], [1, 2, 32, 256]);
    const lower = negotiateInit(KERNEL_OFFER, { ...LIMITS, maxReadahead: 65536 });
    const higher = negotiateInit(KERNEL_OFFER, { ...LIMITS, maxReadahead: 1 << 20 });
    assert.ok(lower.kind === 'accept' && lower.reply.maxReadahead === 65536);
    assert.ok(higher.kind === 'accept' && higher.reply.maxReadahead === 131072);
  });

  it('rejects kernels before 7.28; answers a newer major with ours alone', () => {
    assert.equal(negotiateInit({ ...KERNEL_OFFER, minor: 27 }, LIMITS).kind, 'reject');
    assert.equal(negotiateInit({ ...KERNEL_OFFER, major: 6 }, LIMITS).kind, 'reject');
    const newer = negotiateInit({ ...KERNEL_OFFER, major: 8 }, LIMITS);
    assert.ok(newer.kind === 'downgrade' && newer.reply.major === 7 && newer.reply.flags === 0);
  });
});

// ---- Mount plumbing (the pure parts) ----

describe('fuse mount plumbing', () => {
  it('mount(8) options', () => {
    const base = { fsName: 'x', subtype: 'damselfly', maxRead: 1048576 };
    assert.equal(
      mountOptions({ ...base, allowOther: true, defaultPermissions: true, readOnly: true }),
      'fd=3,rootmode=40000,user_id=0,group_id=0,max_read=1048576,allow_other,default_permissions,ro',
    );
    assert.equal(
      mountOptions({ ...base, allowOther: false, defaultPermissions: false, readOnly: false }),
      'fd=3,rootmode=40000,user_id=0,group_id=0,max_read=1048576,rw',
    );
  });

  it('parses mountinfo, unescaping paths, with or without optional fields', () => {
    const text = [
      '22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw',
      '95 22 0:52 / /tmp/with\\040space rw,relatime shared:1 master:2 - fuse.damselfly img\\134x rw,user_id=0',
      '96 22 0:53 / /mnt rw - fuse.other src rw',
      '',
    ].join('\n');
    assert.deepEqual(parseMountinfo(text), [
      { device: '0:21', mountpoint: '/proc', fsType: 'proc', source: 'proc' },
      { device: '0:52', mountpoint: '/tmp/with space', fsType: 'fuse.damselfly', source: 'img\\x' },
      { device: '0:53', mountpoint: '/mnt', fsType: 'fuse.other', source: 'src' },
    ]);
  });

  it('fusectl connection ids are the dev_t of the superblock', () => {
    assert.equal(connectionId('0:52'), '52');
    assert.equal(connectionId('1:2'), String((1 << 20) | 2));
  });
});
