/**
 * `damselfly mount`, second milestone, on real kernel mounts through the built CLI:
 * - `--trace` writes the files read, in order; fed to `image build|convert --prefetch-files` it
 *   becomes the bootstrap's prefetch table (`image inspect --json`);
 * - prefetch of that table fills the cache (the API says done, then reading those files costs no
 *   backend bytes); `--prefetch-all` fills every blob's bitmap;
 * - the API socket answers (0600), and the cache hit ratio rises on reads of prefetched neighbours;
 * - `--mode kernel` shows the identical tree on the kernel EROFS driver, `--mode auto` picks it
 *   when the cache is complete (FUSE otherwise); the kernel mount is file-backed where Linux can
 *   (≥ 6.12), `--kernel-backing loop` puts loop devices under it; SIGTERM or an external umount
 *   exits 0 and leaves no mount and no loop device.
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
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { decodeBootstrap, type ImageBootstrap } from '../../src/image/format/index.js';
import { RegistryClient } from '../../src/image/oci/index.js';
import type { MountMetricsSnapshot, PrefetchProgress } from '../../src/mount/index.js';
import { cliPath } from '../helpers/cluster.js';
import { erofsUnavailable } from '../helpers/erofs.js';
import { apiGet, eventually, loopsOf, MountProcesses, mountTypeAt } from '../helpers/mount-process.js';
import { buildImage as buildOciImage, type LayerEntry, pushImage } from '../helpers/oci-image.js';
import { startRegistry } from '../helpers/registry.js';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;

const damselfly = (...args: string[]) => run(process.execPath, [cliPath, ...args], { maxBuffer: 64 * MiB });

const skip =
  process.getuid?.() !== 0
    ? 'needs root'
    : !existsSync('/dev/fuse')
      ? 'needs /dev/fuse'
      : await erofsUnavailable();

let work: string;
let mounts: MountProcesses;

/** Files read by the "container start" whose trace we record, in order. */
const READ_ORDER = ['/app/bin/main', '/app/lib/lib07.so', '/etc/config.json', '/app/lib/lib02.so'];

async function createTree(root: string): Promise<void> {
  await mkdir(join(root, 'app', 'bin'), { recursive: true });
  await mkdir(join(root, 'app', 'lib'));
  await mkdir(join(root, 'etc'));
  await mkdir(join(root, 'data'));
  await mkdir(join(root, 'small'));
  await writeFile(join(root, 'app', 'bin', 'main'), randomBytes(2 * MiB + 123), { mode: 0o755 });
  for (let i = 0; i < 12; i++) {
    await writeFile(
      join(root, 'app', 'lib', `lib${String(i).padStart(2, '0')}.so`),
      randomBytes(300 * KiB + i),
    );
  }
  await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ hello: 'world' }));
  await writeFile(join(root, 'data', 'big.bin'), randomBytes(24 * MiB));
  for (let i = 0; i < 40; i++) await writeFile(join(root, 'small', `f${i}`), `${i} `.repeat(2000 + i));
  await symlink('../lib/lib00.so', join(root, 'app', 'bin', 'lib-link'));
  await link(join(root, 'app', 'lib', 'lib01.so'), join(root, 'app', 'lib', 'lib01-hard.so'));
  await run('setfattr', ['-n', 'user.note', '-v', 'hello', join(root, 'etc', 'config.json')]);
  await run('chown', ['1234:5678', join(root, 'etc', 'config.json')]);
  await run('touch', ['-d', '@1600000000.5', join(root, 'small')]);
}

async function build(out: string, ...flags: string[]): Promise<ImageBootstrap> {
  await damselfly('image', 'build', join(work, 'src'), '-o', out, '--compressor', 'lz4', ...flags);
  return decodeBootstrap(await readFile(join(out, 'bootstrap'))).image;
}

async function inspectPrefetch(src: string, ...flags: string[]): Promise<string[]> {
  const { stdout } = await damselfly('image', 'inspect', src, '--json', ...flags);
  return JSON.parse(stdout).prefetch;
}

async function mountpoint(name: string): Promise<string> {
  const path = join(work, name);
  await mkdir(path, { recursive: true });
  return path;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

const metricsOf = (sock: string) => apiGet<MountMetricsSnapshot>(sock, '/api/v1/metrics');

async function prefetchDone(sock: string): Promise<PrefetchProgress> {
  return eventually('prefetch done', async () => {
    const { prefetch } = await metricsOf(sock);
    return prefetch && prefetch.state !== 'running' ? prefetch : undefined;
  });
}

/** Whether every chunk of blob `hex` has its bit in `<cache>/<hex>.chunks` (block = offset / 4096). */
async function bitmapFull(cacheDir: string, image: ImageBootstrap): Promise<boolean> {
  for (const [blobIndex, blob] of image.blobs.entries()) {
    const bits = (await readFile(join(cacheDir, `${blob.digest.slice(7)}.chunks`))).subarray(32);
    for (const chunk of image.chunks) {
      if (chunk.blobIndex !== blobIndex) continue;
      const block = chunk.uncompressedOffset / 4096;
      if (((bits[block >> 3]! >> (block & 7)) & 1) === 0) return false;
    }
  }
  return true;
}

/** lstat facts + content digest of every entry, by relative path. */
async function treeFacts(root: string): Promise<Map<string, string>> {
  const facts = new Map<string, string>();
  const walk = async (dir: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const st = await lstat(path, { bigint: true });
      let fact = `mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} mtime=${st.mtimeNs} nlink=${st.nlink}`;
      if (st.isFile()) fact += ` size=${st.size} sha=${sha256(await readFile(path))}`;
      if (st.isSymbolicLink()) fact += ' symlink';
      facts.set(relative(root, path), fact);
      if (st.isDirectory()) await walk(path);
    }
  };
  await walk(root);
  return facts;
}

/** The SOURCE column of the mount at `path` (a file for file-backed EROFS, else /dev/loopN). */
async function mountSource(path: string): Promise<string> {
  return (await run('findmnt', ['-n', '-o', 'SOURCE', path])).stdout.trim();
}

async function mountOptions(path: string): Promise<string> {
  return (await run('findmnt', ['-n', '-o', 'FS-OPTIONS', path])).stdout.trim();
}

function kernelAtLeast(wantMajor: number, wantMinor: number): boolean {
  const [major = 0, minor = 0] = release().split('.').map(Number);
  return major > wantMajor || (major === wantMajor && minor >= wantMinor);
}

/** Linux 6.12 added file-backed EROFS mounts (EROFS_FS_BACKED_BY_FILE); `--kernel-backing auto` uses them. */
const fileBackedErofs = kernelAtLeast(6, 12);

async function noLoopsFor(files: string[]): Promise<void> {
  await eventually(
    'loop devices detached',
    async () => {
      for (const file of files) if ((await loopsOf(file)).length > 0) return undefined;
      return true;
    },
    10_000,
  );
}

describe('damselfly mount: prefetch, trace, kernel mode, API', { skip, timeout: 900_000 }, () => {
  let plainImage: ImageBootstrap;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-mount-prefetch-'));
    mounts = new MountProcesses(work);
    await createTree(join(work, 'src'));
    plainImage = await build(join(work, 'plain'));
  });

  after(async () => {
    await mounts?.cleanUp();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('--trace lists the files read, in order; build --prefetch-files puts them in the prefetch table', async () => {
    const mnt = await mountpoint('mnt-trace');
    const sock = join(work, 'trace.sock');
    const trace = join(work, 'trace.txt');
    const proc = await mounts.start(
      'trace',
      join(work, 'plain'),
      mnt,
      '--cache-dir',
      join(work, 'cache-trace'),
      '--trace',
      trace,
      '--api-sock',
      sock,
    );
    assert.equal((await stat(sock)).mode & 0o777, 0o600, 'the API socket is 0600');
    for (const path of READ_ORDER) await readFile(join(mnt, path));
    await readFile(join(mnt, READ_ORDER[0]!)); // a second access is not a new line
    const api = await apiGet<{ files: Array<{ path: string; afterMs: number; at: string }> }>(
      sock,
      '/api/v1/trace',
    );
    assert.deepEqual(
      api.files.map((f) => f.path),
      READ_ORDER,
    );
    assert.ok(api.files.every((f, i) => i === 0 || f.afterMs >= api.files[i - 1]!.afterMs));
    assert.deepEqual(await proc.stop('SIGTERM'), { code: 0, signal: null });
    assert.equal(await readFile(trace, 'utf8'), `${READ_ORDER.join('\n')}\n`);

    const image = await build(join(work, 'traced'), '--prefetch-files', trace);
    assert.deepEqual(image.prefetch, READ_ORDER);
    assert.deepEqual(await inspectPrefetch(join(work, 'traced')), READ_ORDER);
  });

  it('an unknown prefetch path is one clear error naming it', async () => {
    await writeFile(join(work, 'bad-list'), '/app/bin/main\n/nope/one\n/nope/two\n');
    await assert.rejects(
      build(join(work, 'bad'), '--prefetch-files', join(work, 'bad-list')),
      (err: { stderr: string }) => {
        assert.match(
          err.stderr,
          /^damselfly: 2 of 3 prefetch paths are not in the image: \/nope\/one, \/nope\/two\n$/,
        );
        return true;
      },
    );
  });

  it('prefetch fills the cache: once done, reading the listed files costs no backend bytes', async () => {
    const mnt = await mountpoint('mnt-prefetch');
    const sock = join(work, 'prefetch.sock');
    await mounts.start(
      'prefetch',
      join(work, 'traced'),
      mnt,
      '--cache-dir',
      join(work, 'cache-prefetch'),
      '--api-sock',
      sock,
    );
    const progress = await prefetchDone(sock);
    assert.equal(progress.state, 'done');
    assert.equal(progress.bytesDone, progress.bytesTotal);
    assert.ok(progress.bytesTotal >= 2 * MiB + 2 * 300 * KiB, `prefetched ${progress.bytesTotal} bytes`);
    const before = await metricsOf(sock);
    assert.ok(before.backend.prefetchBytes > 0);
    for (const path of READ_ORDER) {
      assert.deepEqual(await readFile(join(mnt, path)), await readFile(join(work, 'src', path)));
    }
    const afterReads = await metricsOf(sock);
    assert.equal(afterReads.backend.bytes, before.backend.bytes, 'no backend bytes for prefetched files');
    assert.equal(afterReads.cache.misses, 0);
    assert.equal(afterReads.cache.hitRatio, 1);
    assert.ok(afterReads.reads.count > 0);
    const daemon = await apiGet<Record<string, unknown>>(sock, '/api/v1/daemon');
    assert.equal(daemon.state, 'mounted');
    assert.equal(daemon.mode, 'fuse');
    assert.equal(daemon.mountpoint, mnt);
    assert.ok((daemon.uptimeSeconds as number) > 0);
    const prom = await apiGet<string>(sock, '/metrics');
    assert.match(prom, /^damselfly_mount_backend_bytes_total\{purpose="prefetch"\} [1-9]\d*$/m);
    assert.match(prom, /^damselfly_mount_cache_hit_ratio 1$/m);
    assert.match(prom, /^damselfly_mount_prefetch_state\{state="done"\} 1$/m);
    // Prefetched files are complete in the cache: the FUSE reader threads answer their reads.
    assert.ok(afterReads.reads.fast > 0, 'reads of prefetched files served by the reader threads');
    assert.match(prom, /^damselfly_mount_fast_reads_total [1-9]/m);
  });

  it('the hit ratio rises when a read finds neighbours an earlier fetch brought in', async () => {
    const mnt = await mountpoint('mnt-ratio');
    const sock = join(work, 'ratio.sock');
    await mounts.start(
      'ratio',
      join(work, 'plain'),
      mnt,
      '--cache-dir',
      join(work, 'cache-ratio'),
      '--api-sock',
      sock,
    );
    await readFile(join(mnt, 'small', 'f0'));
    const first = await metricsOf(sock);
    assert.equal(first.cache.hitRatio, 0);
    assert.ok(first.backend.bytes > 0 && first.backend.prefetchBytes === 0, 'no prefetch table, no prefetch');
    // Chunks still being committed are served from memory and counted as misses: let the commit land.
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 1; i < 10; i++) await readFile(join(mnt, 'small', `f${i}`));
    const later = await metricsOf(sock);
    assert.ok(later.cache.hitRatio! > 0.5, `hit ratio ${later.cache.hitRatio}`);
    assert.equal(later.backend.bytes, first.backend.bytes, 'the 1 MiB fetch brought the neighbours');
  });

  it('--prefetch-all fills every blob bitmap; --mode auto then picks the kernel', async () => {
    const cache = join(work, 'cache-all');
    const mnt = await mountpoint('mnt-all');
    const sock = join(work, 'all.sock');
    const proc = await mounts.start(
      'all',
      join(work, 'plain'),
      mnt,
      '--cache-dir',
      cache,
      '--prefetch-all',
      '--prefetch-rate',
      '64MiB',
      '--api-sock',
      sock,
    );
    const progress = await prefetchDone(sock);
    assert.equal(progress.state, 'done');
    assert.equal(progress.chunksTotal, plainImage.chunks.length);
    assert.ok(await bitmapFull(cache, plainImage), 'every chunk bit set');
    assert.equal(await mountTypeAt(mnt), 'fuse.damselfly');
    assert.deepEqual(await proc.stop('SIGTERM'), { code: 0, signal: null });
    assert.equal(await mountTypeAt(mnt), undefined);

    const auto = await mounts.start(
      'auto',
      join(work, 'plain'),
      mnt,
      '--cache-dir',
      cache,
      '--kernel-backing',
      'loop',
      '--api-sock',
      sock,
    );
    const cacheFiles = (await readdir(cache)).map((name) => join(cache, name));
    mounts.watchLoops(...cacheFiles);
    assert.equal(await mountTypeAt(mnt), 'erofs');
    const daemon = await apiGet<{ mode: string; kernelBacking: string }>(sock, '/api/v1/daemon');
    assert.deepEqual([daemon.mode, daemon.kernelBacking], ['kernel', 'loop']);
    assert.equal((await mountSource(mnt)).startsWith('/dev/loop'), true, 'mounted from a loop device');
    for (const file of cacheFiles.filter((f) => f.endsWith('.bootstrap')))
      assert.equal((await loopsOf(file)).length, 1, `${file} is behind one loop device`);
    await run('umount', [mnt]); // an external umount ends the process cleanly
    assert.deepEqual(await auto.exited, { code: 0, signal: null });
    await noLoopsFor((await readdir(cache)).map((name) => join(cache, name)));
  });

  it('--mode auto stays on FUSE while the cache is incomplete', async () => {
    const mnt = await mountpoint('mnt-auto-fuse');
    const proc = await mounts.start(
      'auto-fuse',
      join(work, 'plain'),
      mnt,
      '--cache-dir',
      join(work, 'cache-ratio'),
    );
    assert.equal(await mountTypeAt(mnt), 'fuse.damselfly');
    assert.deepEqual(await proc.stop('SIGTERM'), { code: 0, signal: null });
  });

  it('--mode kernel caches every blob, then shows the identical tree on EROFS; SIGTERM leaves nothing', async () => {
    const cache = join(work, 'cache-kernel');
    const fuseMnt = await mountpoint('mnt-kernel-fuse');
    const kernelMnt = await mountpoint('mnt-kernel');
    const fuse = await mounts.start(
      'kernel-fuse',
      join(work, 'plain'),
      fuseMnt,
      '--mode',
      'fuse',
      '--cache-dir',
      join(work, 'cache-kernel-fuse'),
    );
    const kernel = await mounts.start(
      'kernel',
      join(work, 'plain'),
      kernelMnt,
      '--mode',
      'kernel',
      '--cache-dir',
      cache,
    );
    const cacheFiles = (await readdir(cache)).map((name) => join(cache, name));
    mounts.watchLoops(...cacheFiles);
    assert.ok(
      cacheFiles.some((f) => f.endsWith('.bootstrap')),
      'the bootstrap is in the cache dir',
    );
    const { stdout } = await run('findmnt', ['-n', '-o', 'FSTYPE', kernelMnt]);
    assert.equal(stdout.trim(), 'erofs');
    if (fileBackedErofs) {
      // auto picks a file-backed mount: the source is the bootstrap file itself, no loop device.
      const bootstrap = cacheFiles.find((f) => f.endsWith('.bootstrap'))!;
      assert.equal(await mountSource(kernelMnt), bootstrap);
      for (const file of cacheFiles) assert.deepEqual(await loopsOf(file), [], `${file} has no loop device`);
      // 6.14+ reads the cache files with direct I/O: no second page-cache copy of them.
      if (kernelAtLeast(6, 14)) assert.match(await mountOptions(kernelMnt), /(^|,)directio(,|$)/);
    }
    assert.ok(await bitmapFull(cache, plainImage));
    await run('diff', ['-r', '--no-dereference', join(work, 'src'), kernelMnt]);
    const [source, viaKernel, viaFuse] = await Promise.all([
      treeFacts(join(work, 'src')),
      treeFacts(kernelMnt),
      treeFacts(fuseMnt),
    ]);
    // The source's directories have their own st_nlink/timestamps rules on ext4/tmpfs: compare files.
    const files = (facts: Map<string, string>) =>
      new Map([...facts].filter(([path]) => !(source.get(path) ?? '').startsWith('mode=4')));
    assert.deepEqual(files(viaKernel), files(source));
    assert.deepEqual(viaKernel, viaFuse, 'kernel and FUSE show the same attributes');
    const { stdout: xattr } = await run('getfattr', [
      '-n',
      'user.note',
      '--only-values',
      join(kernelMnt, 'etc', 'config.json'),
    ]);
    assert.equal(xattr, 'hello');
    assert.deepEqual(await kernel.stop('SIGTERM'), { code: 0, signal: null });
    assert.equal(await mountTypeAt(kernelMnt), undefined);
    await noLoopsFor(cacheFiles);
    assert.deepEqual(await fuse.stop('SIGTERM'), { code: 0, signal: null });
  });

  it('image convert --prefetch-files puts the trace into the converted bootstrap', async () => {
    const registry = await startRegistry();
    try {
      const entries: LayerEntry[] = [
        { path: 'app', type: 'dir' },
        { path: 'app/bin', type: 'dir' },
        { path: 'app/bin/main', content: randomBytes(64 * KiB) },
        { path: 'etc', type: 'dir' },
        { path: 'etc/config.json', content: Buffer.from('{}') },
      ];
      const image = await buildOciImage({ layers: [entries], compression: 'none' });
      await pushImage(new RegistryClient({ plainHttp: true }), `${registry.host}/app:src`, image);
      await writeFile(join(work, 'convert-list'), '/etc/config.json\n/app/bin/main\n');
      const convert = (list: string) =>
        damselfly(
          'image',
          'convert',
          `${registry.host}/app:src`,
          `${registry.host}/app:df`,
          '--plain-http',
          '--no-progress',
          '--prefetch-files',
          list,
        );
      await convert(join(work, 'convert-list'));
      assert.deepEqual(await inspectPrefetch(`${registry.host}/app:df`, '--plain-http'), [
        '/etc/config.json',
        '/app/bin/main',
      ]);
      await writeFile(join(work, 'convert-bad'), '/app/lib/lib07.so\n');
      await assert.rejects(
        convert(join(work, 'convert-bad')),
        /1 of 1 prefetch paths are not in the image: \/app\/lib\/lib07.so/,
      );
    } finally {
      await registry.stop();
    }
  });
});
