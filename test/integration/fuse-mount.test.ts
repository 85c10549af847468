/**
 * src/fuse against the real kernel (root, /dev/fuse): an in-memory tree mounted with FuseSession and
 * used through ordinary programs (cat, ls, stat, getfattr, df, touch …) and Node's async fs.
 *
 * This process *is* the FUSE server: nothing here may touch a mount synchronously (statSync on the
 * mount, or spawn() with a cwd inside it, would block the thread that has to answer). Every mount is tracked and detached in after()
 * and at exit, whatever happened.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { createHash, randomInt } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { type FuseMountOptions, FuseSession, unmountStale } from '../../src/fuse/index.js';
import { abortConnection, parseMountinfo } from '../../src/fuse/kernel-mount.js';
import { MemoryFilesystem, MTIME, patternBytes } from '../helpers/fuse-memory-fs.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const SUBTYPE = 'damselfly-test';
const DIRECTORY_ENTRIES = 5000;

const skip =
  process.getuid?.() !== 0 ? 'needs root (mount -t fuse)' : !existsSync('/dev/fuse') ? 'no /dev/fuse' : false;

// ---- Mount bookkeeping: nothing stays mounted, even when a test fails ----

const mountpoints = new Set<string>();

function detachSync(mountpoint: string): void {
  spawnSync('umount', ['-l', '-c', mountpoint], { stdio: 'ignore', timeout: 10_000 });
}

process.on('exit', () => {
  for (const mountpoint of mountpoints) if (isMountedSync(mountpoint)) detachSync(mountpoint);
});

function isMountedSync(mountpoint: string): boolean {
  const text = spawnSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' }).stdout;
  return parseMountinfo(text).some((entry) => entry.mountpoint === mountpoint);
}

async function fuseMountAt(mountpoint: string) {
  const entries = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  return entries.filter((entry) => entry.mountpoint === mountpoint).at(-1);
}

let root = '';

async function newMountpoint(name: string): Promise<string> {
  const path = join(root, name);
  await mkdir(path);
  mountpoints.add(path);
  return path;
}

const silent = pino({ level: 'silent' });

function mount(mountpoint: string, fs: MemoryFilesystem, options: Partial<FuseMountOptions> = {}) {
  return FuseSession.mount(mountpoint, fs, { fsName: 'memfs', subtype: SUBTYPE, logger: silent, ...options });
}

/** Runs a program; resolves with its output and exit status instead of throwing. */
async function sh(
  file: string,
  args: string[],
  timeout = 30_000,
): Promise<{ stdout: string; stderr: string; code: number | null }> {
  try {
    const { stdout, stderr } = await run(file, args, { timeout, maxBuffer: 64 * MiB });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const failed = err as { stdout?: string; stderr?: string; code?: number | string };
    return {
      stdout: failed.stdout ?? '',
      stderr: failed.stderr ?? String(err),
      code: typeof failed.code === 'number' ? failed.code : null,
    };
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Resolves when the kernel is waiting in a read that will never finish by itself. */
function readBlockedUntilAborted(started: () => void) {
  return (_offset: number, _size: number, ctx: { signal: AbortSignal }) =>
    new Promise<Buffer>((_, reject) => {
      started();
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
    });
}

// ---- The main fixture ----

const BIG = patternBytes(50 * MiB, 7);
const DIRECT = patternBytes(4 * MiB, 11);
const BIG_XATTR = patternBytes(3000, 13).toString('base64').slice(0, 3000);

function buildTree(): { fs: MemoryFilesystem; slowReads: { started: number } } {
  const fs = new MemoryFilesystem();
  const slowReads = { started: 0 };
  fs.addFile('hello.txt', Buffer.from('hello, world\n'), {
    mode: 0o640,
    uid: 1000,
    gid: 1001,
    xattrs: { 'user.greeting': 'hello', 'user.big': BIG_XATTR, 'trusted.origin': 'memfs' },
  });
  fs.addFile('empty', Buffer.alloc(0));
  fs.addFile('big.bin', BIG);
  fs.addFile('direct.bin', DIRECT, { open: { directIo: true } });
  // Direct I/O: a READ of the caller's own (not readahead, which is a background request the kernel
  // never interrupts), so SIGINT reaches the filesystem as FUSE_INTERRUPT.
  fs.addFile('slow.bin', Buffer.alloc(1 * MiB), { open: { directIo: true } });
  fs.setReadHook(
    'slow.bin',
    readBlockedUntilAborted(() => slowReads.started++),
  );
  fs.addFile('failing.bin', Buffer.alloc(4096));
  fs.setReadHook('failing.bin', async () => {
    throw new Error('simulated backend failure');
  });
  fs.addDir('many');
  for (let i = 0; i < DIRECTORY_ENTRIES; i++)
    fs.addFile(`many/file-${String(i).padStart(5, '0')}`, Buffer.alloc(0));
  fs.addDir('sub');
  fs.addSymlink('link', 'hello.txt');
  fs.addSymlink('sub/relative', '../hello.txt');
  fs.addSymlink('dangling', 'does/not/exist');
  fs.addFile('hard-a', Buffer.from('linked\n'));
  fs.addHardLink('sub/hard-b', 'hard-a');
  fs.addSpecial('fifo', constants.S_IFIFO | 0o644);
  fs.addSpecial('null-like', constants.S_IFCHR | 0o666, (1 << 8) | 3); // 1:3, new_encode_dev
  fs.addSpecial('disk', constants.S_IFBLK | 0o660, (8 << 8) | 1); // 8:1
  return { fs, slowReads };
}

describe('fuse: a real kernel mount', { skip, timeout: 300_000 }, () => {
  let mnt = '';
  let session: FuseSession;
  let fs: MemoryFilesystem;
  let slowReads: { started: number };
  const at = (path: string) => join(mnt, path);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'damselfly-fuse-'));
    ({ fs, slowReads } = buildTree());
    mnt = await newMountpoint('main');
    // rw on the kernel side, so that write attempts reach the server and get its EROFS.
    session = await mount(mnt, fs, { readOnly: false, entryTimeout: 1, attrTimeout: 1 });
  });

  after(async () => {
    await session?.unmount();
    for (const mountpoint of mountpoints) {
      if (await fuseMountAt(mountpoint)) detachSync(mountpoint);
    }
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('mounts a directory root, shown as fuse.<subtype> in the mount table', async () => {
    const info = await stat(mnt);
    assert.ok(info.isDirectory());
    assert.equal(info.mode & 0o777, 0o755);
    const entry = await fuseMountAt(mnt);
    assert.equal(entry?.fsType, `fuse.${SUBTYPE}`);
    assert.equal(entry?.source, 'memfs');
    assert.equal(session.protocol?.maxPages, 256);
    // 1 MiB readahead, raised past the kernel's 128 KiB through the bdi.
    assert.equal((await readFile(`/sys/class/bdi/${session.device}/read_ahead_kb`, 'utf8')).trim(), '1024');
  });

  it('serves small files with their attributes', async () => {
    assert.equal(await readFile(at('hello.txt'), 'utf8'), 'hello, world\n');
    assert.equal((await readFile(at('empty'))).length, 0);
    const info = await stat(at('hello.txt'), { bigint: true });
    assert.equal(info.size, 13n);
    assert.equal(Number(info.mode), constants.S_IFREG | 0o640);
    assert.deepEqual([info.uid, info.gid, info.nlink], [1000n, 1001n, 1n]);
    assert.equal(info.mtimeNs, BigInt(MTIME.sec) * 1_000_000_000n + BigInt(MTIME.nsec));
    assert.equal(info.ino, BigInt(fs.inodeOf('hello.txt')));
    await assert.rejects(stat(at('missing')), { code: 'ENOENT' });
  });

  it('a 50 MiB file read by 4 processes at once, then at random offsets, is byte-exact', async () => {
    const expected = sha256(BIG);
    const largestBefore = fs.largestRead;
    const sums = await Promise.all([1, 2, 3, 4].map(() => sh('sha256sum', [at('big.bin')], 60_000)));
    for (const sum of sums) assert.equal(sum.stdout.split(' ')[0], expected, sum.stderr);
    assert.ok(fs.largestRead >= largestBefore && fs.largestRead === MiB, `largest READ ${fs.largestRead}`);
    const handle = await open(at('big.bin'));
    try {
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          const offset = randomInt(BIG.length);
          const length = Math.min(randomInt(1, 300_000), BIG.length - offset);
          const { bytesRead, buffer } = await handle.read(Buffer.alloc(length), 0, length, offset);
          assert.equal(bytesRead, length);
          assert.ok(buffer.equals(BIG.subarray(offset, offset + length)), `range ${offset}+${length}`);
        }),
      );
    } finally {
      await handle.close();
    }
  });

  it('direct I/O: unaligned reads reach the filesystem as asked, up to 1 MiB in one READ', async () => {
    const handle = await open(at('direct.bin'));
    try {
      for (let i = 0; i < 40; i++) {
        const offset = randomInt(DIRECT.length);
        const length = Math.min(randomInt(1, 70_000), DIRECT.length - offset);
        const { bytesRead, buffer } = await handle.read(Buffer.alloc(length), 0, length, offset);
        assert.equal(bytesRead, length);
        assert.ok(buffer.equals(DIRECT.subarray(offset, offset + length)), `range ${offset}+${length}`);
      }
      const before = fs.counters.read;
      const { bytesRead } = await handle.read(Buffer.alloc(MiB), 0, MiB, MiB);
      assert.equal(bytesRead, MiB);
      // 256 pages per READ (max_pages); a buffer not page-aligned spans 257 pages, hence two READs.
      assert.ok(fs.counters.read - before <= 2, `${fs.counters.read - before} READs for a 1 MiB read()`);
      assert.ok(fs.largestRead > MiB - 4096, `largest READ ${fs.largestRead} bytes`);
      const tail = await handle.read(Buffer.alloc(100), 0, 100, DIRECT.length - 10);
      assert.equal(tail.bytesRead, 10, 'short read at end of file');
    } finally {
      await handle.close();
    }
  });

  it(`lists a directory of ${DIRECTORY_ENTRIES} entries (READDIRPLUS)`, async () => {
    const lookups = fs.counters.lookup;
    const names = await readdir(at('many'));
    for (let i = 0; i < names.length; i += 250)
      await Promise.all(names.slice(i, i + 250).map((name) => lstat(at(`many/${name}`))));
    // The listing carried every entry's attributes: a stat of each needs no LOOKUP while they are
    // valid (1 s here; the slowest machine may see some expire). READDIRPLUS_AUTO would list all but
    // the first batch plainly and look up nearly every name.
    const looked = fs.counters.lookup - lookups;
    assert.ok(looked < DIRECTORY_ENTRIES / 2, `${looked} LOOKUPs after listing ${DIRECTORY_ENTRIES} names`);
    assert.equal(names.length, DIRECTORY_ENTRIES);
    assert.equal(new Set(names).size, DIRECTORY_ENTRIES);
    assert.ok(names.includes('file-00000') && names.includes('file-04999'));
    const ls = await sh('ls', ['-1', at('many')]);
    assert.equal(ls.stdout.trim().split('\n').length, DIRECTORY_ENTRIES);
    const long = await sh('ls', ['-la', at('many')]);
    const lines = long.stdout.trim().split('\n').slice(1); // "total N"
    assert.equal(lines.length, DIRECTORY_ENTRIES + 2, '"." and ".." too');
    assert.ok(fs.counters.readdirplus > 0, 'READDIRPLUS used');
    assert.equal(fs.counters.readdir, 0, 'never a plain READDIR (no READDIRPLUS_AUTO)');
    const withDots = await sh('ls', ['-a1', at('sub')]);
    assert.deepEqual(withDots.stdout.trim().split('\n'), ['.', '..', 'hard-b', 'relative']);
  });

  it('symlinks: readlink, following, relative, dangling', async () => {
    assert.equal(await readlink(at('link')), 'hello.txt');
    assert.equal(await readlink(at('sub/relative')), '../hello.txt');
    assert.ok((await lstat(at('link'))).isSymbolicLink());
    assert.equal(await readFile(at('link'), 'utf8'), 'hello, world\n');
    assert.equal(await readFile(at('sub/relative'), 'utf8'), 'hello, world\n');
    assert.equal((await stat(at('link'))).ino, (await stat(at('hello.txt'))).ino);
    await assert.rejects(stat(at('dangling')), { code: 'ENOENT' });
    assert.equal((await sh('readlink', [at('dangling')])).stdout.trim(), 'does/not/exist');
  });

  it('hard links share st_ino and count two links', async () => {
    const result = await sh('stat', ['-c', '%i %h', at('hard-a'), at('sub/hard-b')]);
    const [a, b] = result.stdout.trim().split('\n');
    assert.equal(a, b);
    assert.equal(a, `${fs.inodeOf('hard-a')} 2`);
    assert.equal(await readFile(at('sub/hard-b'), 'utf8'), 'linked\n');
  });

  it('extended attributes: getfattr dump, a value over the probe, and a missing name', async () => {
    const dump = await sh('getfattr', ['-d', '-m', '-', '--absolute-names', at('hello.txt')]);
    assert.equal(dump.code, 0, dump.stderr);
    assert.match(dump.stdout, /user\.greeting="hello"/);
    assert.match(dump.stdout, /trusted\.origin="memfs"/);
    const big = await sh('getfattr', [
      '-n',
      'user.big',
      '--only-values',
      '--absolute-names',
      at('hello.txt'),
    ]);
    assert.equal(big.stdout, BIG_XATTR);
    const missing = await sh('getfattr', ['-n', 'user.none', '--absolute-names', at('hello.txt')]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /No such attribute/);
    const none = await sh('getfattr', ['-d', '-m', '-', '--absolute-names', at('empty')]);
    assert.equal(none.stdout.trim(), '');
  });

  it('fifo and device inodes carry their type and device numbers', async () => {
    const result = await sh('stat', ['-c', '%F %t %T', at('fifo'), at('null-like'), at('disk')]);
    assert.deepEqual(result.stdout.trim().split('\n'), [
      'fifo 0 0',
      'character special file 1 3',
      'block special file 8 1',
    ]);
  });

  it('statfs: stat -f and df', async () => {
    const result = await sh('stat', ['-f', '-c', '%b %f %a %S %l', mnt]);
    const [blocks, free, avail, size, namelen] = result.stdout.trim().split(' ');
    assert.deepEqual([blocks, free, avail, size, namelen], ['25600', '0', '0', '4096', '255']);
    const df = await sh('df', ['-P', mnt]);
    assert.match(df.stdout, /^memfs\s+102400\s+102400\s+0\s+100%/m);
  });

  it('every write attempt fails with EROFS and changes nothing', async () => {
    const attempts: string[][] = [
      ['touch', at('hello.txt')],
      ['touch', at('new-file')],
      ['mkdir', at('new-dir')],
      ['sh', '-c', `echo overwritten > ${at('hello.txt')}`],
      ['sh', '-c', `echo appended >> ${at('hello.txt')}`],
      ['rm', '-f', at('hello.txt')],
      ['mv', at('hello.txt'), at('renamed')],
      ['ln', at('hello.txt'), at('hard-c')],
      ['ln', '-s', 'x', at('symlink-c')],
      ['chmod', '600', at('hello.txt')],
      ['truncate', '-s', '0', at('hello.txt')],
      ['setfattr', '-n', 'user.x', '-v', 'y', at('hello.txt')],
      ['mkfifo', at('new-fifo')],
    ];
    for (const [file, ...args] of attempts) {
      const result = await sh(file!, args);
      assert.notEqual(result.code, 0, `${file} ${args.join(' ')} succeeded`);
      assert.match(result.stderr, /Read-only file system/, `${file} ${args.join(' ')}: ${result.stderr}`);
    }
    assert.equal(await readFile(at('hello.txt'), 'utf8'), 'hello, world\n');
    assert.ok((session.stats.errors.EROFS ?? 0) >= attempts.length - 1);
  });

  it('a filesystem error becomes EIO for the reader, and the session carries on', async () => {
    const result = await sh('cat', [at('failing.bin')]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /Input\/output error/);
    assert.equal(await readFile(at('hello.txt'), 'utf8'), 'hello, world\n');
  });

  it('a read blocked in the filesystem is interrupted by SIGINT: the reader dies promptly', async () => {
    const startedBefore = slowReads.started;
    const abortedBefore = fs.abortedReads;
    const began = Date.now();
    const result = await sh('timeout', ['-s', 'INT', '1', 'cat', at('slow.bin')], 20_000);
    const elapsed = Date.now() - began;
    assert.equal(result.code, 124, 'timeout reports that it had to signal');
    assert.ok(elapsed < 5000, `cat took ${elapsed} ms to die`);
    assert.ok(slowReads.started > startedBefore);
    assert.ok(fs.abortedReads > abortedBefore, 'the READ saw its signal aborted');
    assert.ok(session.stats.interrupts > 0);
    assert.equal(await readFile(at('hello.txt'), 'utf8'), 'hello, world\n');
  });

  it('while a READ is blocked, lookups, stats, listings and other reads go on', async () => {
    const startedBefore = slowReads.started;
    const cat = spawn('cat', [at('slow.bin')], { stdio: 'ignore' });
    try {
      await until(() => slowReads.started > startedBefore, 'the blocked READ');
      const concurrent = await Promise.all([
        sh('stat', ['-c', '%s', at('hello.txt'), at('sub/hard-b'), at('many/file-01234')], 5000),
        sh('ls', [at('many')], 5000),
        sh('sha256sum', [at('big.bin')], 10_000),
        readFile(at('sub/relative'), 'utf8'),
      ]);
      assert.equal(concurrent[0].stdout.trim().split('\n').join(','), '13,7,0');
      assert.equal(concurrent[1].stdout.trim().split('\n').length, DIRECTORY_ENTRIES);
      assert.equal(concurrent[2].stdout.split(' ')[0], sha256(BIG));
      assert.equal(concurrent[3], 'hello, world\n');
      assert.ok(session.pendingRequests >= 1, 'the READ is still pending');
    } finally {
      cat.kill('SIGINT');
    }
    const exit = await exitOf(cat);
    assert.equal(exit.signal, 'SIGINT');
  });
});

describe('fuse: ways a session ends', { skip, timeout: 120_000 }, () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'damselfly-fuse-'));
  });

  after(async () => {
    for (const mountpoint of mountpoints) {
      if (await fuseMountAt(mountpoint)) detachSync(mountpoint);
    }
    await rm(root, { recursive: true, force: true });
  });

  function smallTree(): MemoryFilesystem {
    const fs = new MemoryFilesystem();
    fs.addFile('file', Buffer.from('content\n'));
    return fs;
  }

  it('unmount() detaches the mount and resolves closed', async () => {
    const mnt = await newMountpoint('by-unmount');
    const session = await mount(mnt, smallTree());
    assert.equal(await readFile(join(mnt, 'file'), 'utf8'), 'content\n');
    await session.unmount();
    await session.closed;
    assert.equal(await fuseMountAt(mnt), undefined);
    assert.deepEqual(await readdir(mnt), [], 'the plain directory is back');
    await session.unmount(); // idempotent
  });

  it('umount(8) from outside ends the session', async () => {
    const mnt = await newMountpoint('by-umount');
    const session = await mount(mnt, smallTree());
    await stat(join(mnt, 'file'));
    const result = await sh('umount', [mnt]);
    assert.equal(result.code, 0, result.stderr);
    await Promise.race([session.closed, delay(10_000).then(() => assert.fail('closed did not resolve'))]);
    assert.equal(await fuseMountAt(mnt), undefined);
  });

  it('a connection aborted by the kernel (fusectl) ends the session and the dead mount is detached', async () => {
    const mnt = await newMountpoint('aborted');
    const session = await mount(mnt, smallTree());
    await stat(join(mnt, 'file'));
    // What an administrator does with `echo 1 > /sys/fs/fuse/connections/<dev>/abort`.
    assert.equal(await abortConnection(session.device!), true);
    await Promise.race([session.closed, delay(10_000).then(() => assert.fail('closed did not resolve'))]);
    await until(() => !isMountedSync(mnt), 'the dead mount to be detached');
    assert.ok((await stat(mnt)).isDirectory());
  });

  it('unmount() of a busy mount detaches it lazily and aborts the connection after a grace period', async () => {
    const mnt = await newMountpoint('busy');
    const session = await mount(mnt, smallTree());
    // Not spawn({ cwd: mnt }): libuv waits for the child's exec synchronously, and the child's chdir
    // into the mount needs this very thread to answer — a deadlock.
    const inside = spawn('sh', ['-c', `cd '${mnt}' && exec sleep 60`], { stdio: 'ignore' });
    try {
      await delay(200);
      const began = Date.now();
      await session.unmount();
      assert.ok(Date.now() - began < 15_000);
      assert.equal(await fuseMountAt(mnt), undefined);
    } finally {
      inside.kill('SIGKILL');
    }
    await exitOf(inside);
  });

  it('the default mount is ro: the kernel refuses writes itself', async () => {
    const mnt = await newMountpoint('ro');
    const session = await mount(mnt, smallTree());
    try {
      const result = await sh('touch', [join(mnt, 'file')]);
      assert.match(result.stderr, /Read-only file system/);
      assert.match((await fuseMountAt(mnt))?.fsType ?? '', /^fuse\./);
      assert.equal(session.stats.requests.SETATTR, undefined, 'the server was not even asked');
    } finally {
      await session.unmount();
    }
  });

  it('a server killed with SIGKILL leaves a dead mount that unmountStale() removes', async () => {
    const mnt = await newMountpoint('killed');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, '../helpers/fuse-mount-child.ts'), mnt],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await waitForLine(child, 'ready');
      assert.equal((await sh('cat', [join(mnt, 'hello.txt')], 5000)).stdout, 'hello from the child\n');
      child.kill('SIGKILL');
      await exitOf(child);
      await assert.rejects(stat(mnt), { code: 'ENOTCONN' });
      assert.equal(await unmountStale(mnt), true);
      assert.equal(await fuseMountAt(mnt), undefined);
      assert.ok((await stat(mnt)).isDirectory());
      assert.equal(await unmountStale(mnt), false, 'nothing left to remove');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('SIGTERM to a server using unmountOnTermination unmounts, then the process dies of SIGTERM', async () => {
    const mnt = await newMountpoint('terminated');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, '../helpers/fuse-mount-child.ts'), mnt, '--signals'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await waitForLine(child, 'ready');
      assert.ok(await fuseMountAt(mnt));
      child.kill('SIGTERM');
      const exit = await exitOf(child);
      assert.equal(exit.signal, 'SIGTERM');
      assert.equal(await fuseMountAt(mnt), undefined);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('process.exit() while mounted: the exit hook aborts the connection and detaches the mount', async () => {
    const mnt = await newMountpoint('exited');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, '../helpers/fuse-mount-child.ts'), mnt, '--exit'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await waitForLine(child, 'ready');
      const exit = await exitOf(child);
      assert.equal(exit.code, 3);
      assert.equal(await fuseMountAt(mnt), undefined);
      assert.ok((await stat(mnt)).isDirectory());
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('refuses a mountpoint that is not a directory, and reports mount(8) failures', async () => {
    const file = join(root, 'not-a-dir');
    await (await open(file, 'w')).close();
    await assert.rejects(mount(file, smallTree()), { name: 'FuseSessionError', code: 'EINVAL' });
    await assert.rejects(mount(join(root, 'absent'), smallTree()), { code: 'EINVAL' });
    await assert.rejects(mount(root, smallTree(), { fsName: 'bad name' }), { code: 'EINVAL' });
    const aborted = AbortSignal.abort();
    await assert.rejects(mount(root, smallTree(), { signal: aborted }), { code: 'EABORTED' });
  });
});

async function waitForLine(child: ChildProcess, line: string, timeoutMs = 30_000): Promise<void> {
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child never printed "${line}": ${seen}`)), timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      seen += chunk;
      if (seen.split('\n').includes(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`child exited (${code ?? signal}) before "${line}"`));
    });
  });
}
