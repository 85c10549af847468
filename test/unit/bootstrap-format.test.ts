import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  type DirectoryNode,
  decodeBootstrap,
  encodeBootstrap,
  type FileNode,
  type ImageBootstrap,
  InvalidImageError,
  newDirectory,
  type TreeNode,
} from '../../src/image/format/index.js';
import { attributes, namesFillingOneBlock, SyntheticImage } from '../helpers/erofs.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Deterministic bytes that never form an all-zero chunk. */
function pattern(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = (x >>> 16) | 1;
  }
  return out;
}

function child(dir: DirectoryNode, path: string): TreeNode {
  let node: TreeNode = dir;
  for (const name of path.split('/').filter(Boolean)) {
    assert.equal(node.kind, 'directory', `${name}: parent is not a directory`);
    const next: TreeNode | undefined = node.kind === 'directory' ? node.children.get(name) : undefined;
    assert.ok(next, `${path}: ${name} missing`);
    node = next;
  }
  return node;
}

const LONG_NAME = 'n'.repeat(255);
// A leading U+FEFF is part of the name: decoding must not strip it (and merge \uFEFFbom with bom).
const UNICODE_NAMES = [
  'héllo wörld',
  '日本語のファイル',
  '🦋 damselfly',
  'Ω≈ç√∫',
  `${'é'.repeat(127)}x`,
  '\uFEFFbom',
  'bom',
];

/** A tree with every node kind, hard links across directories, xattrs, holes and odd names. */
function richImage(): { image: ImageBootstrap; blobs: Buffer[]; linked: FileNode } {
  const s = new SyntheticImage(16 * KiB, 2);
  const shared = pattern(20 * KiB, 1);
  s.file('/bin/a', Buffer.concat([shared, pattern(5000, 2)]), { mode: 0o755, uid: 70000, gid: 80000 });
  s.file(
    '/bin/b',
    Buffer.concat([shared, pattern(100, 3)]),
    { mtimeSec: 1234567890, mtimeNsec: 500_000_000 },
    1,
  );
  s.file('/holes', Buffer.concat([pattern(16 * KiB, 4), Buffer.alloc(48 * KiB), pattern(10, 5)]), {}, 1);
  s.file('/empty', Buffer.alloc(0), { mode: 0o4755 });
  const linked = s.file('/etc/hosts', Buffer.from('127.0.0.1 localhost\n'));
  s.add('/usr/share/hosts-link', linked);
  s.add('/etc/hosts.again', linked);
  s.file(`/names/${LONG_NAME}`, Buffer.from('long'));
  for (const name of UNICODE_NAMES) s.file(`/names/${name}`, Buffer.from(name));
  s.symlink('/link-short', 'bin/a');
  s.symlink('/link-bom', '\uFEFFtarget');
  s.symlink('/link-long', `/${'x'.repeat(4094)}`);
  s.symlink('/link-inline-big', 'y'.repeat(3000));
  s.device('/dev/null', 'char', 1, 3);
  s.device('/dev/big', 'char', 300, 1234);
  s.device('/dev/sda1', 'block', 8, 1);
  s.device('/dev/max', 'block', 0xfff, 0xfffff);
  s.special('/run/fifo', 'fifo');
  s.special('/run/sock', 'socket', { mode: 0o777 });
  s.dir('/tmp', { mode: 0o1777, mtimeSec: -5, mtimeNsec: 999_999_999 });
  const acl = Buffer.from('0200000001000600ffffffff04000400ffffffff20000400ffffffff', 'hex');
  s.file('/xattrs', Buffer.from('x'), {
    xattrs: new Map([
      ['user.comment', Buffer.from('hello')],
      ['user.empty', Buffer.alloc(0)],
      ['user.\uFEFFbom', Buffer.from('b')],
      ['trusted.overlay.opaque', Buffer.from('y')],
      ['security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex')],
      ['system.posix_acl_access', acl],
      ['system.posix_acl_default', acl],
      [`user.${'k'.repeat(250)}`, pattern(3000, 6)],
    ]),
  });
  const dirXattrs = s.dir('/with-xattrs', { xattrs: new Map([['user.dir', Buffer.from('d')]]) });
  dirXattrs.children.set('inner', newDirectory());
  const big = s.dir('/big');
  for (let i = 0; i < 5000; i++) {
    big.children.set(`entry-${String(i).padStart(5, '0')}.txt`, {
      kind: 'file',
      ...attributes(),
      size: 0,
      chunks: [],
    });
  }
  big.children.set('hard-link-inside-big', linked);
  const { image, blobs } = s.build(['/bin/a', '/etc', '/big/entry-04999.txt', '/']);
  return { image, blobs, linked };
}

describe('bootstrap format: round trip', () => {
  it('decodes exactly the tree, tables and prefetch list that were encoded', () => {
    const { image } = richImage();
    const bytes = encodeBootstrap(image);
    const decoded = decodeBootstrap(bytes);
    assert.deepStrictEqual(decoded.image, image);
  });

  it('keeps hard links as one node object with one nid', () => {
    const { image, linked } = richImage();
    const decoded = decodeBootstrap(encodeBootstrap(image));
    const root = decoded.image.root;
    const a = child(root, '/etc/hosts');
    assert.equal(child(root, '/usr/share/hosts-link'), a);
    assert.equal(child(root, '/etc/hosts.again'), a);
    assert.equal(child(root, '/big/hard-link-inside-big'), a);
    assert.deepStrictEqual(a, linked);
    const nids = new Set(decoded.nidOf.values());
    assert.equal(nids.size, decoded.nidOf.size, 'every node has its own nid');
    assert.equal(decoded.superblock.inos, decoded.nidOf.size);
  });

  it('never puts an inode at nid 0, and the root nid fits in 16 bits', () => {
    const decoded = decodeBootstrap(encodeBootstrap(richImage().image));
    assert.ok(![...decoded.nidOf.values()].includes(0));
    const rootNid = decoded.nidOf.get(decoded.image.root);
    assert.equal(rootNid, decoded.superblock.rootNid);
    assert.ok(rootNid !== undefined && rootNid > 0 && rootNid <= 0xffff);
  });

  it('writes the superblock, extension header and device table as specified', () => {
    const { image } = richImage();
    const bytes = encodeBootstrap(image);
    const { superblock: sb, extension: ext, devices } = decodeBootstrap(bytes);
    assert.equal(bytes.readUInt32LE(1024), 0xe0f5e1e2);
    assert.equal(sb.checksum, 0);
    assert.equal(sb.featureCompat, 0x20000000);
    assert.equal(sb.featureIncompat, 0x4 | 0x8);
    assert.equal(sb.blkszbits, 12);
    assert.equal(sb.extslots, 0);
    assert.equal(sb.extraDevices, 2);
    assert.equal(sb.devtSlotoff, 11);
    assert.equal(sb.blocks * 4096, bytes.length);
    assert.equal(bytes.subarray(1152, 1156).toString('latin1'), 'DMSF');
    assert.equal(ext.versionMajor, 1);
    assert.equal(ext.chunkSize, 16 * KiB);
    assert.equal(ext.chunkTable.count, image.chunks.length);
    assert.equal(ext.prefetchTable.count, 4);
    for (const table of [ext.blobTable, ext.chunkTable, ext.prefetchTable])
      assert.equal(table.offset % 4096, 0);
    assert.equal(devices.length, 2);
    let mapped = sb.blocks;
    devices.forEach((slot, i) => {
      const blob = image.blobs[i]!;
      assert.equal(slot.tag, blob.digest.slice('sha256:'.length));
      assert.equal(slot.blocks, blob.uncompressedSize / 4096);
      assert.equal(slot.mappedBlkaddr, mapped);
      mapped += slot.blocks;
    });
  });

  it('leaves out the device table and DEVICE_TABLE when there are no blobs', () => {
    const root = newDirectory();
    root.children.set('empty', { kind: 'file', ...attributes(), size: 0, chunks: [] });
    root.children.set('sparse', { kind: 'file', ...attributes(), size: 3 * MiB, chunks: [null, null, null] });
    const image: ImageBootstrap = { root, chunkSize: MiB, blobs: [], chunks: [], prefetch: [] };
    const decoded = decodeBootstrap(encodeBootstrap(image));
    assert.equal(decoded.superblock.featureIncompat, 0x4);
    assert.equal(decoded.superblock.extraDevices, 0);
    assert.deepStrictEqual(decoded.image, image);
  });

  it('keeps files beyond 4 GiB (sizes and chunk indexes only)', () => {
    const digest = (n: number) => createHash('sha256').update(String(n)).digest();
    const blobBytes = 3 * MiB;
    const chunks = [0, 1, 2].map((i) => ({
      blobIndex: 0,
      digest: digest(i),
      compressedOffset: i * 100_000,
      compressedSize: 100_000,
      uncompressedOffset: i * MiB,
      uncompressedSize: MiB,
      compressed: true,
    }));
    chunks.push({
      ...chunks[0]!,
      digest: digest(9),
      uncompressedOffset: 2 * MiB + 4096,
      uncompressedSize: 1,
    });
    chunks[2]!.uncompressedSize = 4096;
    const size = 5 * GiB + 1;
    const fileChunks: Array<number | null> = new Array(5 * 1024 + 1).fill(null);
    fileChunks[0] = 0;
    fileChunks[4096] = 1;
    fileChunks[5 * 1024] = 3;
    const huge: FileNode = { kind: 'file', ...attributes({ uid: 4_000_000_000 }), size, chunks: fileChunks };
    const root = newDirectory();
    root.children.set('huge.img', huge);
    const image: ImageBootstrap = {
      root,
      chunkSize: MiB,
      blobs: [
        {
          digest: `sha256:${'ab'.repeat(32)}`,
          compressor: 'zstd',
          compressedSize: 400_000,
          uncompressedSize: blobBytes,
          chunkCount: 4,
        },
      ],
      chunks,
      prefetch: ['/huge.img'],
    };
    const decoded = decodeBootstrap(encodeBootstrap(image));
    assert.deepStrictEqual(decoded.image, image);
    assert.equal((decoded.image.root.children.get('huge.img') as FileNode).size, size);
  });

  it('packs a 5000-entry directory into several blocks, entries sorted by raw bytes', () => {
    const { image } = richImage();
    const decoded = decodeBootstrap(encodeBootstrap(image));
    const big = child(decoded.image.root, '/big') as DirectoryNode;
    assert.equal(big.children.size, 5001);
    const names = [...big.children.keys()].map((n) => Buffer.from(n));
    for (let i = 1; i < names.length; i++) assert.ok(Buffer.compare(names[i - 1]!, names[i]!) < 0);
  });
});

describe('bootstrap format: layout', () => {
  /** i_format layout (bits 1-3) and i_size of the inode for `path`. */
  function inodeShape(bytes: Buffer, path: string): { layout: number; size: number; offsetInBlock: number } {
    const decoded = decodeBootstrap(bytes);
    const at =
      decoded.superblock.metaBlkaddr * 4096 + decoded.nidOf.get(child(decoded.image.root, path))! * 32;
    return {
      layout: bytes.readUInt16LE(at) >> 1,
      size: Number(bytes.readBigUInt64LE(at + 8)),
      offsetInBlock: at % 4096,
    };
  }

  it('stores a directory that fills its block exactly as FLAT_PLAIN', () => {
    const s = new SyntheticImage(4096, 1);
    for (const name of namesFillingOneBlock()) s.file(`/full/${name}`, Buffer.alloc(0));
    const bytes = encodeBootstrap(s.build().image);
    const { layout, size } = inodeShape(bytes, '/full');
    assert.deepEqual({ layout, size }, { layout: 0, size: 4096 });
  });

  it('inlines tails, moving the inode to a fresh block when the tail would cross one', () => {
    const s = new SyntheticImage(4096, 1);
    s.symlink('/a', 'short');
    s.symlink('/b', 'y'.repeat(4000));
    s.symlink('/c', 'z'.repeat(4095));
    const bytes = encodeBootstrap(s.build().image);
    assert.equal(inodeShape(bytes, '/a').layout, 2);
    assert.deepEqual(inodeShape(bytes, '/b'), { layout: 2, size: 4000, offsetInBlock: 0 });
    assert.equal(inodeShape(bytes, '/c').layout, 0, 'a 4095-byte target cannot share a block with its inode');
  });

  it('encodes a root with nothing in it', () => {
    const image: ImageBootstrap = {
      root: newDirectory(),
      chunkSize: MiB,
      blobs: [],
      chunks: [],
      prefetch: ['/'],
    };
    const decoded = decodeBootstrap(encodeBootstrap(image));
    assert.deepStrictEqual(decoded.image, image);
    assert.equal(decoded.superblock.inos, 1);
  });

  it('stores prefetch entries as nids: a hard link reads back under its first name', () => {
    const s = new SyntheticImage(4096, 1);
    const file = s.file('/a/file', Buffer.from('x'));
    s.add('/z/link', file);
    const decoded = decodeBootstrap(encodeBootstrap(s.build(['/z/link', '/a']).image));
    assert.deepEqual(decoded.image.prefetch, ['/a/file', '/a']);
    assert.deepEqual(decoded.prefetchNids, [
      decoded.nidOf.get(child(decoded.image.root, '/a/file')),
      decoded.nidOf.get(child(decoded.image.root, '/a')),
    ]);
  });
});

describe('bootstrap format: determinism', () => {
  it('encodes the same input to the same bytes', () => {
    assert.ok(encodeBootstrap(richImage().image).equals(encodeBootstrap(richImage().image)));
  });

  it('does not depend on Map insertion order', () => {
    const { image } = richImage();
    const reversed = structuredCloneTree(image.root, new Map());
    const other = { ...image, root: reversed as DirectoryNode };
    assert.ok(encodeBootstrap(image).equals(encodeBootstrap(other)));
  });

  it('re-encodes a decoded bootstrap to identical bytes', () => {
    const bytes = encodeBootstrap(richImage().image);
    assert.ok(encodeBootstrap(decodeBootstrap(bytes).image).equals(bytes));
  });
});

/** A copy of the tree with every Map (children, xattrs) in reverse insertion order. */
function structuredCloneTree(node: TreeNode, copies: Map<TreeNode, TreeNode>): TreeNode {
  const known = copies.get(node);
  if (known) return known;
  const xattrs = new Map([...node.xattrs].reverse());
  if (node.kind !== 'directory') {
    const copy = { ...node, xattrs };
    copies.set(node, copy);
    return copy;
  }
  const copy: DirectoryNode = { ...node, xattrs, children: new Map() };
  copies.set(node, copy);
  for (const [name, c] of [...node.children].reverse())
    copy.children.set(name, structuredCloneTree(c, copies));
  return copy;
}

describe('bootstrap format: invalid input', () => {
  function tiny(): SyntheticImage {
    const s = new SyntheticImage(16 * KiB, 1);
    s.file('/a', pattern(20 * KiB, 7));
    s.file('/b', pattern(100, 8));
    return s;
  }

  function rejects(image: ImageBootstrap, message: RegExp): void {
    assert.throws(
      () => encodeBootstrap(image),
      (err: unknown) =>
        err instanceof InvalidImageError && err.code === 'EIMAGE' && message.test(err.message),
    );
  }

  it('rejects a chunk size that is not a power of two in range', () => {
    for (const chunkSize of [0, 2048, 3 * 4096, 32 * MiB]) {
      rejects({ ...tiny().build().image, chunkSize }, /chunk size .* power of two/);
    }
  });

  it('rejects an xattr name with no known prefix', () => {
    const s = tiny();
    s.file('/x', Buffer.from('x'), { xattrs: new Map([['os2.weird', Buffer.from('v')]]) });
    rejects(s.build().image, /\/x: xattr name "os2\.weird" has no supported prefix/);
    const t = tiny();
    t.file('/x', Buffer.from('x'), { xattrs: new Map([['user.', Buffer.from('v')]]) });
    rejects(t.build().image, /no supported prefix/);
  });

  it('rejects more than 255 blobs', () => {
    const { image } = tiny().build();
    const blobs = Array.from({ length: 256 }, (_, i) => ({
      digest: `sha256:${createHash('sha256').update(String(i)).digest('hex')}`,
      compressor: 'none' as const,
      compressedSize: 0,
      uncompressedSize: 0,
      chunkCount: 0,
    }));
    rejects({ ...image, blobs, chunks: [] }, /256 blobs; .* at most 255/);
  });

  it('rejects two chunks at the same blob location', () => {
    const { image } = tiny().build();
    const chunks = image.chunks.map((c) => ({ ...c }));
    chunks[1]!.uncompressedOffset = chunks[0]!.uncompressedOffset;
    chunks[1]!.compressedOffset = chunks[0]!.uncompressedOffset;
    rejects({ ...image, chunks }, /duplicate chunk location: chunks 0 and 1 both start at blob 0 offset 0/);
  });

  it('rejects overlapping or misaligned chunks', () => {
    const { image } = tiny().build();
    const overlap = image.chunks.map((c) => ({ ...c }));
    overlap[1]!.uncompressedOffset = 4096;
    overlap[1]!.compressedOffset = 4096;
    rejects({ ...image, chunks: overlap }, /overlaps chunk/);
    const misaligned = image.chunks.map((c) => ({ ...c }));
    misaligned[1]!.uncompressedOffset += 100;
    rejects({ ...image, chunks: misaligned }, /not a multiple of 4096/);
  });

  it('rejects chunk lists that do not match the file', () => {
    const s = tiny();
    const a = s.root.children.get('a') as FileNode;
    a.chunks = [0];
    rejects(s.build().image, /\/a: 1 chunk entries, but a 20480-byte file has 2 chunks/);
    a.chunks = [0, 0];
    rejects(s.build().image, /\/a: chunk 1 is 4096 bytes, but chunk 0 it refers to holds 16384/);
    a.chunks = [0, 7];
    rejects(s.build().image, /\/a: chunk 1 refers to chunk 7, but the image has 3/);
  });

  it('rejects blob tables that disagree with the chunks', () => {
    const { image } = tiny().build();
    rejects(
      { ...image, blobs: [{ ...image.blobs[0]!, chunkCount: 9 }] },
      /blob 0: chunk count 9, but the chunk table has 3/,
    );
    rejects({ ...image, blobs: [{ ...image.blobs[0]!, digest: 'sha256:xyz' }] }, /blob 0: digest/);
    rejects(
      { ...image, blobs: [{ ...image.blobs[0]!, uncompressedSize: 100, compressedSize: 100 }] },
      /not a multiple of 4096/,
    );
  });

  it('rejects bad names, modes, hard-linked directories and unknown prefetch paths', () => {
    const s = tiny();
    s.root.children.set('a/b', newDirectory());
    rejects(s.build().image, /must not be \. or \.\., nor contain '\/'/);
    const t = tiny();
    t.root.children.set('n'.repeat(256), newDirectory());
    rejects(t.build().image, /1 to 255 bytes \(it has 256\)/);
    const u = tiny();
    const d = u.dir('/d');
    u.add('/e/d2', d);
    rejects(u.build().image, /appears a second time/);
    const v = tiny();
    v.file('/m', Buffer.from('m'), { mode: 0o100644 });
    rejects(v.build().image, /\/m: mode 0o100644 has bits outside 0o7777/);
    rejects(tiny().build(['/nope']).image, /prefetch path "\/nope" is not in the image/);
    const deep = tiny();
    const deepPath = `/${Array.from({ length: 17 }, (_, i) => String(i).padEnd(255, 'd')).join('/')}`;
    deep.file(deepPath, Buffer.from('deep'));
    rejects(deep.build([deepPath]).image, /is longer than 4095 bytes/);
    const w = tiny();
    w.symlink('/s', '');
    rejects(w.build().image, /symlink target must be 1 to 4095 bytes/);
  });
});
