/**
 * The bootstrap reader against hostile input: random byte mutations, truncations and
 * field-targeted corruptions of valid bootstraps. Every case must either decode (and then be
 * encodable again: the reader accepts nothing the writer would refuse) or throw
 * BootstrapFormatError — never another exception, never a hang.
 *
 * The PRNG seed is fixed so a failure reproduces; set BOOTSTRAP_FUZZ_SEED to explore others.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BootstrapFormatError,
  type DecodedBootstrap,
  decodeBootstrap,
  encodeBootstrap,
  type FileNode,
  newDirectory,
} from '../../src/image/format/index.js';
import { attributes, SyntheticImage } from '../helpers/erofs.js';

const SEED = Number(process.env.BOOTSTRAP_FUZZ_SEED ?? 0x5eed_da5e);
const CASES_PER_SEED_IMAGE = 1500;
/** Per case; decoding a seed image takes about a millisecond. */
const TIME_BOUND_MS = 500;

/** mulberry32: tiny, fast, good enough to spread mutations. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytesOf(length: number, seed: number): Buffer {
  const random = prng(seed);
  return Buffer.from(Array.from({ length }, () => 1 + Math.floor(random() * 255)));
}

/** Seed images: every node kind, two blobs, a multi-block directory, inline and plain symlinks. */
function seedImages(): Array<{ name: string; bytes: Buffer }> {
  const s = new SyntheticImage(4096, 2);
  s.file('/bin/tool', bytesOf(10_000, 1), { mode: 0o755, uid: 70000 });
  s.file('/lib/data', Buffer.concat([bytesOf(4096, 2), Buffer.alloc(8192), bytesOf(5, 3)]), {}, 1);
  const hosts = s.file('/etc/hosts', Buffer.from('127.0.0.1 localhost\n'), {
    xattrs: new Map([
      ['user.a', Buffer.from('1')],
      ['security.selinux', Buffer.from('system_u:object_r:etc_t:s0')],
    ]),
  });
  s.add('/etc/hosts.link', hosts);
  s.symlink('/sh', 'bin/tool');
  s.symlink('/long', 'z'.repeat(4090));
  s.device('/dev/tty', 'char', 5, 0);
  s.special('/run/fifo', 'fifo');
  s.special('/run/sock', 'socket');
  s.file('/empty', Buffer.alloc(0));
  const dir = s.dir('/many');
  for (let i = 0; i < 300; i++) {
    dir.children.set(`file-${i}-${'q'.repeat(i % 40)}`, {
      kind: 'file',
      ...attributes(),
      size: 0,
      chunks: [],
    });
  }
  const rich = encodeBootstrap(s.build(['/bin/tool', '/etc']).image);

  const small = new SyntheticImage(16 * 1024, 1);
  small.file('/a', bytesOf(40_000, 4));
  small.file('/b', bytesOf(17, 5));
  small.dir('/d/e/f');
  const smallBytes = encodeBootstrap(small.build(['/a']).image);

  const root = newDirectory();
  root.children.set('sparse', {
    kind: 'file',
    ...attributes(),
    size: 1 << 20,
    chunks: new Array(16).fill(null),
  });
  root.children.set('x', newDirectory());
  const noBlobs = encodeBootstrap({ root, chunkSize: 65536, blobs: [], chunks: [], prefetch: [] });
  return [
    { name: 'rich', bytes: rich },
    { name: 'small', bytes: smallBytes },
    { name: 'no-blobs', bytes: noBlobs },
  ];
}

type Outcome = 'decoded' | 'rejected';

/** Decodes `bytes`; asserts the outcome is one of the two allowed, within the time bound. */
function tryDecode(bytes: Buffer, label: string): Outcome {
  const started = performance.now();
  let outcome: Outcome;
  try {
    const decoded = decodeBootstrap(bytes);
    // Whatever the reader accepts, the writer must be able to write.
    encodeBootstrap(decoded.image);
    outcome = 'decoded';
  } catch (err) {
    if (!(err instanceof BootstrapFormatError)) {
      assert.fail(
        `${label}: threw ${(err as Error)?.name}: ${(err as Error)?.message}\n${(err as Error)?.stack}`,
      );
    }
    assert.equal(err.code, 'EBOOTSTRAP');
    assert.doesNotMatch(err.message, /unexpected decoder failure/, `${label}: a check is missing`);
    outcome = 'rejected';
  }
  const elapsed = performance.now() - started;
  assert.ok(elapsed < TIME_BOUND_MS, `${label}: took ${elapsed.toFixed(0)} ms`);
  return outcome;
}

/** Byte ranges worth aiming at, from the seed's own structure. */
interface Targets {
  fields: Array<{ at: number; size: 1 | 2 | 4 | 8 }>;
  dirents: number[];
}

function targetsOf(bytes: Buffer, decoded: DecodedBootstrap): Targets {
  const fields: Targets['fields'] = [];
  const sbFields: Array<[number, 1 | 2 | 4 | 8]> = [
    [0, 4],
    [4, 4],
    [8, 4],
    [12, 1],
    [13, 1],
    [14, 2],
    [16, 8],
    [36, 4],
    [40, 4],
    [44, 4],
    [64, 1],
    [79, 1],
    [80, 4],
    [84, 2],
    [86, 2],
    [88, 2],
    [90, 1],
  ];
  for (const [off, size] of sbFields) fields.push({ at: 1024 + off, size });
  const extFields: Array<[number, 1 | 2 | 4 | 8]> = [
    [0, 4],
    [4, 2],
    [6, 1],
    [7, 1],
    [8, 4],
    [16, 4],
    [20, 1],
    [22, 2],
    [24, 8],
    [32, 4],
    [36, 2],
    [40, 8],
    [48, 4],
    [52, 2],
    [56, 8],
    [64, 4],
    [68, 2],
  ];
  for (const [off, size] of extFields) fields.push({ at: 1152 + off, size });
  const { extension: ext, superblock: sb } = decoded;
  decoded.devices.forEach((_, i) => {
    const slot = sb.devtSlotoff * 128 + i * 128;
    fields.push({ at: slot, size: 1 }, { at: slot + 64, size: 4 }, { at: slot + 68, size: 4 });
  });
  for (let i = 0; i < ext.blobTable.count; i++) {
    const at = ext.blobTable.offset + i * ext.blobTable.entrySize;
    for (const [off, size] of [
      [0, 1],
      [32, 8],
      [40, 8],
      [48, 4],
      [52, 1],
    ] as const)
      fields.push({ at: at + off, size });
  }
  for (let i = 0; i < ext.chunkTable.count; i++) {
    const at = ext.chunkTable.offset + i * ext.chunkTable.entrySize;
    for (const [off, size] of [
      [32, 8],
      [40, 8],
      [48, 4],
      [52, 4],
      [56, 2],
      [58, 2],
    ] as const) {
      fields.push({ at: at + off, size });
    }
  }
  for (let i = 0; i < ext.prefetchTable.count; i++)
    fields.push({ at: ext.prefetchTable.offset + i * 8, size: 8 });
  const dirents: number[] = [];
  for (const [node, nid] of decoded.nidOf) {
    const at = sb.metaBlkaddr * 4096 + nid * 32;
    const inodeFields: Array<[number, 1 | 2 | 4 | 8]> = [
      [0, 2],
      [2, 2],
      [4, 2],
      [8, 8],
      [16, 4],
      [24, 4],
      [32, 8],
      [40, 4],
      [44, 4],
    ];
    for (const [off, size] of inodeFields) fields.push({ at: at + off, size });
    if (node.kind === 'file' && node.size > 0) {
      const indexAt = Math.ceil((at + 64 + ibodyBytes(bytes, at)) / 8) * 8;
      for (let i = 0; i < node.chunks.length; i++) {
        fields.push(
          { at: indexAt + i * 8, size: 2 },
          { at: indexAt + i * 8 + 2, size: 2 },
          { at: indexAt + i * 8 + 4, size: 4 },
        );
      }
    }
    if (node.kind === 'directory') dirents.push(directoryDataAt(bytes, at));
  }
  return { fields, dirents };
}

function ibodyBytes(bytes: Buffer, inodeAt: number): number {
  const icount = bytes.readUInt16LE(inodeAt + 2);
  return icount === 0 ? 0 : 12 + 4 * (icount - 1);
}

/** First directory block: inline after the inode (FLAT_INLINE, small dirs) or at `i_u`. */
function directoryDataAt(bytes: Buffer, inodeAt: number): number {
  const layout = bytes.readUInt16LE(inodeAt) >> 1;
  const iu = bytes.readUInt32LE(inodeAt + 16);
  const size = Number(bytes.readBigUInt64LE(inodeAt + 8));
  if (layout === 2 && size < 4096) return inodeAt + 64 + ibodyBytes(bytes, inodeAt);
  return iu * 4096;
}

function interestingValue(random: () => number, original: bigint, size: number): bigint {
  const max = (1n << BigInt(size * 8)) - 1n;
  const choices = [
    0n,
    1n,
    max,
    max >> 1n,
    original + 1n,
    original - 1n,
    original ^ 0x80n,
    original * 2n,
    0xffffffffn,
  ];
  const pick = choices[Math.floor(random() * choices.length)]!;
  const value = random() < 0.8 ? pick : BigInt(Math.floor(random() * Number.MAX_SAFE_INTEGER));
  return ((value % (max + 1n)) + (max + 1n)) % (max + 1n);
}

function readField(buf: Buffer, at: number, size: number): bigint {
  if (size === 1) return BigInt(buf.readUInt8(at));
  if (size === 2) return BigInt(buf.readUInt16LE(at));
  if (size === 4) return BigInt(buf.readUInt32LE(at));
  return buf.readBigUInt64LE(at);
}

function writeField(buf: Buffer, at: number, size: number, value: bigint): void {
  if (size === 1) buf.writeUInt8(Number(value), at);
  else if (size === 2) buf.writeUInt16LE(Number(value), at);
  else if (size === 4) buf.writeUInt32LE(Number(value), at);
  else buf.writeBigUInt64LE(value, at);
}

/** One mutated copy of `bytes` and a label describing the mutation. */
function mutate(bytes: Buffer, targets: Targets, random: () => number): { bytes: Buffer; label: string } {
  const kind = random();
  if (kind < 0.15) {
    const length =
      random() < 0.5
        ? Math.floor(random() * bytes.length)
        : Math.floor(random() * (bytes.length / 4096)) * 4096;
    return { bytes: Buffer.from(bytes.subarray(0, length)), label: `truncated to ${length}` };
  }
  const copy = Buffer.from(bytes);
  if (kind < 0.45) {
    const flips = 1 + Math.floor(random() * 8);
    const spots: number[] = [];
    for (let i = 0; i < flips; i++) {
      // Half the flips land in block 0 and the first metadata blocks, where most structure is.
      const at =
        random() < 0.5
          ? Math.floor(random() * Math.min(bytes.length, 16384))
          : Math.floor(random() * bytes.length);
      copy[at] = Math.floor(random() * 256);
      spots.push(at);
    }
    return { bytes: copy, label: `random bytes at ${spots.join(',')}` };
  }
  if (kind < 0.85 || targets.dirents.length === 0) {
    const field = targets.fields[Math.floor(random() * targets.fields.length)]!;
    const original = readField(copy, field.at, field.size);
    const value = interestingValue(random, original, field.size);
    writeField(copy, field.at, field.size, value);
    return { bytes: copy, label: `field at ${field.at} (${field.size} B): ${original} → ${value}` };
  }
  const block = targets.dirents[Math.floor(random() * targets.dirents.length)]!;
  const count = copy.readUInt16LE(block + 8) / 12;
  const entry = block + 12 * Math.floor(random() * count);
  const which = Math.floor(random() * 4);
  if (which === 0) copy.writeBigUInt64LE(BigInt(Math.floor(random() * 2000)), entry);
  else if (which === 1)
    copy.writeUInt16LE(copy.readUInt16LE(entry + 8) + Math.floor(random() * 5) - 2, entry + 8);
  else if (which === 2) copy.writeUInt8(Math.floor(random() * 10), entry + 10);
  else copy[copy.readUInt16LE(entry + 8) + block] = [0x2f, 0, 0x2e, 0xff][Math.floor(random() * 4)]!;
  return {
    bytes: copy,
    label: `dirent at ${entry} (${['nid', 'nameoff', 'file type', 'name byte'][which]})`,
  };
}

describe('bootstrap reader: fuzzing', () => {
  const seeds = seedImages();
  for (const [index, seed] of seeds.entries()) {
    it(`survives ${CASES_PER_SEED_IMAGE} mutations of the ${seed.name} bootstrap`, () => {
      const targets = targetsOf(seed.bytes, decodeBootstrap(seed.bytes));
      const random = prng(SEED + index);
      const outcomes = { decoded: 0, rejected: 0 };
      for (let i = 0; i < CASES_PER_SEED_IMAGE; i++) {
        const { bytes, label } = mutate(seed.bytes, targets, random);
        outcomes[tryDecode(bytes, `${seed.name} case ${i} (seed 0x${SEED.toString(16)}): ${label}`)] += 1;
      }
      assert.ok(outcomes.rejected > CASES_PER_SEED_IMAGE / 2, `only ${outcomes.rejected} mutations rejected`);
    });
  }

  it('rejects every truncation of a bootstrap', () => {
    const { bytes } = seeds[1]!;
    for (let length = 0; length < bytes.length; length += 509)
      assert.equal(tryDecode(bytes.subarray(0, length), `length ${length}`), 'rejected');
    assert.equal(tryDecode(Buffer.concat([bytes, Buffer.alloc(4096)]), 'one block appended'), 'rejected');
    assert.equal(tryDecode(Buffer.alloc(0), 'empty'), 'rejected');
  });
});

describe('bootstrap reader: targeted corruptions', () => {
  const s = new SyntheticImage(4096, 2);
  const file = s.file('/dir/file', bytesOf(3 * 4096, 9), {}, 1);
  s.file('/other', bytesOf(100, 10));
  s.dir('/dir/sub');
  const image = s.build().image;
  const bytes = encodeBootstrap(image);
  const decoded = decodeBootstrap(bytes);
  const metaStart = decoded.superblock.metaBlkaddr * 4096;

  function rejectsWith(mutated: Buffer, message: RegExp): void {
    assert.throws(
      () => decodeBootstrap(mutated),
      (err: unknown) => err instanceof BootstrapFormatError && message.test(err.message),
    );
  }

  /** Byte offset of chunk index `i` of `node` (no xattrs: the indexes follow the 64-byte inode). */
  function chunkIndexAt(node: FileNode, i: number): number {
    return metaStart + decoded.nidOf.get(findNode(node))! * 32 + 64 + i * 8;
  }

  function findNode(node: FileNode): FileNode {
    const dir = decoded.image.root.children.get('dir');
    assert.ok(dir?.kind === 'directory');
    const found = dir.children.get('file');
    assert.deepStrictEqual(found, node);
    return found as FileNode;
  }

  it('names the device when a chunk index points past the blobs', () => {
    const copy = Buffer.from(bytes);
    copy.writeUInt16LE(9, chunkIndexAt(file, 2) + 2);
    const nid = decoded.nidOf.get(findNode(file));
    rejectsWith(
      copy,
      new RegExp(`inode nid ${nid}: chunk index 2 points at device 9, but the image has 2 blobs`),
    );
  });

  it('rejects a chunk index that points where no chunk starts', () => {
    const copy = Buffer.from(bytes);
    copy.writeUInt32LE(77, chunkIndexAt(file, 1) + 4);
    rejectsWith(copy, /chunk index 1 points at device 2 block 77, where no chunk of the chunk table starts/);
  });

  it('rejects directory cycles', () => {
    const copy = Buffer.from(bytes);
    const dir = decoded.image.root.children.get('dir');
    assert.ok(dir?.kind === 'directory');
    const dirNid = decoded.nidOf.get(dir)!;
    const subNid = decoded.nidOf.get(dir.children.get('sub')!)!;
    // Make /dir/sub's entry point at /dir itself.
    const at = directoryDataAt(copy, metaStart + dirNid * 32);
    const count = copy.readUInt16LE(at + 8) / 12;
    for (let i = 0; i < count; i++) {
      if (Number(copy.readBigUInt64LE(at + i * 12)) === subNid) {
        copy.writeBigUInt64LE(BigInt(dirNid), at + i * 12);
      }
    }
    rejectsWith(copy, /reaches directory nid \d+ a second time/);
  });

  it('rejects huge table counts without allocating for them', () => {
    const copy = Buffer.from(bytes);
    copy.writeUInt32LE(0xffffffff, 1152 + 48);
    rejectsWith(copy, /chunk table: bytes \d+\+\d+ lie outside the \d+-byte bootstrap/);
  });

  it('rejects huge file sizes without allocating chunk lists for them', () => {
    const copy = Buffer.from(bytes);
    const nid = decoded.nidOf.get(findNode(file))!;
    copy.writeBigUInt64LE(1n << 52n, metaStart + nid * 32 + 8);
    rejectsWith(copy, /chunk indexes: bytes .* lie outside/);
  });

  it('rejects a root at nid 0, a wrong magic and a foreign EROFS image', () => {
    const zeroRoot = Buffer.from(bytes);
    zeroRoot.writeUInt16LE(0, 1024 + 14);
    rejectsWith(zeroRoot, /root nid 0/);
    const magic = Buffer.from(bytes);
    magic.writeUInt32LE(0x12345678, 1024);
    rejectsWith(magic, /superblock: magic 0x12345678/);
    const foreign = Buffer.from(bytes);
    foreign.writeUInt32LE(0, 1024 + 8);
    rejectsWith(foreign, /not a Damselfly bootstrap/);
  });
});
