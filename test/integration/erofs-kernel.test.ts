/**
 * The bootstrap writer against the real consumers: `fsck.erofs` (erofs-utils 1.5) and the Linux
 * EROFS driver. A tree built in code (two blobs, chunks shared by two files, holes, every node
 * kind, xattrs, hard links, a multi-block directory) is encoded, checked, mounted through loop
 * devices, and every name, byte and attribute is compared with what was encoded.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  type DecodedBootstrap,
  type DirectoryNode,
  decodeBootstrap,
  encodeBootstrap,
  type FileNode,
  type TreeNode,
} from '../../src/image/format/index.js';
import {
  attributes,
  erofsUnavailable,
  fsckErofs,
  getXattrs,
  type MountedErofs,
  mountErofs,
  namesFillingOneBlock,
  SyntheticImage,
} from '../helpers/erofs.js';

const run = promisify(execFile);
const KiB = 1024;
const BIG_DIR_ENTRIES = 3000;

function pattern(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = (x >>> 16) | 1;
  }
  return out;
}

/** POSIX ACL xattr (version 2): user::rw-, user:1000:r--, group::r--, mask::r--, other::r--. */
const ACL = Buffer.from(
  '02000000' +
    '01000600ffffffff' +
    '02000400e8030000' +
    '04000400ffffffff' +
    '10000400ffffffff' +
    '20000400ffffffff',
  'hex',
);
/** security.capability v2: cap_net_bind_service permitted + effective. */
const CAPABILITY = Buffer.from('0100000200040000000000000000000000000000', 'hex');

const LONG_NAME = `${'l'.repeat(250)}.long`;
const UNICODE_NAMES = ['héllo wörld.txt', '日本語', '🦋'];
/** Sort before `.` in byte order: lookups must still find them (the kernel binary-searches). */
const BEFORE_DOT_NAMES = ['+plus', '-dash', ' space'];

interface Fixture {
  synthetic: SyntheticImage;
  /** Expected bytes of every regular file, by path. */
  contents: Map<string, Buffer>;
}

function buildFixture(): Fixture {
  const s = new SyntheticImage(64 * KiB, 2);
  const contents = new Map<string, Buffer>();
  const file = (path: string, data: Buffer, attrs = {}, blob = 0) => {
    contents.set(path, data);
    return s.file(path, data, attrs, blob);
  };
  const big = pattern(300 * KiB, 1);
  file('/data/big.bin', big, {
    mode: 0o640,
    uid: 70000,
    gid: 80000,
    mtimeSec: 1234567890,
    mtimeNsec: 123456789,
  });
  // Shares its first four 64 KiB chunks with big.bin (stored in blob 0); its own tail goes to blob 1.
  file('/data/copy.bin', Buffer.concat([big.subarray(0, 256 * KiB), pattern(70 * KiB, 2)]), {}, 1);
  file(
    '/data/sparse.bin',
    Buffer.concat([pattern(64 * KiB, 3), Buffer.alloc(128 * KiB), pattern(100, 4)]),
    {},
    1,
  );
  const small = file('/data/small.txt', Buffer.from('hello, erofs\n'), { mode: 0o4755 });
  s.add('/other/small-link.txt', small);
  file('/data/empty', Buffer.alloc(0));
  file('/data/all-holes', Buffer.alloc(200 * KiB));
  file(`/names/${LONG_NAME}`, Buffer.from('long name\n'));
  for (const name of [...UNICODE_NAMES, ...BEFORE_DOT_NAMES])
    file(`/names/${name}`, Buffer.from(`${name}\n`));
  for (const name of namesFillingOneBlock()) file(`/full-block/${name}`, Buffer.from(name));
  file('/xattrs/file', Buffer.from('x'), {
    xattrs: new Map([
      ['user.comment', Buffer.from('a comment')],
      ['user.empty', Buffer.alloc(0)],
      ['trusted.overlay.opaque', Buffer.from('y')],
      ['security.capability', CAPABILITY],
      ['system.posix_acl_access', ACL],
      // Larger than a block: the xattr body runs across a block boundary.
      ['user.big', pattern(6000, 6)],
    ]),
  });
  s.dir('/xattrs/dir', { xattrs: new Map([['user.dir', pattern(1000, 5)]]) });
  s.symlink('/links/short', '../data/small.txt');
  s.symlink('/links/inline-4000', 'a'.repeat(4000));
  s.symlink('/links/plain-4095', 'b'.repeat(4095));
  s.device('/dev/null', 'char', 1, 3);
  s.device('/dev/wide', 'char', 300, 1234);
  s.device('/dev/sda1', 'block', 8, 1);
  s.special('/dev/fifo', 'fifo', { mode: 0o600 });
  s.special('/dev/socket', 'socket', { mode: 0o777 });
  s.dir('/tmp', { mode: 0o1777, mtimeSec: 1_600_000_000, mtimeNsec: 999_999_999 });
  const bigDir = s.dir('/big');
  for (let i = 0; i < BIG_DIR_ENTRIES; i++) {
    bigDir.children.set(`entry-${String(i).padStart(4, '0')}`, {
      kind: 'file',
      ...attributes({ mtimeSec: 1_700_000_000 + i }),
      size: 0,
      chunks: [],
    });
  }
  return { synthetic: s, contents };
}

/** Every path of the tree (hard links under each name), parents first. */
function walk(dir: DirectoryNode, prefix = ''): Array<[string, TreeNode]> {
  const out: Array<[string, TreeNode]> = [];
  for (const [name, child] of dir.children) {
    const path = `${prefix}/${name}`;
    out.push([path, child]);
    if (child.kind === 'directory') out.push(...walk(child, path));
  }
  return out;
}

const TYPE_BITS: Record<TreeNode['kind'], number> = {
  file: 0o100000,
  directory: 0o040000,
  symlink: 0o120000,
  char: 0o020000,
  block: 0o060000,
  fifo: 0o010000,
  socket: 0o140000,
};

/** glibc's major()/minor() of a dev_t. */
function splitDevice(rdev: bigint): { major: number; minor: number } {
  return {
    major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
    minor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)),
  };
}

describe('EROFS bootstrap on the kernel', async () => {
  const skip = await erofsUnavailable();
  let work: string;
  let mounted: MountedErofs | undefined;
  let fixture: Fixture;
  let decoded: DecodedBootstrap;
  let bootstrapPath: string;
  let blobPaths: string[];
  let mnt: string;

  before(async () => {
    if (skip) return;
    work = await mkdtemp(join(tmpdir(), 'damselfly-erofs-'));
    fixture = buildFixture();
    const { image, blobs } = fixture.synthetic.build(['/data/big.bin']);
    const chunksOf = (path: string) => (nodeAt(image.root, path) as FileNode).chunks;
    assert.deepEqual(chunksOf('/data/copy.bin').slice(0, 4), chunksOf('/data/big.bin').slice(0, 4), 'dedup');
    const bytes = encodeBootstrap(image);
    decoded = decodeBootstrap(bytes);
    bootstrapPath = join(work, 'bootstrap');
    await writeFile(bootstrapPath, bytes);
    blobPaths = [];
    for (const [i, blob] of blobs.entries()) {
      const path = join(work, `blob-${i}`);
      await writeFile(path, blob);
      blobPaths.push(path);
    }
    mnt = join(work, 'mnt');
    await mkdir(mnt);
  });

  after(async () => {
    if (skip) return;
    await mounted?.unmount();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('fsck.erofs accepts the bootstrap with one --device per blob', { skip }, async () => {
    const result = await fsckErofs(bootstrapPath, blobPaths);
    assert.equal(result.exitCode, 0, result.output);
    assert.doesNotMatch(result.output, /corrupt|failed|error/i, result.output);
  });

  it('mounts with one device= per blob through loop devices', { skip }, async () => {
    mounted = await mountErofs(bootstrapPath, blobPaths, mnt);
    assert.equal(mounted.loopDevices.length, 3);
  });

  it('reads back every file byte for byte (shared chunks, holes, tails)', { skip }, async () => {
    assert.ok(mounted, 'not mounted');
    for (const [path, expected] of fixture.contents) {
      const actual = await readFile(join(mnt, path));
      assert.ok(
        actual.equals(expected),
        `${path}: ${actual.length} bytes differ from the ${expected.length} encoded`,
      );
    }
  });

  it('reports every mode, owner, mtime, link count, inode number and device', { skip }, async () => {
    assert.ok(mounted, 'not mounted');
    const paths = walk(fixture.synthetic.root);
    const names = new Map<TreeNode, number>();
    for (const [, node] of paths) names.set(node, (names.get(node) ?? 0) + 1);
    for (const [path, node] of paths) {
      const st = await lstat(join(mnt, path), { bigint: true });
      const where = `${path} (${node.kind})`;
      assert.equal(Number(st.mode), TYPE_BITS[node.kind] | node.mode, `${where}: mode`);
      assert.equal(Number(st.uid), node.uid, `${where}: uid`);
      assert.equal(Number(st.gid), node.gid, `${where}: gid`);
      assert.equal(
        st.mtimeNs,
        BigInt(node.mtimeSec) * 1_000_000_000n + BigInt(node.mtimeNsec),
        `${where}: mtime`,
      );
      assert.equal(
        Number(st.ino),
        decoded.nidOf.get(nodeAt(decoded.image.root, path)),
        `${where}: st_ino is the nid`,
      );
      if (node.kind === 'file') assert.equal(Number(st.size), node.size, `${where}: size`);
      if (node.kind === 'symlink')
        assert.equal(await readlink(join(mnt, path)), node.target, `${where}: target`);
      if (node.kind === 'char' || node.kind === 'block') {
        assert.deepEqual(
          splitDevice(st.rdev),
          { major: node.rdevMajor, minor: node.rdevMinor },
          `${where}: rdev`,
        );
      }
      if (node.kind === 'directory') {
        const subdirs = [...node.children.values()].filter((c) => c.kind === 'directory').length;
        assert.equal(Number(st.nlink), 2 + subdirs, `${where}: nlink`);
      } else {
        assert.equal(Number(st.nlink), names.get(node), `${where}: nlink`);
      }
    }
    assert.ok((await lstat(join(mnt, 'dev/fifo'))).isFIFO());
    assert.ok((await lstat(join(mnt, 'dev/socket'))).isSocket());
  });

  it('keeps hard links as one inode', { skip }, async () => {
    assert.ok(mounted, 'not mounted');
    const a = await lstat(join(mnt, 'data/small.txt'));
    const b = await lstat(join(mnt, 'other/small-link.txt'));
    assert.equal(a.ino, b.ino);
    assert.equal(a.nlink, 2);
    assert.equal(b.nlink, 2);
  });

  it('returns every xattr', { skip }, async () => {
    assert.ok(mounted, 'not mounted');
    for (const path of ['/xattrs/file', '/xattrs/dir', '/data/big.bin']) {
      const node = nodeAt(fixture.synthetic.root, path);
      const actual = await getXattrs(join(mnt, path));
      assert.deepEqual(new Map([...actual].sort()), new Map([...node.xattrs].sort()), `${path}: xattrs`);
    }
  });

  it('lists . and .., 255-byte and unicode names, and a multi-block directory', { skip }, async () => {
    assert.ok(mounted, 'not mounted');
    const { stdout } = await run('ls', ['-a', mnt]);
    const rootNames = stdout.split('\n').filter(Boolean);
    assert.ok(rootNames.includes('.') && rootNames.includes('..'), `ls -a shows ${rootNames.join(' ')}`);
    const names = await readdir(join(mnt, 'names'));
    assert.deepEqual(names.sort(), [LONG_NAME, ...UNICODE_NAMES, ...BEFORE_DOT_NAMES].sort());
    for (const name of BEFORE_DOT_NAMES) assert.ok((await lstat(join(mnt, 'names', name))).isFile(), name);
    assert.deepEqual((await readdir(join(mnt, 'full-block'))).sort(), namesFillingOneBlock().sort());
    const big = await readdir(join(mnt, 'big'));
    assert.equal(big.length, BIG_DIR_ENTRIES);
    const bigDir = nodeAt(decoded.image.root, '/big') as DirectoryNode;
    assert.deepEqual(new Set(big), new Set(bigDir.children.keys()));
    // Lookups binary-search the blocks: every name must be found by path, not just listed.
    for (const name of ['entry-0000', 'entry-1500', `entry-${BIG_DIR_ENTRIES - 1}`]) {
      assert.ok((await lstat(join(mnt, 'big', name))).isFile(), name);
    }
    const { stdout: bigLs } = await run('ls', ['-a', join(mnt, 'big')], { maxBuffer: 1 << 20 });
    assert.equal(bigLs.split('\n').filter(Boolean).length, BIG_DIR_ENTRIES + 2);
  });

  it('unmounts and detaches its loop devices', { skip }, async () => {
    assert.ok(mounted, 'not mounted');
    const loops = [...mounted.loopDevices];
    await mounted.unmount();
    mounted = undefined;
    const { stdout } = await run('losetup', ['-a']);
    for (const loop of loops) assert.ok(!stdout.includes(`${loop}:`), `${loop} is still attached`);
  });
});

function nodeAt(root: DirectoryNode, path: string): TreeNode {
  let node: TreeNode = root;
  for (const name of path.split('/').filter(Boolean)) {
    assert.equal(node.kind, 'directory', `${path}: ${name} is under a non-directory`);
    const next: TreeNode | undefined = node.kind === 'directory' ? node.children.get(name) : undefined;
    assert.ok(next, `${path}: no ${name}`);
    node = next;
  }
  return node;
}
