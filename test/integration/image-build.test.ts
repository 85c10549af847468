/**
 * `damselfly image build` end to end: a directory holding every kind of file is built through the
 * CLI, checked with fsck.erofs, mounted by the kernel (bootstrap + blob as loop devices) and
 * compared with the source — contents, modes, owners, times, symlinks, hard links, devices, xattrs.
 * Then compressed builds (same chunks, smaller blobs) and a rebuild against a chunk dictionary.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { link, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type BuildSummary, decompressChunk, prepareCompressor } from '../../src/image/build/index.js';
import { decodeBootstrap } from '../../src/image/format/index.js';
import { cliPath } from '../helpers/cluster.js';
import { erofsUnavailable, fsckErofs, type MountedErofs, mountErofs } from '../helpers/erofs.js';
import { addSpecialsOwnersXattrsAndTimes, writeAt } from '../helpers/files.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
/** Fifos, sockets and devices live here: `diff -r` cannot compare them (it would open them). */
const SPECIALS = 'specials';

let work: string;
let source: string;
const mounts: MountedErofs[] = [];

async function imageBuild(out: string, ...flags: string[]): Promise<BuildSummary> {
  const { stdout } = await run(
    process.execPath,
    [cliPath, 'image', 'build', source, '-o', out, '--json', ...flags],
    {
      maxBuffer: 64 * MiB,
    },
  );
  return JSON.parse(stdout) as BuildSummary;
}

async function sh(command: string, ...args: string[]): Promise<string> {
  return (await run(command, args, { maxBuffer: 256 * MiB })).stdout;
}

async function createSourceTree(root: string): Promise<void> {
  await mkdir(root);
  await writeFile(join(root, 'empty'), '');
  await writeFile(join(root, 'small.txt'), 'hello, image\n');
  await writeFile(join(root, 'one-byte'), 'x');
  await writeFile(join(root, 'exactly-one-chunk'), randomBytes(MiB));
  // 16 MiB of log-like text: what compression is for.
  const lines = Array.from(
    { length: 400_000 },
    (_, i) => `${1_700_000_000 + i} INFO request ${i % 977} served in ${i % 13} ms\n`,
  );
  await writeFile(join(root, 'text.log'), lines.join('').slice(0, 16 * MiB));
  // 50 MiB with an in-file repeat (dedup inside a file) and a zero stretch (holes).
  const random = randomBytes(20 * MiB);
  await writeFile(
    join(root, 'big.bin'),
    Buffer.concat([random, random.subarray(0, 10 * MiB), Buffer.alloc(10 * MiB), randomBytes(10 * MiB)]),
  );
  // 200 MiB sparse file with a little data in the middle and at the end.
  const sparse = join(root, 'sparse.img');
  await writeAt(sparse, randomBytes(5000), 100 * MiB + 12345);
  await writeAt(sparse, Buffer.from('tail'), 200 * MiB - 4);

  await mkdir(join(root, 'names'));
  for (const name of [
    'ünïcødé-文件-😀',
    'n'.repeat(255),
    `${'é'.repeat(127)}x`,
    ' space & $pecial (chars)',
    '-dash',
    '.hidden',
  ]) {
    await writeFile(join(root, 'names', name), `${name}\n`);
  }
  const many = join(root, 'many');
  await mkdir(many);
  for (let i = 0; i < 3000; i++) {
    await writeFile(join(many, `f${String(i).padStart(4, '0')}`), `content ${i % 1000}\n`);
  }

  await mkdir(join(root, 'links'));
  await writeFile(join(root, 'links', 'original'), randomBytes(300 * 1024));
  await link(join(root, 'links', 'original'), join(root, 'links', 'second-name'));
  await link(join(root, 'links', 'original'), join(root, 'many', 'third-name'));
  await link(join(root, 'big.bin'), join(root, 'links', 'big-too'));
  await symlink('original', join(root, 'links', 'short'));
  await symlink(`/${'long/'.repeat(818)}end`, join(root, 'links', 'long')); // 4095 bytes: PATH_MAX − 1
  await symlink('../missing/target', join(root, 'links', 'dangling'));

  await addSpecialsOwnersXattrsAndTimes(root, join(root, SPECIALS));
}

interface EntryFacts {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: string;
  size?: number;
  nlink?: number;
  rdev?: string;
  target?: string;
}

/** lstat facts of every entry under `root` (paths relative), and the groups of hard-linked names. */
async function describeTree(
  root: string,
): Promise<{ entries: Map<string, EntryFacts>; linkGroups: string[][] }> {
  const entries = new Map<string, EntryFacts>();
  const byInode = new Map<bigint, string[]>();
  const listing = (await sh('find', root, '-mindepth', '0', '-print0')).split('\0').filter(Boolean);
  for (const path of listing) {
    const name = relative(root, path) || '.';
    const st = await lstat(path, { bigint: true });
    const type = st.isFile()
      ? 'file'
      : st.isDirectory()
        ? 'dir'
        : st.isSymbolicLink()
          ? 'symlink'
          : st.isCharacterDevice()
            ? 'char'
            : st.isBlockDevice()
              ? 'block'
              : st.isFIFO()
                ? 'fifo'
                : st.isSocket()
                  ? 'socket'
                  : '?';
    const facts: EntryFacts = {
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeNs: st.mtimeNs.toString(),
    };
    if (type !== 'dir') facts.nlink = Number(st.nlink);
    if (type === 'file' || type === 'symlink') facts.size = Number(st.size);
    if (type === 'char' || type === 'block') facts.rdev = st.rdev.toString();
    if (type === 'symlink') facts.target = await readlink(path);
    entries.set(name, facts);
    if (type !== 'dir' && st.nlink > 1n) byInode.set(st.ino, [...(byInode.get(st.ino) ?? []), name]);
  }
  const linkGroups = [...byInode.values()].map((g) => g.sort()).sort((a, b) => a[0]!.localeCompare(b[0]!));
  return { entries, linkGroups };
}

/** getfattr's dump of the whole tree with paths made relative, one string to compare. */
async function xattrDump(root: string): Promise<string> {
  const dump = await sh('getfattr', '-R', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root);
  return dump.split(`# file: ${root}`).sort().join('');
}

function blobPathsOf(summary: BuildSummary, dictBlobsDir?: string): string[] {
  return summary.blobs.map((b) => b.path ?? join(dictBlobsDir ?? '', b.digest.slice('sha256:'.length)));
}

async function mount(summary: BuildSummary, name: string, dictBlobsDir?: string): Promise<string> {
  const mountpoint = join(work, name);
  await mkdir(mountpoint);
  mounts.push(await mountErofs(summary.bootstrap, blobPathsOf(summary, dictBlobsDir), mountpoint));
  return mountpoint;
}

async function unmountAll(): Promise<void> {
  while (mounts.length > 0)
    await mounts
      .pop()!
      .unmount()
      .catch(() => undefined);
}

async function diffTrees(a: string, b: string): Promise<void> {
  try {
    await sh('diff', '-r', '--no-dereference', `--exclude=${SPECIALS}`, a, b);
  } catch (err) {
    assert.fail(`diff -r ${a} ${b}:\n${(err as { stdout?: string }).stdout ?? String(err)}`);
  }
}

const skip = await erofsUnavailable();

describe('damselfly image build', { skip, timeout: 600_000 }, () => {
  let plain: BuildSummary;
  const plainOut = () => join(work, 'out-none');

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-image-build-'));
    source = join(work, 'source');
    await createSourceTree(source);
    plain = await imageBuild(plainOut(), '--compressor', 'none');
  });

  after(async () => {
    await unmountAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('builds an image fsck.erofs accepts, with the dedup figures the tree implies', async () => {
    assert.equal(plain.blobs.length, 1);
    const fsck = await fsckErofs(plain.bootstrap, blobPathsOf(plain));
    assert.equal(fsck.exitCode, 0, fsck.output);
    assert.equal(plain.hardLinks, 3, 'three extra names of hard-linked files');
    // 3000 files of 1000 distinct contents; big.bin repeats 10 MiB of itself.
    assert.ok(plain.dedup.reusedInImageChunks >= 2000 + 10, JSON.stringify(plain.dedup));
    assert.ok(plain.dedup.holeChunks >= 10 + 198, 'zero stretches and the sparse file are holes');
    assert.equal(plain.dedup.reusedFromDictChunks, 0);
    const blobFile = await readFile(plain.blobs[0]!.path!);
    assert.equal(`sha256:${createHash('sha256').update(blobFile).digest('hex')}`, plain.blobs[0]!.digest);
    assert.equal(blobFile.length % 4096, 0);
  });

  it('mounts (kernel EROFS) as the same tree: contents, metadata, hard links, devices, xattrs', async () => {
    const mnt = await mount(plain, 'mnt-none');
    try {
      await diffTrees(source, mnt);
      const [want, got] = await Promise.all([describeTree(source), describeTree(mnt)]);
      assert.deepEqual([...got.entries.keys()].sort(), [...want.entries.keys()].sort());
      for (const [name, facts] of want.entries) assert.deepEqual(got.entries.get(name), facts, name);
      assert.deepEqual(got.linkGroups, want.linkGroups);
      assert.equal(await xattrDump(mnt), await xattrDump(source));
    } finally {
      await unmountAll();
    }
  });

  for (const compressor of ['zstd', 'lz4'] as const) {
    it(`${compressor}: a smaller blob whose chunks decode to the same digests`, async () => {
      const summary = await imageBuild(join(work, `out-${compressor}`), '--compressor', compressor);
      assert.equal(summary.chunks, plain.chunks);
      // Most of the tree is random bytes; text.log (16 MiB) is what shrinks.
      assert.ok(
        summary.blobs[0]!.compressedSize < plain.blobs[0]!.compressedSize - 10 * MiB,
        'blob did not shrink',
      );
      const fsck = await fsckErofs(summary.bootstrap, blobPathsOf(summary));
      assert.equal(fsck.exitCode, 0, fsck.output);

      const { image } = decodeBootstrap(await readFile(summary.bootstrap));
      const plainImage = decodeBootstrap(await readFile(plain.bootstrap)).image;
      const hex = (chunks: typeof image.chunks) => chunks.map((c) => c.digest.toString('hex')).sort();
      assert.deepEqual(hex(image.chunks), hex(plainImage.chunks));
      await prepareCompressor(compressor);
      const blob = await readFile(blobPathsOf(summary)[0]!);
      let compressed = 0;
      for (const chunk of image.chunks) {
        const stored = blob.subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize);
        const data = decompressChunk(chunk.compressed ? compressor : 'none', stored, chunk.uncompressedSize);
        assert.deepEqual(createHash('sha256').update(data).digest(), chunk.digest);
        if (chunk.compressed) compressed++;
      }
      assert.ok(compressed >= 16, `only ${compressed} chunks compressed`);
    });
  }

  it('with --chunk-dict, a rebuild after changing one chunk stores just that chunk', async () => {
    // Overwrite one chunk-aligned MiB of big.bin (and so of its hard link).
    await writeAt(join(source, 'big.bin'), randomBytes(MiB), 40 * MiB);
    const summary = await imageBuild(
      join(work, 'out-dict'),
      '--compressor',
      'none',
      '--chunk-dict',
      plain.bootstrap,
    );
    assert.equal(summary.dedup.storedChunks, 1, JSON.stringify(summary.dedup));
    assert.equal(summary.dedup.storedBytes, MiB);
    assert.ok(summary.dedup.reusedFromDictChunks > 0);
    assert.deepEqual(
      summary.blobs.map((b) => [b.digest === plain.blobs[0]!.digest, b.path === null]),
      [
        [true, true],
        [false, false],
      ],
      'the dict blob is referenced, not copied; one new blob',
    );
    const dictBlobs = join(plainOut(), 'blobs');
    const fsck = await fsckErofs(summary.bootstrap, blobPathsOf(summary, dictBlobs));
    assert.equal(fsck.exitCode, 0, fsck.output);
    const mnt = await mount(summary, 'mnt-dict', dictBlobs);
    try {
      await diffTrees(source, mnt);
    } finally {
      await unmountAll();
    }
  });

  it('refuses bad options and leaves nothing behind', async () => {
    const out = join(work, 'out-refused');
    for (const flags of [
      ['--chunk-size', '3000'],
      ['--chunk-size', '32MiB'],
      ['--compressor', 'gzip'],
      ['--chunk-dict', join(work, 'no-such-bootstrap')],
    ]) {
      await assert.rejects(imageBuild(out, ...flags), (err: { code?: number; stderr?: string }) => {
        assert.equal(err.code, 1);
        assert.match(err.stderr ?? '', /chunk|compressor|gzip/i);
        assert.doesNotMatch(err.stderr ?? '', /\n\s+at /, 'no stack trace');
        return true;
      });
      await assert.rejects(lstat(out), { code: 'ENOENT' });
    }
  });
});
