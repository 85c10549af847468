/**
 * ImageFilesystem's metadata answers over an encoded-then-decoded bootstrap: node ids and st_ino
 * (nids), lookups (a directory of thousands of names, bytes that are not UTF-8), link counts, device
 * numbers, readdir cookies, xattrs, symlinks, statfs, and how reads map to the content layer.
 */
import assert from 'node:assert/strict';
import { constants } from 'node:fs';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { FuseError, type RequestContext } from '../../src/fuse/index.js';
import { type DecodedBootstrap, decodeBootstrap, encodeBootstrap } from '../../src/image/format/index.js';
import { ChunkVerificationError } from '../../src/mount/errors.js';
import { type FileContent, ImageFilesystem } from '../../src/mount/image-filesystem.js';
import { encodeDeviceNumber } from '../../src/mount/node-attributes.js';
import type { ReadPiece } from '../../src/mount/read-plan.js';
import { SyntheticImage } from '../helpers/erofs.js';

const CHUNK = 4096;
const ctx: RequestContext = { uid: 0, gid: 0, pid: 1, signal: new AbortController().signal };

/** Content that answers each piece with its chunk index byte (or zeros for holes) and logs pieces. */
class RecordingContent implements FileContent {
  reads: ReadPiece[][] = [];
  fail: Error | undefined;
  async read(pieces: readonly ReadPiece[]): Promise<Buffer> {
    this.reads.push([...pieces]);
    if (this.fail) throw this.fail;
    return Buffer.concat(pieces.map((p) => Buffer.alloc(p.length, p.chunk === null ? 0 : p.chunk + 1)));
  }
}

function build(): { decoded: DecodedBootstrap; fs: ImageFilesystem; content: RecordingContent } {
  const s = new SyntheticImage(CHUNK, 1);
  s.file('/etc/hostname', Buffer.from('box\n'), { xattrs: new Map([['user.note', Buffer.from('hi')]]) });
  const shared = s.file('/bin/tool', Buffer.alloc(3 * CHUNK + 10, 7), { mode: 0o4755 });
  s.add('/usr/bin/tool-link', shared);
  s.symlink('/bin/sh', 'tool');
  s.device('/dev/odd', 'char', 300, 1234);
  s.device('/dev/loop', 'block', 7, 200);
  s.special('/dev/fifo', 'fifo');
  for (let i = 0; i < 3000; i++) s.file(`/many/f${String(i).padStart(4, '0')}`, Buffer.from(`${i}`));
  s.dir('/empty', { uid: 70000, gid: 80000, mtimeSec: -86401, mtimeNsec: 500_000_000 });
  const { image } = s.build();
  const decoded = decodeBootstrap(encodeBootstrap(image));
  const content = new RecordingContent();
  return { decoded, fs: new ImageFilesystem(decoded, content, pino({ level: 'silent' })), content };
}

const { decoded, fs, content } = build();

async function resolve(path: string): Promise<number> {
  let ino = 1;
  for (const name of path.split('/').filter(Boolean))
    ino = Number((await fs.lookup(ino, Buffer.from(name))).ino);
  return ino;
}

async function errno(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof FuseError, String(err));
    return err.code;
  }
  return 'no error';
}

describe('ImageFilesystem', () => {
  it('serves the root as node id 1 with its nid as st_ino; other ids are nids', async () => {
    const root = await fs.getattr(1);
    assert.equal(root.ino, decoded.nidOf.get(decoded.image.root));
    assert.equal(root.mode, constants.S_IFDIR | 0o755);
    const ino = await resolve('/etc/hostname');
    const node = decoded.image.root.children.get('etc');
    assert.ok(node?.kind === 'directory');
    assert.equal(ino, decoded.nidOf.get(node.children.get('hostname')!));
    assert.equal((await fs.getattr(ino)).ino, ino);
  });

  it('counts links: 2 + subdirectories for directories, names for the rest', async () => {
    assert.equal((await fs.getattr(1)).nlink, 2 + 6, 'etc bin usr dev many empty');
    assert.equal((await fs.getattr(await resolve('/usr'))).nlink, 3);
    const a = await fs.getattr(await resolve('/bin/tool'));
    const b = await fs.getattr(await resolve('/usr/bin/tool-link'));
    assert.equal(a.ino, b.ino, 'hard links share st_ino');
    assert.equal(a.nlink, 2);
    assert.equal(a.mode, constants.S_IFREG | 0o4755);
    assert.equal(a.size, 3 * CHUNK + 10);
    assert.equal(a.blocks, 4 * 8);
  });

  it('encodes device numbers like the kernel and types every node', async () => {
    const odd = await fs.getattr(await resolve('/dev/odd'));
    assert.equal(odd.mode & constants.S_IFMT, constants.S_IFCHR);
    assert.equal(odd.rdev, encodeDeviceNumber(300, 1234));
    assert.equal(encodeDeviceNumber(300, 1234), (1234 & 0xff) | (300 << 8) | ((1234 & ~0xff) << 12));
    assert.equal(encodeDeviceNumber(7, 200), 0x7c8);
    assert.equal((await fs.getattr(await resolve('/dev/loop'))).mode & constants.S_IFMT, constants.S_IFBLK);
    assert.equal((await fs.getattr(await resolve('/dev/fifo'))).mode & constants.S_IFMT, constants.S_IFIFO);
    const sh = await fs.getattr(await resolve('/bin/sh'));
    assert.equal(sh.mode & constants.S_IFMT, constants.S_IFLNK);
    assert.equal(sh.size, 4);
    assert.equal(await fs.readlink(await resolve('/bin/sh')), 'tool');
    assert.equal(await errno(fs.readlink(await resolve('/bin/tool'))), 'EINVAL');
  });

  it('keeps owners and times (negative, with nanoseconds)', async () => {
    const empty = await fs.getattr(await resolve('/empty'));
    assert.deepEqual([empty.uid, empty.gid], [70000, 80000]);
    assert.deepEqual(empty.mtime, { sec: -86401, nsec: 500_000_000 });
    assert.deepEqual(empty.ctime, empty.mtime);
  });

  it('looks names up in a directory of 3000, refusing what is not there', async () => {
    const many = await resolve('/many');
    const entry = await fs.lookup(many, Buffer.from('f2999'));
    assert.equal(entry.attr.size, 4);
    assert.equal(await errno(fs.lookup(many, Buffer.from('f3000'))), 'ENOENT');
    assert.equal(await errno(fs.lookup(many, Buffer.from([0x66, 0xff]))), 'ENOENT');
    assert.equal(await errno(fs.lookup(await resolve('/etc/hostname'), Buffer.from('x'))), 'ENOTDIR');
    assert.equal(await errno(fs.getattr(999_999_999)), 'ENOENT');
  });

  it('lists . and .. then the children, resuming at any cookie', async () => {
    const many = await resolve('/many');
    const all = [...fs.readdir(many, 0, 0)];
    assert.equal(all.length, 3002);
    assert.deepEqual(
      all.slice(0, 3).map((e) => e.name.toString()),
      ['.', '..', 'f0000'],
    );
    assert.equal(all[0]!.ino, many);
    assert.equal(all[1]!.ino, 1, '.. of a top-level directory is the root');
    assert.equal(all[1]!.attr?.ino, decoded.nidOf.get(decoded.image.root), 'd_ino is the nid');
    assert.deepEqual(
      all.map((e) => e.offset),
      all.map((_, i) => i + 1),
    );
    const resumed = [...fs.readdir(many, 0, 1500)];
    assert.deepEqual(
      resumed.map((e) => e.name.toString()),
      all.slice(1500).map((e) => e.name.toString()),
    );
    assert.deepEqual([...fs.readdir(many, 0, 3002)], []);
    assert.equal(all[2]!.mode & constants.S_IFMT, constants.S_IFREG);
  });

  it('answers xattrs by name, ENODATA when absent', async () => {
    const ino = await resolve('/etc/hostname');
    assert.deepEqual(await fs.listxattr(ino), ['user.note']);
    assert.deepEqual(await fs.getxattr(ino, Buffer.from('user.note')), Buffer.from('hi'));
    assert.equal(await errno(fs.getxattr(ino, Buffer.from('user.other'))), 'ENODATA');
    assert.deepEqual(await fs.listxattr(1), []);
  });

  it('reports statfs from the superblock and blobs', async () => {
    const st = await fs.statfs();
    assert.equal(st.files, decoded.superblock.inos);
    assert.equal(st.bsize, 4096);
    assert.ok(st.blocks > decoded.superblock.blocks);
  });

  it('reads through chunk pieces, short only at EOF; content failures are EIO', async () => {
    const ino = await resolve('/bin/tool');
    assert.deepEqual(await fs.open(ino), { keepCache: true });
    const got = await fs.read(ino, 0, 2 * CHUNK + 5, 2 * CHUNK, ctx);
    assert.equal(got.length, CHUNK + 5, 'clamped at EOF (3·4096 + 10)');
    assert.deepEqual(
      content.reads.at(-1)!.map((p) => [p.offset, p.length]),
      [
        [5, CHUNK - 5],
        [0, 10],
      ],
    );
    assert.equal((await fs.read(ino, 0, 10_000_000, 10, ctx)).length, 0);
    content.fail = new ChunkVerificationError('digest mismatch');
    assert.equal(await errno(fs.read(ino, 0, 0, 10, ctx)), 'EIO');
    content.fail = undefined;
    assert.equal(await errno(fs.read(1, 0, 0, 10, ctx)), 'EISDIR');
    assert.equal(await errno(fs.read(await resolve('/bin/sh'), 0, 0, 10, ctx)), 'EINVAL');
  });
});
