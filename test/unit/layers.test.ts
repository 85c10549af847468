import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import type { DirectoryNode, FileNode, TreeNode } from '../../src/image/format/index.js';
import {
  applyLayer,
  type FileContentSink,
  LayerFormatError,
  type LayerFormatErrorCode,
  LayerSinkError,
  type LayerTree,
  mergeLayers,
  openLayerStream,
  readLayer,
  UnsupportedLayerError,
} from '../../src/image/layers/index.js';
import { applyLayersToDirectory, describeNode, describeTree } from '../helpers/layer-reference.js';

// ---------------------------------------------------------------------------------------------
// Building tars: tar-stream for ordinary entries, raw blocks for what tar-stream cannot write
// (GNU long names, binary PAX values, base-256 numbers, odd typeflags, broken headers).

type PackEntry = Partial<tarStream.Header> & {
  name: string;
  content?: Buffer | string;
  pax?: Record<string, string>;
};

async function packTar(entries: PackEntry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const { content, ...header } of entries) {
    const full = { mtime: new Date(0), mode: header.type === 'directory' ? 0o755 : 0o644, ...header };
    await new Promise<void>((resolve, reject) => {
      pack.entry(full, content ?? '', (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

interface RawHeader {
  name: string | Buffer;
  type: string;
  size?: number;
  mode?: number;
  uid?: number | Buffer;
  gid?: number;
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  format?: 'ustar' | 'gnu' | 'v7';
  corruptChecksum?: boolean;
}

function octal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, 'latin1');
}

function rawHeader(h: RawHeader): Buffer {
  const block = Buffer.alloc(512);
  (typeof h.name === 'string' ? Buffer.from(h.name) : h.name).copy(block, 0, 0, 100);
  octal(block, 100, 8, h.mode ?? 0o644);
  if (Buffer.isBuffer(h.uid)) h.uid.copy(block, 108);
  else octal(block, 108, 8, h.uid ?? 0);
  octal(block, 116, 8, h.gid ?? 0);
  octal(block, 124, 12, h.size ?? 0);
  octal(block, 136, 12, h.mtime ?? 0);
  block.write(h.type, 156, 'latin1');
  if (h.linkname) block.write(h.linkname, 157);
  if (h.format === 'gnu') block.write('ustar  \0', 257, 'latin1');
  else if (h.format !== 'v7') block.write('ustar\x0000', 257, 'latin1');
  octal(block, 329, 8, h.devmajor ?? 0);
  octal(block, 337, 8, h.devminor ?? 0);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  octal(block, 148, 7, h.corruptChecksum ? sum + 1 : sum);
  return block;
}

function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

function rawEntry(h: RawHeader, data: Buffer | string = Buffer.alloc(0)): Buffer {
  const bytes = Buffer.from(data);
  return Buffer.concat([rawHeader({ size: bytes.length, ...h }), padded(bytes)]);
}

function paxRecord(key: string, value: Buffer | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

function paxEntry(records: Array<[string, Buffer | string]>, type = 'x'): Buffer {
  return rawEntry(
    { name: 'PaxHeader', type },
    Buffer.concat(records.map(([key, value]) => paxRecord(key, value))),
  );
}

function gnuLong(type: 'L' | 'K', name: string): Buffer {
  return rawEntry({ name: '././@LongLink', type, format: 'gnu' }, Buffer.from(`${name}\0`));
}

const END = Buffer.alloc(1024);

function tarOf(...parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, END]);
}

// ---------------------------------------------------------------------------------------------
// Reading and inspecting.

interface RecordedFile {
  size: number;
  bytes: number;
  sha256: string;
}

/** A sink that hashes each file and returns one chunk index per file: its index in `files`. */
function recordingSink() {
  const files: RecordedFile[] = [];
  const sink: FileContentSink = async (content, size) => {
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of content) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    files.push({ size, bytes, sha256: hash.digest('hex') });
    return [files.length - 1];
  };
  const digestOf = (file: FileNode) => files[file.chunks[0]!]!.sha256;
  return { sink, files, digestOf };
}

/** Splits a buffer into small pieces so reads cross chunk boundaries everywhere. */
function streamOf(bytes: Buffer, pieceSize = 0): Readable {
  if (pieceSize === 0) return Readable.from([bytes]);
  const pieces: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += pieceSize) pieces.push(bytes.subarray(at, at + pieceSize));
  return Readable.from(pieces);
}

async function read(tar: Buffer, sink: FileContentSink = recordingSink().sink): Promise<LayerTree> {
  return readLayer(streamOf(tar, 333), sink);
}

async function merge(...tars: Buffer[]): Promise<DirectoryNode> {
  const layers: LayerTree[] = [];
  for (const tar of tars) layers.push(await read(tar));
  return mergeLayers(layers);
}

function nodeAt(root: DirectoryNode, path: string): TreeNode | undefined {
  let node: TreeNode | undefined = root;
  for (const name of path.split('/')) {
    if (node?.kind !== 'directory') return undefined;
    node = node.children.get(name);
  }
  return node;
}

function listing(root: DirectoryNode): string[] {
  return describeNode(root, { mtimes: false, xattrs: false });
}

async function rejectsWith(
  promise: Promise<unknown>,
  code: LayerFormatErrorCode,
  message: RegExp,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof LayerFormatError, `expected LayerFormatError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

function throwsWith(action: () => unknown, code: LayerFormatErrorCode, message: RegExp): void {
  assert.throws(action, (err: unknown) => {
    assert.ok(err instanceof LayerFormatError, `expected LayerFormatError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------

describe('readLayer: entries and attributes', () => {
  it('builds the tree and streams every regular file to the sink', async () => {
    const big = randomBytes(3 * 1024 * 1024 + 17);
    const tar = await packTar([
      { name: './etc/', type: 'directory', mode: 0o755 },
      { name: './etc/hostname', content: 'box\n' },
      { name: 'usr//bin/', type: 'directory' },
      { name: 'usr/bin/big', content: big, mode: 0o755 },
      { name: 'usr/bin/empty', content: '' },
      { name: 'usr/bin/sh', type: 'symlink', linkname: '/bin/bash' },
    ]);
    const { sink, files, digestOf } = recordingSink();
    const layer = await read(tar, sink);
    const root = mergeLayers([layer]);
    assert.deepEqual(listing(root), [
      'etc directory 0755 0:0',
      'etc/hostname file 0644 0:0 size=4',
      'usr directory 0755 0:0',
      'usr/bin directory 0755 0:0',
      'usr/bin/big file 0755 0:0 size=3145745',
      'usr/bin/empty file 0644 0:0 size=0',
      'usr/bin/sh symlink - 0:0 -> "/bin/bash"',
    ]);
    assert.deepEqual(
      files.map((file) => [file.size, file.bytes]),
      [
        [4, 4],
        [big.length, big.length],
        [0, 0],
      ],
    );
    assert.equal(
      digestOf(nodeAt(root, 'usr/bin/big') as FileNode),
      createHash('sha256').update(big).digest('hex'),
    );
    assert.deepEqual((nodeAt(root, 'etc/hostname') as FileNode).chunks, [0]);
    assert.equal(layer.stats.regularFiles, 3);
    assert.equal(layer.stats.contentBytes, big.length + 4);
  });

  it('keeps modes, owners, mtimes with nanoseconds and xattrs from PAX records', async () => {
    const capability = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0xff, 0x00, 0x00, 0xc3]);
    const tar = tarOf(
      paxEntry([
        ['mtime', '1234.5678'],
        ['uid', '3000000'],
        ['gid', '4000000'],
        ['SCHILY.xattr.security.capability', capability],
        ['SCHILY.xattr.user.empty', ''],
        ['LIBARCHIVE.xattr.user.%C3%A9t%C3%A9', Buffer.from('summer').toString('base64')],
        ['LIBARCHIVE.xattr.security.capability', Buffer.from('ignored').toString('base64')],
      ]),
      rawEntry({ name: 'bin/ping', type: '0', mode: 0o104755, uid: 1, gid: 2, mtime: 99 }, 'ping'),
      paxEntry([['mtime', '-1.25']]),
      rawEntry({ name: 'old', type: '0', mode: 0o2711 }),
      rawEntry({ name: 'tmp/', type: '5', mode: 0o1777, uid: 5, gid: 6, mtime: 1_700_000_000 }),
      rawEntry({ name: 'big-uid', type: '0', uid: Buffer.from([0x80, 0, 0, 0, 0x80, 0, 0, 0]) }),
    );
    const root = await merge(tar);
    const ping = nodeAt(root, 'bin/ping') as FileNode;
    assert.equal(ping.mode, 0o4755);
    assert.deepEqual(
      [ping.uid, ping.gid, ping.mtimeSec, ping.mtimeNsec],
      [3_000_000, 4_000_000, 1234, 567_800_000],
    );
    assert.deepEqual(ping.xattrs.get('security.capability'), capability);
    assert.deepEqual(ping.xattrs.get('user.empty'), Buffer.alloc(0));
    assert.equal(ping.xattrs.get('user.été')?.toString(), 'summer');
    const old = nodeAt(root, 'old') as FileNode;
    assert.deepEqual([old.mode, old.mtimeSec, old.mtimeNsec], [0o2711, -2, 750_000_000]);
    const tmp = nodeAt(root, 'tmp') as DirectoryNode;
    assert.deepEqual([tmp.mode, tmp.uid, tmp.gid, tmp.mtimeSec], [0o1777, 5, 6, 1_700_000_000]);
    assert.equal(nodeAt(root, 'big-uid')?.uid, 2 ** 31);
  });

  it('reads every entry type, skips unknown ones and counts them', async () => {
    const tar = tarOf(
      rawEntry({ name: 'reg0', type: '0' }, 'zero'),
      rawEntry({ name: 'regnul', type: '\0' }, 'nul'),
      rawEntry({ name: 'contiguous', type: '7' }, 'seven'),
      rawEntry({ name: 'olddir/', type: '\0', format: 'v7' }),
      rawEntry({ name: 'hard', type: '1', linkname: 'reg0' }),
      rawEntry({ name: 'soft', type: '2', linkname: 'reg0' }),
      rawEntry({ name: 'null', type: '3', mode: 0o666, devmajor: 1, devminor: 3 }),
      rawEntry({ name: 'sda', type: '4', mode: 0o660, devmajor: 8, devminor: 1 }),
      rawEntry({ name: 'dir', type: '5', size: 4096 }, ''),
      rawEntry({ name: 'pipe', type: '6' }),
      rawEntry({ name: 'label', type: 'V' }, 'volume label data'),
      rawEntry({ name: 'dumpdir', type: 'D' }, 'x'.repeat(700)),
      paxEntry([['path', 'should-not-apply']], 'g'),
      rawEntry({ name: 'after', type: '0' }, 'still in sync'),
    );
    const layer = await read(tar);
    const root = mergeLayers([layer]);
    assert.deepEqual(listing(root), [
      'after file 0644 0:0 size=13',
      'contiguous file 0644 0:0 size=5',
      'dir directory 0644 0:0',
      'hard file 0644 0:0 size=4 hardlink=hard',
      'null char 0666 0:0 rdev=1:3',
      'olddir directory 0644 0:0',
      'pipe fifo 0644 0:0',
      'reg0 file 0644 0:0 size=4 hardlink=hard',
      'regnul file 0644 0:0 size=3',
      'sda block 0660 0:0 rdev=8:1',
      'soft symlink - 0:0 -> "reg0"',
    ]);
    assert.deepEqual(layer.stats.skipped, { 'typeflag V': 1, 'typeflag D': 1 });
  });

  it('reads long names and link names from PAX and GNU headers', async () => {
    const longDir = `${'d'.repeat(200)}/${'e'.repeat(200)}`;
    const ustarSplit = `${'p'.repeat(90)}/${'q'.repeat(90)}`;
    const tar = tarOf(
      paxEntry([['path', `${longDir}/pax-file`]]),
      rawEntry({ name: 'short', type: '0' }, 'pax'),
      paxEntry([
        ['path', `${longDir}/pax-link`],
        ['linkpath', `${longDir}/pax-file`],
      ]),
      rawEntry({ name: 'short', type: '2' }),
      gnuLong('L', `${longDir}/gnu-file`),
      rawEntry({ name: 'trunc', type: '0', format: 'gnu' }, 'gnu'),
      gnuLong('L', `${longDir}/gnu-hardlink`),
      gnuLong('K', `${longDir}/gnu-file`),
      rawEntry({ name: 'x', type: '1', linkname: 'y', format: 'gnu' }),
      paxEntry([['size', '5']]),
      rawEntry({ name: 'sized-by-pax', type: '0', size: 0 }),
      Buffer.from(padded(Buffer.from('12345'))),
    );
    const withSplit = await packTar([{ name: ustarSplit, content: 'split' }]);
    const root = await merge(tar, withSplit);
    assert.equal((nodeAt(root, `${longDir}/pax-file`) as FileNode).size, 3);
    assert.equal((nodeAt(root, `${longDir}/pax-link`) as { target: string }).target, `${longDir}/pax-file`);
    assert.equal((nodeAt(root, `${longDir}/gnu-file`) as FileNode).size, 3);
    assert.equal(nodeAt(root, `${longDir}/gnu-hardlink`), nodeAt(root, `${longDir}/gnu-file`));
    assert.equal((nodeAt(root, 'sized-by-pax') as FileNode).size, 5);
    assert.equal((nodeAt(root, ustarSplit) as FileNode).size, 5);
  });

  it('reads sizes beyond the octal field (base-256 and PAX) without buffering the file', async () => {
    const huge = 2 ** 34;
    const base256Size = Buffer.alloc(12);
    base256Size[0] = 0x80;
    base256Size.writeUIntBE(huge, 6, 6);
    const header = rawHeader({ name: 'huge', type: '0' });
    base256Size.copy(header, 124);
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\0`, 148, 'latin1');
    const sizes: number[] = [];
    const sink: FileContentSink = async (content, size) => {
      sizes.push(size);
      for await (const _ of content);
      return [];
    };
    const truncated = Buffer.concat([header, Buffer.alloc(4096)]);
    await rejectsWith(readLayer(streamOf(truncated), sink), 'ETRUNCATED', /data is incomplete/);
    const viaPax = Buffer.concat([
      paxEntry([['size', String(huge)]]),
      rawHeader({ name: 'huge', type: '0' }),
      Buffer.alloc(4096),
    ]);
    await rejectsWith(readLayer(streamOf(viaPax), sink), 'ETRUNCATED', /data is incomplete/);
    assert.deepEqual(sizes, [huge, huge]);
  });

  it('creates implied parents as 0755 root directories and keeps them when their entry comes later', async () => {
    const tar = await packTar([
      { name: 'a/b/c/file', content: 'x' },
      { name: 'a/', type: 'directory', mode: 0o700, uid: 9, gid: 9, mtime: new Date(5000) },
    ]);
    const root = await merge(tar);
    assert.deepEqual(describeNode(root, { xattrs: false }), [
      'a directory 0700 9:9 mtime=5.000000000',
      'a/b directory 0755 0:0 mtime=0.000000000',
      'a/b/c directory 0755 0:0 mtime=0.000000000',
      'a/b/c/file file 0644 0:0 size=1 mtime=0.000000000',
    ]);
  });

  it('gives implied directories the group of a setgid parent, as the parent was at that point', async () => {
    const lower = await packTar([
      { name: 'mail/', type: 'directory', mode: 0o2775, gid: 8 },
      { name: 'plain/', type: 'directory', mode: 0o755, gid: 9 },
    ]);
    const upper = await packTar([
      { name: 'mail/a/x', content: 'x' }, // the lower setgid parent
      { name: 'plain/', type: 'directory', mode: 0o2755, gid: 7 },
      { name: 'plain/b/x', content: 'x' }, // the parent, declared setgid before
      { name: 'mail/c/x', content: 'x' }, // still the lower setgid parent: its entry comes later
      { name: 'mail/', type: 'directory', mode: 0o755, gid: 5 },
      { name: 'mail/d/x', content: 'x' }, // no longer setgid
    ]);
    const root = await merge(lower, upper);
    const group = (path: string) => [(nodeAt(root, path) as DirectoryNode).mode, nodeAt(root, path)?.gid];
    assert.deepEqual(group('mail/a'), [0o755, 8]);
    assert.deepEqual(group('plain/b'), [0o755, 7]);
    assert.deepEqual(group('mail/c'), [0o755, 8]);
    assert.deepEqual(group('mail/d'), [0o755, 0]);
  });

  it('ignores entries naming the root', async () => {
    const tar = await packTar([
      { name: './', type: 'directory', mode: 0o700 },
      { name: '.', type: 'directory', mode: 0o700 },
      { name: 'f', content: 'x' },
    ]);
    const layer = await read(tar);
    const root = mergeLayers([layer]);
    assert.equal(root.mode, 0o755);
    assert.deepEqual(layer.stats.skipped, { root: 2 });
    assert.deepEqual(listing(root), ['f file 0644 0:0 size=1']);
  });

  it('accepts one zero block as the end, ignores and counts bytes after the end marker', async () => {
    const entry = rawEntry({ name: 'f', type: '0' }, 'x');
    const one = await read(Buffer.concat([entry, Buffer.alloc(512)]));
    assert.equal(one.stats.entries, 1);
    const trailing = await read(Buffer.concat([entry, END, Buffer.alloc(9216), Buffer.from('junk')]));
    assert.equal(trailing.stats.trailingBytes, 9216 + 4);
    const globalLast = await read(tarOf(entry, paxEntry([['comment', 'git archive']], 'g')));
    assert.equal(globalLast.stats.entries, 1);
  });
});

describe('applyLayer: whiteouts, opaque directories, replacement', () => {
  it('applies three layers with OCI semantics', async () => {
    const layer1 = await packTar([
      { name: 'd/', type: 'directory' },
      { name: 'd/f1', content: 'f1' },
      { name: 'd/sub/', type: 'directory' },
      { name: 'd/sub/g', content: 'g' },
      { name: 'x', content: 'x' },
      { name: 'y/', type: 'directory' },
      { name: 'y/z', content: 'z' },
      { name: 'r', content: 'r' },
      { name: 's/', type: 'directory' },
      { name: 's/t', content: 't' },
      { name: 'o/', type: 'directory' },
      { name: 'o/o1', content: '1' },
      { name: 'o/o2/', type: 'directory' },
      { name: 'o/o2/deep', content: '2' },
      { name: 'keep', content: 'k' },
      { name: 'm/', type: 'directory', mode: 0o700 },
      { name: 'm/lower', content: 'lower' },
    ]);
    const layer2 = await packTar([
      { name: '.wh.x', content: '' }, // file deleted
      { name: '.wh.y', content: '' }, // directory deleted with its subtree
      { name: 'd/.wh.sub', content: '' },
      { name: 'o/new', content: 'new' }, // opaque marker after the entries it must not hide
      { name: 'o/.wh..wh..opq', content: '' },
      { name: 'r/', type: 'directory' }, // file replaced by a directory
      { name: 'r/inner', content: 'inner' },
      { name: 's', content: 'now a file' }, // directory replaced by a file
      { name: '.wh.ghost', content: '' }, // deleting nothing is a no-op
      { name: 'm/', type: 'directory', mode: 0o750, uid: 3 }, // directory over directory merges
      { name: 'm/upper', content: 'upper' },
    ]);
    const layer3 = await packTar([
      { name: 'x', content: 'x again' }, // re-created after deletion
      { name: 'y/', type: 'directory', mode: 0o711 },
      { name: 'y/new', content: 'new' },
      { name: 'r', content: 'file again' }, // directory replaced by a file
      { name: 'o/.wh.new', content: '' },
      { name: 'd/.wh..wh..opq', content: '' }, // opaque with nothing refilled
      { name: '.wh.m', content: '' },
      { name: 'm/', type: 'directory' }, // deleted and re-created in the same layer
      { name: 'm/fresh', content: 'fresh' },
    ]);

    assert.deepEqual(listing(await merge(layer1, layer2)), [
      'd directory 0755 0:0',
      'd/f1 file 0644 0:0 size=2',
      'keep file 0644 0:0 size=1',
      'm directory 0750 3:0',
      'm/lower file 0644 0:0 size=5',
      'm/upper file 0644 0:0 size=5',
      'o directory 0755 0:0',
      'o/new file 0644 0:0 size=3',
      'r directory 0755 0:0',
      'r/inner file 0644 0:0 size=5',
      's file 0644 0:0 size=10',
    ]);
    assert.deepEqual(listing(await merge(layer1, layer2, layer3)), [
      'd directory 0755 0:0',
      'keep file 0644 0:0 size=1',
      'm directory 0755 0:0',
      'm/fresh file 0644 0:0 size=5',
      'o directory 0755 0:0',
      'r file 0644 0:0 size=10',
      's file 0644 0:0 size=10',
      'x file 0644 0:0 size=7',
      'y directory 0711 0:0',
      'y/new file 0644 0:0 size=3',
    ]);
  });

  it('applies the opaque marker first wherever it sits (the OCI spec example)', async () => {
    const base = await packTar([{ name: 'a/b/c/bar', content: 'bar' }]);
    const markerFirst = await packTar([
      { name: 'a/', type: 'directory' },
      { name: 'a/.wh..wh..opq', content: '' },
      { name: 'a/b/', type: 'directory' },
      { name: 'a/b/c/', type: 'directory' },
      { name: 'a/b/c/foo', content: 'foo' },
    ]);
    const markerLast = await packTar([
      { name: 'a/', type: 'directory' },
      { name: 'a/b/', type: 'directory' },
      { name: 'a/b/c/', type: 'directory' },
      { name: 'a/b/c/foo', content: 'foo' },
      { name: 'a/.wh..wh..opq', content: '' },
    ]);
    const expected = [
      'a directory 0755 0:0',
      'a/b directory 0755 0:0',
      'a/b/c directory 0755 0:0',
      'a/b/c/foo file 0644 0:0 size=3',
    ];
    assert.deepEqual(listing(await merge(base, markerFirst)), expected);
    assert.deepEqual(listing(await merge(base, markerLast)), expected);
  });

  it('a whiteout and an entry of the same name in one layer: the entry replaces the lower one', async () => {
    const base = await packTar([{ name: 'p/old', content: 'old' }]);
    const upper = await packTar([
      { name: 'p/', type: 'directory' },
      { name: 'p/new', content: 'new' },
      { name: '.wh.p', content: '' },
    ]);
    assert.deepEqual(listing(await merge(base, upper)), [
      'p directory 0755 0:0',
      'p/new file 0644 0:0 size=3',
    ]);
  });

  it('a later entry of the same layer wins; a directory replacing a file of its layer hides the lower one', async () => {
    const base = await packTar([{ name: 'p/old', content: 'old' }]);
    const upper = await packTar([
      { name: 'p', content: 'file first' },
      { name: 'p/', type: 'directory', mode: 0o700 },
      { name: 'p/new', content: 'new' },
      { name: 'q/', type: 'directory' },
      { name: 'q/child', content: 'c' },
      { name: 'q', content: 'file wins' },
    ]);
    assert.deepEqual(listing(await merge(base, upper)), [
      'p directory 0700 0:0',
      'p/new file 0644 0:0 size=3',
      'q file 0644 0:0 size=9',
    ]);
  });

  it('a directory entry over a directory takes its attributes and sets its xattrs key by key', async () => {
    const base = await packTar([
      {
        name: 'd/',
        type: 'directory',
        pax: { 'SCHILY.xattr.user.a': 'lower', 'SCHILY.xattr.user.b': 'kept' },
      },
    ]);
    const upper = await packTar([
      {
        name: 'd/',
        type: 'directory',
        mode: 0o711,
        uid: 4,
        gid: 5,
        mtime: new Date(7000),
        pax: { 'SCHILY.xattr.user.a': 'upper' },
      },
    ]);
    const d = nodeAt(await merge(base, upper), 'd') as DirectoryNode;
    assert.deepEqual([d.mode, d.uid, d.gid, d.mtimeSec], [0o711, 4, 5, 7]);
    assert.equal(d.xattrs.get('user.a')?.toString(), 'upper');
    assert.equal(d.xattrs.get('user.b')?.toString(), 'kept');
  });

  it('never emits whiteout entries, nor directories that only held markers for nothing', async () => {
    const root = await merge(
      await packTar([{ name: 'a/x', content: 'x' }]),
      await packTar([
        { name: 'a/.wh.x', content: '' },
        { name: 'a/.wh..wh..opq', content: '' },
        { name: 'b/.wh.nothing', content: '' },
        { name: 'c/d/.wh..wh..opq', content: '' },
      ]),
    );
    assert.deepEqual(listing(root), ['a directory 0755 0:0']);
  });

  it('whiting out a directory and entries inside it in one layer removes it, in either order', async () => {
    const base = await packTar([{ name: 'd/e/a', content: 'a' }]);
    for (const order of [
      ['d/e/.wh.a', 'd/.wh.e'],
      ['d/.wh.e', 'd/e/.wh.a'],
    ]) {
      const root = await merge(base, await packTar(order.map((name) => ({ name, content: '' }))));
      assert.deepEqual(listing(root), ['d directory 0755 0:0'], order.join(' '));
    }
  });
});

describe('hard links', () => {
  it('within a layer: the same node object, also through links, to symlinks and devices', async () => {
    const root = await merge(
      await packTar([
        { name: 'f', content: 'data' },
        { name: 'l1', type: 'link', linkname: 'f' },
        { name: 'l2', type: 'link', linkname: './l1' },
        { name: 's', type: 'symlink', linkname: 'f' },
        { name: 'ls', type: 'link', linkname: 's' },
        { name: 'p', type: 'fifo' },
        { name: 'lp', type: 'link', linkname: 'p' },
      ]),
    );
    assert.equal(nodeAt(root, 'l1'), nodeAt(root, 'f'));
    assert.equal(nodeAt(root, 'l2'), nodeAt(root, 'f'));
    assert.equal(nodeAt(root, 'ls'), nodeAt(root, 's'));
    assert.equal(nodeAt(root, 'lp'), nodeAt(root, 'p'));
  });

  it('across layers: the node of the lower layer, even through a link of the layer in between', async () => {
    const layer1 = await read(await packTar([{ name: 'f', content: 'data' }]));
    const layer2 = await read(await packTar([{ name: 'g', type: 'link', linkname: 'f' }]));
    const layer3 = await read(
      await packTar([
        { name: 'h', type: 'link', linkname: 'g' },
        { name: 'h2', type: 'link', linkname: 'h' },
      ]),
    );
    const original = (layer1.root.children.get('f') as { node: FileNode }).node;
    const root = mergeLayers([layer1, layer2, layer3]);
    for (const name of ['f', 'g', 'h', 'h2']) assert.equal(nodeAt(root, name), original, name);
    assert.equal(
      describeNode(root, { mtimes: false }).filter((line) => line.endsWith('hardlink=f')).length,
      4,
    );
  });

  it('a link entry sets its owner, mode and mtime on the shared node (as containerd does)', async () => {
    const root = await merge(
      await packTar([{ name: 'f', content: 'data', mode: 0o644, uid: 1, mtime: new Date(1000) }]),
      await packTar([
        { name: 'g', type: 'link', linkname: 'f', mode: 0o600, uid: 7, gid: 8, mtime: new Date(9000) },
      ]),
    );
    const f = nodeAt(root, 'f') as FileNode;
    assert.deepEqual([f.mode, f.uid, f.gid, f.mtimeSec], [0o600, 7, 8, 9]);
  });

  it('links to what the path held at that point of the archive', async () => {
    const root = await merge(
      await packTar([{ name: 'f', content: 'old' }]),
      await packTar([
        { name: 'g', type: 'link', linkname: 'f' },
        { name: 'f', content: 'new!' },
        { name: 'h', type: 'link', linkname: 'f' },
      ]),
    );
    assert.equal((nodeAt(root, 'g') as FileNode).size, 3);
    assert.equal((nodeAt(root, 'f') as FileNode).size, 4);
    assert.equal(nodeAt(root, 'h'), nodeAt(root, 'f'));
  });

  it('refuses links to missing targets and to directories', async () => {
    const missing = await read(await packTar([{ name: 'l', type: 'link', linkname: 'nowhere' }]));
    throwsWith(() => mergeLayers([missing]), 'ELINK', /"l".*"nowhere" does not exist/);
    await rejectsWith(
      read(
        await packTar([
          { name: 'd/', type: 'directory' },
          { name: 'l', type: 'link', linkname: 'd' },
        ]),
      ),
      'ELINK',
      /"d" is a directory/,
    );
    await rejectsWith(
      read(tarOf(rawEntry({ name: 'l', type: '1', linkname: '' }))),
      'ELINK',
      /"l" has no target/,
    );
    const lowerDir = await read(await packTar([{ name: 'd/x', content: 'x' }]));
    const linkToLowerDir = await read(await packTar([{ name: 'l', type: 'link', linkname: 'd' }]));
    throwsWith(() => mergeLayers([lowerDir, linkToLowerDir]), 'ELINK', /"d" is a directory/);
  });

  it('refuses a link to a lower file this layer whited out before the link', async () => {
    const lower = await packTar([{ name: 'f', content: 'x' }]);
    await rejectsWith(
      read(
        await packTar([
          { name: '.wh.f', content: '' },
          { name: 'g', type: 'link', linkname: 'f' },
        ]),
      ),
      'ELINK',
      /"f" does not exist/,
    );
    // After the link, the whiteout only removes the name.
    const root = await merge(
      lower,
      await packTar([
        { name: 'g', type: 'link', linkname: 'f' },
        { name: '.wh.f', content: '' },
      ]),
    );
    assert.deepEqual(listing(root), ['g file 0644 0:0 size=1']);
  });

  it('leaves the lower tree untouched when applyLayer fails', async () => {
    const root = await merge(await packTar([{ name: 'a/x', content: 'x' }]));
    const before = describeNode(root);
    const bad = await read(
      await packTar([
        { name: '.wh.a', content: '' },
        { name: 'new', content: 'n' },
        { name: 'l', type: 'link', linkname: 'missing' },
      ]),
    );
    throwsWith(() => applyLayer(root, bad), 'ELINK', /missing/);
    assert.deepEqual(describeNode(root), before);
  });
});

describe('readLayer: refusing unsafe or malformed input', () => {
  it('refuses ".." components and absolute paths', async () => {
    await rejectsWith(
      read(await packTar([{ name: '../evil', content: 'x' }])),
      'EPATH',
      /"\.\.\/evil".*"\.\."/,
    );
    await rejectsWith(
      read(await packTar([{ name: 'a/../../evil', content: 'x' }])),
      'EPATH',
      /a\/\.\.\/\.\.\/evil/,
    );
    await rejectsWith(
      read(await packTar([{ name: '/etc/passwd', content: 'x' }])),
      'EPATH',
      /"\/etc\/passwd" is an absolute/,
    );
    await rejectsWith(
      read(await packTar([{ name: 'ok', type: 'link', linkname: '../../etc/shadow' }])),
      'EPATH',
      /hard link target/,
    );
  });

  it('refuses names over 255 bytes and paths over 4096 bytes', async () => {
    await rejectsWith(
      read(await packTar([{ name: 'n'.repeat(256), content: 'x' }])),
      'ENAME_TOO_LONG',
      /255 bytes/,
    );
    const deep = Array.from({ length: 21 }, () => 'd'.repeat(200)).join('/');
    await rejectsWith(read(await packTar([{ name: deep, content: 'x' }])), 'ENAME_TOO_LONG', /4096 bytes/);
    await rejectsWith(
      read(await packTar([{ name: 's', type: 'symlink', linkname: 't'.repeat(4096) }])),
      'ENAME_TOO_LONG',
      /target longer than 4095/,
    );
  });

  it('refuses writing through a symlink of the same layer', async () => {
    await rejectsWith(
      read(
        await packTar([
          { name: 'a', type: 'symlink', linkname: '/etc' },
          { name: 'a/passwd', content: 'root::0:0::/:/bin/sh' },
        ]),
      ),
      'ESYMLINK_PARENT',
      /"a\/passwd": "a", written earlier in the same layer, is a symlink/,
    );
    await rejectsWith(
      read(
        await packTar([
          { name: 'a', type: 'symlink', linkname: '../../..' },
          { name: 'a/x', content: 'x' },
        ]),
      ),
      'ESYMLINK_PARENT',
      /"a\/x"/,
    );
    await rejectsWith(
      read(
        await packTar([
          { name: 'f', content: 'file' },
          { name: 'f/x', content: 'x' },
        ]),
      ),
      'ENOTDIR',
      /"f\/x": "f".*not a directory/,
    );
  });

  it('refuses writing through a symlink of a lower layer, unless the layer replaces it first', async () => {
    const lower = await packTar([
      { name: 'a', type: 'symlink', linkname: '/etc' },
      { name: 'b', type: 'symlink', linkname: '../../..' },
      { name: 'f', content: 'file' },
    ]);
    const cases: Array<[PackEntry[], LayerFormatErrorCode, RegExp]> = [
      [
        [{ name: 'a/passwd', content: 'x' }],
        'ESYMLINK_PARENT',
        /"a\/passwd": "a" is a symlink in the layers below/,
      ],
      [[{ name: 'b/x/y', content: 'x' }], 'ESYMLINK_PARENT', /"b\/x\/y": "b" is a symlink/],
      [[{ name: 'a/.wh.passwd', content: '' }], 'ESYMLINK_PARENT', /"a\/\.wh\.passwd"/],
      [
        [
          { name: 'a/x', content: 'x' },
          { name: 'a/', type: 'directory' },
        ],
        'ESYMLINK_PARENT',
        /"a\/x"/,
      ],
      [[{ name: 'f/x', content: 'x' }], 'ENOTDIR', /"f\/x": "f" is not a directory/],
      [[{ name: 'l', type: 'link', linkname: 'a/passwd' }], 'ESYMLINK_PARENT', /"l": "a" is a symlink/],
    ];
    for (const [entries, code, message] of cases) {
      const layers = [await read(lower), await read(await packTar(entries))];
      throwsWith(() => mergeLayers(layers), code, message);
    }
    const replaced = await merge(
      lower,
      await packTar([
        { name: 'a/', type: 'directory' },
        { name: 'a/passwd', content: 'x' },
        { name: '.wh.b', content: '' },
        { name: 'b/x', content: 'x' },
      ]),
    );
    assert.deepEqual(listing(replaced), [
      'a directory 0755 0:0',
      'a/passwd file 0644 0:0 size=1',
      'b directory 0755 0:0',
      'b/x file 0644 0:0 size=1',
      'f file 0644 0:0 size=4',
    ]);
  });

  it('refuses whiteouts that name nothing and entries below whiteout names', async () => {
    for (const name of ['.wh.', 'd/.wh..', 'd/.wh...']) {
      await rejectsWith(read(await packTar([{ name, content: '' }])), 'EWHITEOUT', /names no entry/);
    }
    await rejectsWith(
      read(await packTar([{ name: '.wh.x/y', content: '' }])),
      'EWHITEOUT',
      /below a whiteout/,
    );
  });

  it('refuses oversized PAX and GNU headers before reading them', async () => {
    const huge = tarOf(
      paxEntry([['comment', 'c'.repeat(2 * 1024 * 1024)]]),
      rawEntry({ name: 'f', type: '0' }),
    );
    await rejectsWith(
      read(huge),
      'EHEADER_TOO_LARGE',
      /PAX header at byte 0 is 2097\d{3} bytes \(limit 1048576\)/,
    );
    const small = tarOf(gnuLong('L', 'x'.repeat(3000)), rawEntry({ name: 'f', type: '0' }));
    await rejectsWith(
      readLayer(streamOf(small), recordingSink().sink, { limits: { maxMetaHeaderBytes: 2048 } }),
      'EHEADER_TOO_LARGE',
      /GNU long name/,
    );
  });

  it('refuses truncated tars wherever they stop', async () => {
    const tar = await packTar([
      { name: 'a', content: 'x'.repeat(2000) },
      { name: 'b', content: 'y' },
    ]);
    await rejectsWith(read(tar.subarray(0, 1200)), 'ETRUNCATED', /data is incomplete/);
    await rejectsWith(read(tar.subarray(0, 2560 + 100)), 'ETRUNCATED', /in the middle of a header/);
    await rejectsWith(read(tar.subarray(0, 3584)), 'ETRUNCATED', /no end-of-archive marker/);
    await rejectsWith(read(Buffer.alloc(0)), 'ETRUNCATED', /no end-of-archive marker/);
    await rejectsWith(read(paxEntry([['path', 'x']])), 'ETRUNCATED', /extended header with no entry/);
  });

  it('refuses malformed headers and records', async () => {
    const cases: Array<[Buffer, LayerFormatErrorCode, RegExp]> = [
      [tarOf(rawEntry({ name: 'f', type: '0', corruptChecksum: true })), 'EHEADER', /checksum mismatch/],
      [tarOf(Buffer.from(padded(Buffer.from('5 a\n')))), 'EHEADER', /checksum/],
      [
        tarOf(rawEntry({ name: 'PaxHeader', type: 'x' }, '7 a=b\n'), rawEntry({ name: 'f', type: '0' })),
        'EHEADER',
        /newline|range/,
      ],
      [
        tarOf(rawEntry({ name: 'PaxHeader', type: 'x' }, '6 ab\n\n'), rawEntry({ name: 'f', type: '0' })),
        'EHEADER',
        /no key/,
      ],
      [tarOf(paxEntry([['mtime', '12a']]), rawEntry({ name: 'f', type: '0' })), 'EHEADER', /bad PAX mtime/],
      [
        tarOf(paxEntry([['uid', '99999999999']]), rawEntry({ name: 'f', type: '0' })),
        'EATTRIBUTE',
        /uid\/gid/,
      ],
      [tarOf(rawEntry({ name: Buffer.from([0x61, 0xff, 0x62]), type: '0' })), 'EHEADER', /not valid UTF-8/],
      [
        Buffer.concat([Buffer.alloc(512), rawEntry({ name: 'f', type: '0' })]),
        'EHEADER',
        /zero block at byte 0 is followed/,
      ],
      [tarOf(rawEntry({ name: 'sparse', type: 'S' })), 'EUNSUPPORTED_ENTRY', /sparse/],
      [
        tarOf(paxEntry([['GNU.sparse.major', '1']]), rawEntry({ name: 'f', type: '0' })),
        'EUNSUPPORTED_ENTRY',
        /sparse/,
      ],
      [tarOf(rawEntry({ name: 's', type: '2' })), 'EATTRIBUTE', /empty target/],
      [
        tarOf(paxEntry([['SCHILY.xattr.user.big', Buffer.alloc(65537)]]), rawEntry({ name: 'f', type: '0' })),
        'ELIMIT',
        /xattr user.big/,
      ],
      [tarOf(paxEntry([['path', 'x']]), END), 'EHEADER', /extended header ends the archive/],
    ];
    for (const [tar, code, message] of cases) await rejectsWith(read(tar), code, message);
  });

  it('refuses more entries than the limit', async () => {
    const tar = await packTar([
      { name: 'a', content: '' },
      { name: 'b', content: '' },
      { name: 'c', content: '' },
    ]);
    await rejectsWith(
      readLayer(streamOf(tar), recordingSink().sink, { limits: { maxEntries: 2 } }),
      'ELIMIT',
      /more than 2 entries/,
    );
  });
});

describe('readLayer: the content sink, backpressure and cancellation', () => {
  it('rejects with the error of a failing sink', async () => {
    const failure = new Error('chunker exploded');
    const tar = await packTar([{ name: 'f', content: 'x'.repeat(100_000) }]);
    await assert.rejects(
      readLayer(streamOf(tar), async () => {
        throw failure;
      }),
      (err) => err === failure,
    );
  });

  it('rejects when the sink resolves without reading the content', async () => {
    const tar = await packTar([{ name: 'f', content: 'abc' }]);
    await assert.rejects(
      readLayer(streamOf(tar), async () => [0]),
      (err) => err instanceof LayerSinkError && /"f" to its end/.test(err.message),
    );
  });

  it('reports truncation inside a file, not the sink error it caused', async () => {
    const tar = await packTar([{ name: 'f', content: 'x'.repeat(100_000) }]);
    await rejectsWith(read(tar.subarray(0, 50_000)), 'ETRUNCATED', /data is incomplete/);
  });

  it('pulls from the layer stream only as fast as the sink consumes', async () => {
    const size = 16 * 1024 * 1024;
    const tar = await packTar([{ name: 'big', content: Buffer.alloc(size, 1) }]);
    let pulled = 0;
    let at = 0;
    const source = new Readable({
      read() {
        const piece = tar.subarray(at, at + 64 * 1024);
        at += piece.length;
        pulled += piece.length;
        this.push(piece.length > 0 ? piece : null);
      },
    });
    let consumed = 0;
    let maxAhead = 0;
    await readLayer(source, async (content) => {
      for await (const chunk of content) {
        consumed += (chunk as Buffer).length;
        maxAhead = Math.max(maxAhead, pulled - consumed);
        await new Promise((resolve) => setImmediate(resolve));
      }
      return [];
    });
    assert.equal(consumed, size);
    assert.ok(maxAhead < 1024 * 1024, `read ${maxAhead} bytes ahead of the sink`);
  });

  it('stops with the signal reason when aborted, also in the middle of a file', async () => {
    const tar = await packTar([{ name: 'big', content: Buffer.alloc(4 * 1024 * 1024) }]);
    const controller = new AbortController();
    await assert.rejects(
      readLayer(
        streamOf(tar, 65536),
        async (content) => {
          for await (const _ of content) controller.abort();
          return [];
        },
        { signal: controller.signal },
      ),
      (err) => (err as Error).name === 'AbortError',
    );
    await assert.rejects(
      readLayer(streamOf(tar), recordingSink().sink, { signal: AbortSignal.abort() }),
      (err) => (err as Error).name === 'AbortError',
    );
  });
});

describe('openLayerStream', () => {
  const tarPromise = packTar([{ name: 'hello', content: 'world' }]);

  async function filesIn(blob: Buffer, mediaType: string): Promise<string[]> {
    return listing(
      mergeLayers([await readLayer(openLayerStream(streamOf(blob, 100), mediaType), recordingSink().sink)]),
    );
  }

  it('reads plain and gzip layers, by media type or by magic', async () => {
    const tar = await tarPromise;
    const gz = gzipSync(tar);
    const expected = ['hello file 0644 0:0 size=5'];
    assert.deepEqual(await filesIn(tar, 'application/vnd.oci.image.layer.v1.tar'), expected);
    assert.deepEqual(await filesIn(gz, 'application/vnd.oci.image.layer.v1.tar+gzip'), expected);
    assert.deepEqual(await filesIn(gz, 'application/vnd.docker.image.rootfs.diff.tar.gzip'), expected);
    assert.deepEqual(await filesIn(gz, ''), expected);
    assert.deepEqual(await filesIn(tar, ''), expected);
    assert.deepEqual(await filesIn(gz, 'application/vnd.oci.image.layer.v1.tar'), expected); // as containerd
  });

  it('refuses zstd and unknown media types', async () => {
    assert.throws(
      () => openLayerStream(streamOf(Buffer.alloc(10)), 'application/vnd.oci.image.layer.v1.tar+zstd'),
      (err) => err instanceof UnsupportedLayerError && err.code === 'ECOMPRESSION_UNSUPPORTED',
    );
    assert.throws(
      () => openLayerStream(streamOf(Buffer.alloc(10)), 'application/vnd.oci.image.config.v1+json'),
      (err) =>
        err instanceof UnsupportedLayerError &&
        err.code === 'EMEDIATYPE' &&
        /config\.v1\+json/.test(err.message),
    );
    const zstdMagic = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(100)]);
    await assert.rejects(
      readLayer(openLayerStream(streamOf(zstdMagic), ''), recordingSink().sink),
      (err) => err instanceof UnsupportedLayerError && err.code === 'ECOMPRESSION_UNSUPPORTED',
    );
  });

  it('refuses bad, truncated and corrupt gzip', async () => {
    const tar = await packTar([{ name: 'f', content: randomBytes(200_000) }]);
    const gz = gzipSync(tar);
    const type = 'application/vnd.oci.image.layer.v1.tar+gzip';
    const open = (blob: Buffer) =>
      readLayer(openLayerStream(streamOf(blob, 4096), type), recordingSink().sink);
    await rejectsWith(open(tar), 'ECOMPRESSION', /says gzip but the blob is not gzip/);
    await rejectsWith(
      open(gz.subarray(0, gz.length - 100)),
      'ETRUNCATED',
      /gzip stream of the layer ends early/,
    );
    await rejectsWith(open(gz.subarray(0, gz.length - 4)), 'ETRUNCATED', /gzip/);
    await rejectsWith(open(Buffer.concat([gz, Buffer.from('garbage')])), 'ECOMPRESSION', /corrupt/);
    const corrupt = Buffer.from(gz);
    corrupt[1000] = (corrupt[1000] ?? 0) ^ 0xff;
    await assert.rejects(open(corrupt), (err) => err instanceof LayerFormatError);
  });
});

// ---------------------------------------------------------------------------------------------
// The merged tree against GNU tar extraction with the OCI rules done by hand, for random stacks.

/** mulberry32: a small deterministic PRNG. */
function randomSource(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (below: number) => Math.floor(next() * below);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, pick, chance: (p: number) => next() < p };
}

type Random = ReturnType<typeof randomSource>;
type StateKind = 'directory' | 'file' | 'symlink' | 'fifo' | 'char';

const NAMES = ['a', 'b', 'c', 'd', 'e'];

/**
 * No setgid directories: GNU tar creates directories with interim modes, so the group the kernel
 * gives directories implied under a setgid parent differs from containerd's (a unit test covers it).
 */
function randomAttributes(random: Random, kind: StateKind): Partial<PackEntry> {
  const mode =
    kind === 'directory'
      ? random.pick([0o755, 0o700, 0o775, 0o1777, 0o1755])
      : random.pick([0o644, 0o600, 0o755, 0o4755, 0o444]);
  const seconds = 1_000_000_000 + random.int(1_000_000_000);
  const pax: Record<string, string> = {};
  if (random.chance(0.5)) pax.mtime = `${seconds}.${String(random.int(1e9)).padStart(9, '0')}`;
  const uid = random.pick([0, 1, 1000, 65534, 3_000_000]);
  const gid = random.pick([0, 2, 1000, 65534]);
  if (uid > 0o7777777) pax.uid = String(uid);
  if ((kind === 'file' || kind === 'directory') && random.chance(0.2)) {
    pax[`SCHILY.xattr.user.k${random.int(3)}`] = `v${random.int(1000)}`;
  }
  return { mode, uid: uid > 0o7777777 ? 0 : uid, gid, mtime: new Date(seconds * 1000), pax };
}

/** Random layers that are valid under both implementations (no parent through a symlink, …). */
function randomLayerStack(random: Random): PackEntry[][] {
  const state = new Map<string, StateKind>();
  const layers: PackEntry[][] = [];
  const removeTree = (path: string) => {
    for (const key of [...state.keys()]) if (key === path || key.startsWith(`${path}/`)) state.delete(key);
  };
  const parentOf = (path: string) => path.split('/').slice(0, -1).join('/');
  const layerCount = 2 + random.int(4);
  for (let layer = 0; layer < layerCount; layer++) {
    const entries: PackEntry[] = [];
    const used = new Set<string>();
    const parentsInLayer = new Set<string>();
    const linkedInLayer: string[] = [];
    const existing = () => [...state.keys()];
    // Whiteouts first: they name lower entries.
    for (let i = random.int(3); i > 0 && state.size > 0; i--) {
      const victim = random.pick(existing());
      const parent = parentOf(victim);
      entries.push({ name: `${parent ? `${parent}/` : ''}.wh.${victim.split('/').pop()}`, content: '' });
      removeTree(victim);
    }
    const directories = existing().filter((path) => state.get(path) === 'directory');
    if (directories.length > 0 && random.chance(0.3)) {
      const opaque = random.pick(directories);
      entries.push({ name: `${opaque}/.wh..wh..opq`, content: '' });
      for (const key of existing()) if (key.startsWith(`${opaque}/`)) state.delete(key);
    }
    if (random.chance(0.2)) {
      const parent = directories.length > 0 && random.chance(0.5) ? `${random.pick(directories)}/` : '';
      if (parent === '' || state.get(parent.slice(0, -1)) === 'directory')
        entries.push({ name: `${parent}.wh.ghost`, content: '' });
    }
    for (let i = 3 + random.int(10); i > 0; i--) {
      const depth = 1 + random.int(3);
      const path = Array.from({ length: depth }, () => random.pick(NAMES)).join('/');
      if (used.has(path)) continue;
      // Parents: implied, declared, or a non-directory replaced by a declared directory.
      const ancestors = path
        .split('/')
        .slice(0, -1)
        .map((_, index, parts) => parts.slice(0, index + 1).join('/'));
      let blocked = false;
      for (const ancestor of ancestors) {
        const kind = state.get(ancestor);
        if (used.has(ancestor) && kind !== 'directory') blocked = true;
        if (blocked) break;
        const declare =
          kind !== undefined && kind !== 'directory' ? true : random.chance(kind === undefined ? 0.5 : 0.2);
        if (declare && !used.has(ancestor)) {
          if (kind !== undefined && kind !== 'directory') removeTree(ancestor);
          entries.push({ name: `${ancestor}/`, type: 'directory', ...randomAttributes(random, 'directory') });
          used.add(ancestor);
        }
        state.set(ancestor, 'directory');
        parentsInLayer.add(ancestor);
      }
      if (blocked) continue;
      const linkTargets = existing().filter(
        (key) => state.get(key) !== 'directory' && key !== path && !key.startsWith(`${path}/`),
      );
      let kind = random.pick<StateKind | 'link'>([
        'file',
        'file',
        'file',
        'file',
        'directory',
        'symlink',
        'link',
        'link',
        'fifo',
        'char',
      ]);
      if (kind === 'link' && linkTargets.length === 0) kind = 'file';
      // Replacing a directory this layer filled needs GNU tar's --recursive-unlink, which would also
      // empty directories declared twice; keep such paths directories.
      if (parentsInLayer.has(path)) kind = 'directory';
      // The reference removes a directory replaced by a non-directory before extracting: links made
      // earlier in the layer into that directory must not exist.
      if (linkedInLayer.some((target) => target === path || target.startsWith(`${path}/`)))
        kind = 'directory';
      if (state.get(path) === 'directory' && kind !== 'directory') removeTree(path);
      used.add(path);
      if (kind === 'link') {
        const target = random.pick(linkTargets);
        entries.push({ name: path, type: 'link', linkname: target, ...randomAttributes(random, 'symlink') });
        linkedInLayer.push(target);
        state.set(path, state.get(target)!);
      } else if (kind === 'directory') {
        entries.push({ name: `${path}/`, type: 'directory', ...randomAttributes(random, 'directory') });
        state.set(path, 'directory');
      } else if (kind === 'symlink') {
        const linkname = random.pick(['/etc/passwd', '../../..', 'a/b', 'x'.repeat(1 + random.int(150))]);
        entries.push({ name: path, type: 'symlink', linkname, ...randomAttributes(random, 'symlink') });
        state.set(path, 'symlink');
      } else if (kind === 'fifo' || kind === 'char') {
        const device = kind === 'char' ? { devmajor: 1 + random.int(10), devminor: random.int(300) } : {};
        entries.push({
          name: path,
          type: kind === 'char' ? 'character-device' : 'fifo',
          ...device,
          ...randomAttributes(random, kind),
        });
        state.set(path, kind);
      } else {
        const size = random.chance(0.1) ? 100_000 + random.int(200_000) : random.int(3000);
        const content = Buffer.alloc(size, random.int(256));
        entries.push({ name: path, content, ...randomAttributes(random, 'file') });
        state.set(path, 'file');
      }
    }
    layers.push(entries);
  }
  return layers;
}

describe('mergeLayers against extraction by GNU tar', () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  for (let seed = 1; seed <= 24; seed++) {
    it(`random layer stack #${seed}`, async () => {
      const random = randomSource(seed * 7919);
      const stack = randomLayerStack(random);
      const tars: Buffer[] = [];
      for (const entries of stack) tars.push(await packTar(entries));
      const { sink, digestOf } = recordingSink();
      const layers: LayerTree[] = [];
      for (const tar of tars) layers.push(await readLayer(streamOf(tar, 1000), sink));
      const merged = describeNode(mergeLayers(layers), { contentDigest: digestOf });

      const dir = mkdtempSync(join(tmpdir(), 'damselfly-layers-'));
      dirs.push(dir);
      await applyLayersToDirectory(tars, dir);
      const reference = describeTree(dir, { contentDigests: true });
      const onlyMerged = merged.filter((line) => !reference.includes(line));
      const onlyReference = reference.filter((line) => !merged.includes(line));
      const layersShown = stack
        .map(
          (entries, index) =>
            `layer ${index + 1}: ${entries.map((e) => `${e.name}(${e.type ?? 'file'})`).join(' ')}`,
        )
        .join('\n');
      assert.deepEqual(
        { onlyMerged, onlyReference },
        { onlyMerged: [], onlyReference: [] },
        `merged tree and GNU tar differ\n${layersShown}`,
      );
    });
  }
});
