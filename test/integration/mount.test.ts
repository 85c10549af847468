/**
 * `damselfly mount` end to end, on real kernel FUSE mounts driven through the built CLI:
 * (a) an `image build` output dir holding every kind of file mounts as the identical tree (and with
 *     the same st_ino/sizes the kernel's EROFS driver shows for the same bootstrap);
 * (b) an image converted into a real registry, behind a byte-counting proxy: reading one small file
 *     fetches a small fraction of the image;
 * (c) a blob corrupted in the registry's storage gives EIO, never wrong bytes, and works once fixed;
 * (d) many concurrent readers get correct bytes;
 * (e) after `kill -9`, a new mount with the same cache dir serves what was read with no registry bytes;
 * (f) SIGTERM or an external umount ends the process with status 0 and no stale mount;
 * plus one-line errors for bad input.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  link,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readlink,
  rm,
  statfs,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { FileNode } from '../../src/image/format/index.js';
import { RegistryClient } from '../../src/image/oci/index.js';
import { decodeSourceBootstrap, openImageSource } from '../../src/image/source/index.js';
import { cliPath, ManagedProcess } from '../helpers/cluster.js';
import { erofsUnavailable, type MountedErofs, mountErofs } from '../helpers/erofs.js';
import { addSpecialsOwnersXattrsAndTimes, writeAt } from '../helpers/files.js';
import { buildImage, type LayerEntry, pushImage } from '../helpers/oci-image.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;
/** Fifos, sockets and devices: `diff -r` cannot compare them (it would open them). */
const SPECIALS = 'specials';

let work: string;
const mountProcesses: ManagedProcess[] = [];
const mountpoints = new Set<string>();

async function sh(command: string, ...args: string[]): Promise<string> {
  return (await run(command, args, { maxBuffer: 256 * MiB })).stdout;
}

function damselfly(...args: string[]) {
  return run(process.execPath, [cliPath, ...args], { maxBuffer: 64 * MiB });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

// ---- mount processes ----

async function newMountpoint(name: string): Promise<string> {
  const path = join(work, name);
  await mkdir(path, { recursive: true });
  mountpoints.add(path);
  return path;
}

/** Whether something is mounted at `path` (from mountinfo, without touching the mount itself). */
async function mountedAt(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((line) => line.split(' ')[4] === path);
}

/** Starts `damselfly mount SRC MNT …` and waits for its "mounted" line. */
async function startMount(name: string, src: string, mountpoint: string, ...flags: string[]) {
  const proc = ManagedProcess.spawn(name, ['mount', src, mountpoint, ...flags], work);
  mountProcesses.push(proc);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const out = await readFile(proc.stdoutPath, 'utf8').catch(() => '');
    if (out.includes('mounted ')) return proc;
    if (!proc.running) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`mount did not come up:\n${await proc.logTail()}`);
}

/** Ends every mount process and detaches whatever is left mounted, whatever the tests did. */
async function cleanUpMounts(): Promise<void> {
  for (const proc of mountProcesses.splice(0)) await proc.stop('SIGKILL', 2000).catch(() => undefined);
  for (const path of mountpoints) {
    if (await mountedAt(path)) await run('umount', ['-l', path]).catch(() => undefined);
  }
}

// ---- (a) a tree with every kind of file ----

async function _createSourceTree(root: string): Promise<void> {
  await mkdir(root);
  await writeFile(join(root, 'empty'), '');
  await writeFile(join(root, 'small.txt'), 'hello, mount\n');
  await writeFile(join(root, 'one-chunk'), randomBytes(MiB));
  const random = randomBytes(6 * MiB);
  // In-file repeat (dedup), a zero stretch (holes), a partial last chunk.
  await writeFile(
    join(root, 'big.bin'),
    Buffer.concat([random, random.subarray(0, 2 * MiB), Buffer.alloc(3 * MiB), randomBytes(MiB + 12345)]),
  );
  await writeFile(
    join(root, 'text.log'),
    Array.from({ length: 50_000 }, (_, i) => `${i} INFO request ${i % 97} served\n`).join(''),
  );
  await writeAt(join(root, 'sparse.img'), randomBytes(5000), 20 * MiB + 12345);
  await writeAt(join(root, 'sparse.img'), Buffer.from('tail'), 40 * MiB - 4);

  await mkdir(join(root, 'names'));
  for (const name of ['ünïcødé-文件-😀', 'n'.repeat(255), ' space & $pecial (chars)', '-dash', '.hidden']) {
    await writeFile(join(root, 'names', name), `${name}\n`);
  }
  await mkdir(join(root, 'many'));
  for (let i = 0; i < 2000; i++) {
    await writeFile(join(root, 'many', `f${String(i).padStart(4, '0')}`), `content ${i % 700}\n`);
  }

  await mkdir(join(root, 'links'));
  await writeFile(join(root, 'links', 'original'), randomBytes(300 * KiB));
  await link(join(root, 'links', 'original'), join(root, 'links', 'second-name'));
  await link(join(root, 'links', 'original'), join(root, 'many', 'third-name'));
  await symlink('original', join(root, 'links', 'short'));
  await symlink(`/${'long/'.repeat(818)}end`, join(root, 'links', 'long'));
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

function typeOf(st: Awaited<ReturnType<typeof lstat>>): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return st.isSocket() ? 'socket' : '?';
}

async function listTree(root: string): Promise<string[]> {
  return (await sh('find', root, '-mindepth', '0', '-print0')).split('\0').filter(Boolean);
}

/** lstat facts of every entry (paths relative), and the groups of hard-linked names. */
async function describeTree(
  root: string,
): Promise<{ entries: Map<string, EntryFacts>; linkGroups: string[][] }> {
  const entries = new Map<string, EntryFacts>();
  const byInode = new Map<bigint, string[]>();
  for (const path of await listTree(root)) {
    const name = relative(root, path) || '.';
    const st = await lstat(path, { bigint: true });
    const type = typeOf(st);
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

/** What the kernel's EROFS driver and our FUSE mount must agree on, per path. */
async function inodeFacts(root: string): Promise<Map<string, string>> {
  const facts = new Map<string, string>();
  for (const path of await listTree(root)) {
    const st = await lstat(path, { bigint: true });
    facts.set(
      relative(root, path) || '.',
      `ino=${st.ino} size=${st.size} blocks=${st.blocks} nlink=${st.nlink}`,
    );
  }
  return facts;
}

async function xattrDump(root: string): Promise<string> {
  const dump = await sh('getfattr', '-R', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root);
  return dump.split(`# file: ${root}`).sort().join('');
}

async function diffTrees(a: string, b: string): Promise<void> {
  try {
    await sh('diff', '-r', '--no-dereference', `--exclude=${SPECIALS}`, a, b);
  } catch (err) {
    assert.fail(`diff -r ${a} ${b}:\n${(err as { stdout?: string }).stdout ?? String(err)}`);
  }
}

// ---- (b)–(e) a registry behind a byte-counting proxy ----

/** Forwards everything to the registry and counts the bytes of blob responses, per digest. */
class CountingProxy {
  readonly blobBytes = new Map<string, number>();
  private constructor(
    private readonly server: Server,
    readonly host: string,
  ) {}

  static async start(registryHost: string): Promise<CountingProxy> {
    const [hostname, port] = registryHost.split(':') as [string, string];
    let self: CountingProxy | undefined;
    const server = createServer((req, res) => self!.forward(req, res, hostname, Number(port)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    self = new CountingProxy(server, `127.0.0.1:${(server.address() as AddressInfo).port}`);
    return self;
  }

  /** Blob bytes served so far, for some digests or all. */
  served(digests?: string[]): number {
    let total = 0;
    for (const [digest, bytes] of this.blobBytes) if (!digests || digests.includes(digest)) total += bytes;
    return total;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private forward(req: IncomingMessage, res: ServerResponse, hostname: string, port: number): void {
    const digest = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? '')?.[1];
    const upstream = request(
      { hostname, port, method: req.method, path: req.url, headers: req.headers },
      (response) => {
        res.writeHead(response.statusCode ?? 502, response.headers);
        if (digest && req.method === 'GET') {
          response.on('data', (chunk: Buffer) => {
            this.blobBytes.set(digest, (this.blobBytes.get(digest) ?? 0) + chunk.length);
          });
        }
        response.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  }
}

/** Deterministic, compressible text for the small files (so lz4 really compresses them). */
function smallFileContent(i: number): Buffer {
  const line = `file ${i}: ${'lorem ipsum dolor sit amet '.repeat(1 + (i % 5))}\n`;
  return Buffer.from(line.repeat(Math.ceil((2 * KiB + ((i * 7919) % (60 * KiB))) / line.length)));
}

const BIG_SIZE = 480 * MiB;
const SMALL_FILES = 1000;

const erofsSkip = await erofsUnavailable();
const fuseSkip =
  process.getuid?.() !== 0 ? 'needs root' : !existsSync('/dev/fuse') ? 'needs /dev/fuse' : undefined;

describe('damselfly mount', { skip: fuseSkip, timeout: 900_000 }, () => {
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-mount-'));
  });

  after(async () => {
    await cleanUpMounts();
    if (work) await rm(work, { recursive: true, force: true });
  });

  describe('(a) an image build output dir', () => {
    let source: string;
    const mounts: MountedErofs[] = [];

    before(async () => {
      source = join(work, 'source');
      await _createSourceTree(source);
      await damselfly('image', 'build', source, '-o', join(work, 'out-zstd'), '--json');
      await damselfly(
        'image',
        'build',
        source,
        '-o',
        join(work, 'out-none'),
        '--compressor',
        'none',
        '--json',
      );
    });

    after(async () => {
      for (const m of mounts) await m.unmount().catch(() => undefined);
      await cleanUpMounts();
    });

    it('mounts as the same tree: contents, modes, owners, mtimes, symlinks, hard links, devices, xattrs', async () => {
      const mnt = await newMountpoint('mnt-a');
      const proc = await startMount(
        'mount-a',
        join(work, 'out-zstd'),
        mnt,
        '--cache-dir',
        join(work, 'cache-a'),
      );
      await diffTrees(source, mnt);
      const [want, got] = await Promise.all([describeTree(source), describeTree(mnt)]);
      assert.deepEqual([...got.entries.keys()].sort(), [...want.entries.keys()].sort());
      for (const [name, facts] of want.entries) assert.deepEqual(got.entries.get(name), facts, name);
      assert.deepEqual(got.linkGroups, want.linkGroups);
      assert.equal(await xattrDump(mnt), await xattrDump(source));
      assert.equal(await sh('cat', join(mnt, 'owners', 'no-access')), 'secret\n', 'root reads mode 000');
      const fsType = (await readFile('/proc/self/mountinfo', 'utf8'))
        .split('\n')
        .find((l) => l.split(' ')[4] === mnt);
      assert.match(fsType ?? '', / - fuse\.damselfly /);
      assert.equal((await proc.stop('SIGTERM')).code, 0);
    });

    it('shows the st_ino, sizes and link counts the kernel EROFS driver shows', {
      skip: erofsSkip,
    }, async () => {
      const fuse = await newMountpoint('mnt-a-none');
      const kernel = await newMountpoint('mnt-a-kernel');
      const summaryBlobs = (await sh('ls', join(work, 'out-none', 'blobs'))).split('\n').filter(Boolean);
      mounts.push(
        await mountErofs(
          join(work, 'out-none', 'bootstrap'),
          summaryBlobs.map((b) => join(work, 'out-none', 'blobs', b)),
          kernel,
        ),
      );
      const proc = await startMount(
        'mount-a-none',
        join(work, 'out-none'),
        fuse,
        '--cache-dir',
        join(work, 'cache-a'),
      );
      const [viaFuse, viaKernel] = await Promise.all([inodeFacts(fuse), inodeFacts(kernel)]);
      assert.deepEqual([...viaFuse.keys()].sort(), [...viaKernel.keys()].sort());
      for (const [path, facts] of viaKernel) assert.equal(viaFuse.get(path), facts, path);
      assert.equal((await proc.stop('SIGTERM')).code, 0);
    });
  });

  describe('from a registry', () => {
    let registry: TestRegistry;
    let proxy: CountingProxy;
    let ref: string;
    let dataBlobs: string[];
    let imageBytes: number;
    let files: Map<string, FileNode>;
    let chunkOf: (path: string) => { blob: string; offset: number };
    let big: Buffer;
    let bigDigest: string;

    before(async () => {
      big = randomBytes(BIG_SIZE);
      bigDigest = sha256(big);
      registry = await startRegistry();
      proxy = await CountingProxy.start(registry.host);
      const entries: LayerEntry[] = [
        { path: 'data', type: 'dir' },
        { path: 'data/big.bin', content: big },
        { path: 'small', type: 'dir' },
        ...Array.from({ length: SMALL_FILES }, (_, i) => ({
          path: `small/f${i}`,
          content: smallFileContent(i),
        })),
      ];
      const image = await buildImage({ layers: [entries], compression: 'none' });
      await pushImage(new RegistryClient({ plainHttp: true }), `${registry.host}/app:src`, image);
      await damselfly(
        'image',
        'convert',
        `${registry.host}/app:src`,
        `${registry.host}/app:df`,
        '--plain-http',
        '--compressor',
        'lz4',
        '--no-progress',
      );
      ref = `${proxy.host}/app:df`;
      const decoded = decodeSourceBootstrap(
        await openImageSource(`${registry.host}/app:df`, { plainHttp: true }),
      );
      dataBlobs = decoded.image.blobs.map((b) => b.digest);
      imageBytes = decoded.image.blobs.reduce((sum, b) => sum + b.compressedSize, 0);
      files = new Map();
      const walk = (dir: typeof decoded.image.root, prefix: string) => {
        for (const [name, node] of dir.children) {
          if (node.kind === 'directory') walk(node, `${prefix}/${name}`);
          else if (node.kind === 'file') files.set(`${prefix}/${name}`, node);
        }
      };
      walk(decoded.image.root, '');
      chunkOf = (path) => {
        const chunk = decoded.image.chunks[files.get(path)!.chunks[0]!]!;
        return { blob: decoded.image.blobs[chunk.blobIndex]!.digest, offset: chunk.compressedOffset };
      };
    });

    after(async () => {
      await cleanUpMounts();
      await proxy?.close();
      await registry?.stop();
    });

    it('(b) reading one small file fetches at most 2% of the image from the registry', async () => {
      assert.ok(imageBytes > 480 * MiB, `image blobs are ${imageBytes} bytes`);
      const mnt = await newMountpoint('mnt-b');
      const before = proxy.served();
      await startMount('mount-b', ref, mnt, '--plain-http', '--cache-dir', join(work, 'cache-b'));
      const got = await readFile(join(mnt, 'small', 'f500'));
      assert.deepEqual(got, smallFileContent(500));
      const fetched = proxy.served() - before;
      const fraction = fetched / imageBytes;
      process.stdout.write(
        `# one small file: ${fetched} bytes from the registry (bootstrap included) = ${(fraction * 100).toFixed(3)}% of ${imageBytes}\n`,
      );
      assert.ok(fraction <= 0.02, `${fetched} bytes = ${(fraction * 100).toFixed(2)}% of the image`);
      assert.ok(proxy.served(dataBlobs) > 0, 'the file came from a data blob range');
    });

    it('(c) a corrupted blob gives EIO, never wrong bytes; fixed, the next read works', async () => {
      const path = '/small/f123';
      const { blob, offset } = chunkOf(path);
      const blobFile = registry.blobPath(blob);
      let corrupted = false;
      const flip = async () => {
        corrupted = !corrupted;
        const handle = await open(blobFile, 'r+');
        const byte = Buffer.alloc(1);
        await handle.read(byte, 0, 1, offset + 10);
        byte[0] = byte[0]! ^ 0xff;
        await handle.write(byte, 0, 1, offset + 10);
        await handle.close();
      };
      await flip();
      try {
        const mnt = await newMountpoint('mnt-c');
        const proc = await startMount(
          'mount-c',
          ref,
          mnt,
          '--plain-http',
          '--cache-dir',
          join(work, 'cache-c'),
        );
        await assert.rejects(readFile(join(mnt, path)), { code: 'EIO' });
        await assert.rejects(sh('cat', join(mnt, path)), /Input\/output error/);
        const log = await readFile(proc.stderrPath, 'utf8');
        assert.match(log, /chunk failed verification/);
        assert.match(log, new RegExp(blob.slice('sha256:'.length)));
        await flip();
        assert.deepEqual(await readFile(join(mnt, path)), smallFileContent(123));
      } finally {
        if (corrupted) await flip();
      }
    });

    it('(d) many concurrent readers of the same and of different files get correct bytes', async () => {
      const mnt = await newMountpoint('mnt-d');
      await startMount('mount-d', ref, mnt, '--plain-http', '--cache-dir', join(work, 'cache-d'));
      const bigPath = join(mnt, 'data', 'big.bin');
      const ranges = Array.from({ length: 24 }, (_, i) => ({
        offset: ((i * 37) % 400) * MiB + i * 999,
        length: 3 * MiB,
      }));
      const readRange = async ({ offset, length }: { offset: number; length: number }) => {
        const handle = await open(bigPath, 'r');
        try {
          const out = Buffer.alloc(length);
          const { bytesRead } = await handle.read(out, 0, length, offset);
          assert.equal(bytesRead, length);
          assert.ok(out.equals(big.subarray(offset, offset + length)), `big.bin @${offset}`);
        } finally {
          await handle.close();
        }
      };
      const smallReads = Array.from({ length: 300 }, (_, k) => (k * 17) % SMALL_FILES).map(async (i) => {
        assert.deepEqual(await readFile(join(mnt, 'small', `f${i}`)), smallFileContent(i), `f${i}`);
      });
      const wholeReads = [1, 2, 3].map(async () => {
        const out = await sh('sha256sum', bigPath);
        assert.equal(out.split(' ')[0], bigDigest);
      });
      await Promise.all([...ranges.map(readRange), ...ranges.map(readRange), ...smallReads, ...wholeReads]);
    });

    it('(e) after kill -9, a new mount with the same cache dir serves what was read without the registry', async () => {
      const mnt = await newMountpoint('mnt-e');
      const cacheDir = join(work, 'cache-e');
      const first = await startMount('mount-e1', ref, mnt, '--plain-http', '--cache-dir', cacheDir);
      const names = [7, 70, 700, 999].map((i) => `f${i}`);
      for (const name of names) await readFile(join(mnt, 'small', name));
      await sh('dd', `if=${join(mnt, 'data', 'big.bin')}`, 'of=/dev/null', 'bs=1M', 'skip=100', 'count=30');
      await new Promise((r) => setTimeout(r, 500)); // let the last group commit land
      await first.stop('SIGKILL');
      assert.ok(await mountedAt(mnt), 'the dead mount is still there');
      await assert.rejects(statfs(mnt), { code: 'ENOTCONN' });
      await sh('umount', '-l', mnt);

      await startMount('mount-e2', ref, mnt, '--plain-http', '--cache-dir', cacheDir);
      const before = proxy.served(dataBlobs);
      for (const name of names) {
        assert.deepEqual(await readFile(join(mnt, 'small', name)), smallFileContent(Number(name.slice(1))));
      }
      const handle = await open(join(mnt, 'data', 'big.bin'), 'r');
      // Well inside what the first mount read, so kernel readahead stays inside it too.
      const slice = Buffer.alloc(20 * MiB);
      await handle.read(slice, 0, slice.length, 105 * MiB);
      await handle.close();
      assert.ok(slice.equals(big.subarray(105 * MiB, 125 * MiB)));
      assert.equal(proxy.served(dataBlobs) - before, 0, 'no blob bytes from the registry');
    });

    it('(e) a dead mount at the mountpoint is detached by the next mount', async () => {
      const mnt = await newMountpoint('mnt-e-stale');
      const first = await startMount(
        'mount-e3',
        ref,
        mnt,
        '--plain-http',
        '--cache-dir',
        join(work, 'cache-e'),
      );
      await readFile(join(mnt, 'small', 'f8'));
      await first.stop('SIGKILL');
      await assert.rejects(statfs(mnt), { code: 'ENOTCONN' });
      await startMount('mount-e4', ref, mnt, '--plain-http', '--cache-dir', join(work, 'cache-e'));
      assert.deepEqual(await readFile(join(mnt, 'small', 'f7')), smallFileContent(7));
    });

    it('(f) SIGTERM unmounts and exits 0; so does an external umount', async () => {
      const mnt = await newMountpoint('mnt-f');
      const proc = await startMount(
        'mount-f1',
        ref,
        mnt,
        '--plain-http',
        '--cache-dir',
        join(work, 'cache-f'),
      );
      await readFile(join(mnt, 'small', 'f1'));
      assert.deepEqual(await proc.stop('SIGTERM'), { code: 0, signal: null });
      assert.equal(await mountedAt(mnt), false, 'no stale mount');

      const again = await startMount(
        'mount-f2',
        ref,
        mnt,
        '--plain-http',
        '--cache-dir',
        join(work, 'cache-f'),
      );
      await sh('umount', mnt);
      assert.deepEqual(await again.exited, { code: 0, signal: null });
      assert.equal(await mountedAt(mnt), false);
    });
  });

  it('fails with one clear line for a missing mountpoint, a bad reference, a bad backend', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['mount', work, join(work, 'no-such-dir')], /mountpoint .*no-such-dir.* does not exist/],
      [['mount', 'UPPER/Case:tag', work], /invalid|reference/i],
      [['mount', work, work, '--backend', 'p2p'], /--backend p2p needs an image reference/],
      [['mount', 'r.example/app:1', work, '--backend', 'p2p', '--proxy', 'https://x'], /invalid --proxy/],
      [['mount', join(work, 'no-such-image'), work], /no-such-image/],
    ];
    for (const [args, message] of cases) {
      await assert.rejects(damselfly(...args), (err: { code?: number; stderr?: string }) => {
        assert.equal(err.code, 1, args.join(' '));
        assert.match(err.stderr ?? '', message);
        assert.equal((err.stderr ?? '').trim().split('\n').length, 1, `one line: ${err.stderr}`);
        return true;
      });
    }
  });
});
