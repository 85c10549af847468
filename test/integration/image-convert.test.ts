/**
 * `damselfly image convert` against a real docker-registry: a 3-layer OCI image whose upper layers
 * delete files, make a directory opaque, replace a directory by a file and hard-link across layers is
 * converted through the CLI; `image unpack` + a kernel EROFS mount must show exactly the tree a
 * reference extraction of the layers gives. Also: dedup across layers, `--chunk-dict`, multi-platform
 * indexes, `image check` finding a flipped byte, and a failed conversion tagging nothing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { ImageSummary } from '../../src/image/inspect/index.js';
import { parseReference, RegistryClient, StaticCredentialStore } from '../../src/image/oci/index.js';
import { cliPath } from '../helpers/cluster.js';
import { erofsUnavailable, fsckErofs, type MountedErofs, mountErofs } from '../helpers/erofs.js';
import { flipByte, seededBytes } from '../helpers/files.js';
import { applyLayersToDirectory, describeTree } from '../helpers/layer-reference.js';
import {
  buildImage,
  buildIndex,
  type LayerEntry,
  opaqueWhiteout,
  pushImage,
  pushIndex,
  type TestImage,
  whiteout,
} from '../helpers/oci-image.js';
import { startRegistry, TEST_USER, type TestRegistry } from '../helpers/registry.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

let work: string;
let registry: TestRegistry;
const client = new RegistryClient({ plainHttp: true });
const mounts: MountedErofs[] = [];

function damselfly(...args: string[]) {
  return run(process.execPath, [cliPath, ...args], { maxBuffer: 64 * MiB });
}

/** Runs the CLI; returns its exit code and stderr whatever happens. */
async function damselflyExit(...args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await damselfly(...args);
    return { code: 0, stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, stderr: e.stderr ?? '' };
  }
}

/** Runs the CLI expecting failure; returns its stderr. */
async function damselflyFails(...args: string[]): Promise<string> {
  try {
    await damselfly(...args);
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    assert.notEqual(e.code, 0);
    return e.stderr ?? '';
  }
  assert.fail(`damselfly ${args.join(' ')} succeeded`);
}

function ref(repository: string, tag: string): string {
  return `${registry.host}/${repository}:${tag}`;
}

const shared = seededBytes('shared', 3 * MiB + 1234);

/** Three layers exercising every merge rule. */
function layers(): LayerEntry[][] {
  return [
    [
      { path: 'etc', type: 'dir' },
      { path: 'etc/hostname', content: 'base\n' },
      { path: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n', mode: 0o600 },
      { path: 'opt', type: 'dir' },
      { path: 'opt/old-a', content: 'a' },
      { path: 'opt/old-b', content: 'b' },
      { path: 'opt/sub', type: 'dir' },
      { path: 'opt/sub/deep', content: 'deep' },
      { path: 'data', type: 'dir', mode: 0o750, uid: 1000, gid: 1000 },
      { path: 'data/shared.bin', content: shared, uid: 1000, gid: 1000 },
      { path: 'data/sparse.bin', content: Buffer.concat([Buffer.alloc(2 * MiB), Buffer.from('end')]) },
      { path: 'victim', type: 'dir' },
      { path: 'victim/file', content: 'to be replaced by a file' },
      { path: 'bin', type: 'dir' },
      { path: 'bin/tool', content: seededBytes('tool', 100_000), mode: 0o755 },
      { path: 'bin/alias', type: 'symlink', linkname: 'tool' },
      { path: 'dev', type: 'dir' },
      { path: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
      { path: 'dev/loop9', type: 'block', devmajor: 7, devminor: 9, mode: 0o660 },
      { path: 'dev/pipe', type: 'fifo' },
      { path: 'xattr-file', content: 'x', xattrs: { 'user.origin': 'layer1', 'trusted.flag': 'y' } },
    ],
    [
      whiteout('etc/hostname'),
      { path: 'etc/motd', content: 'hello from layer 2\n' },
      opaqueWhiteout('opt'),
      { path: 'opt/new', content: 'only this survives in opt' },
      whiteout('victim'),
      { path: 'victim', content: 'now a file' },
      { path: 'data/copy.bin', content: shared }, // the same bytes again: chunks stored once
      { path: 'bin/tool-link', type: 'link', linkname: 'bin/tool' }, // hard link to a lower-layer file
    ],
    [
      { path: 'etc/hostname', content: 'recreated\n' },
      { path: 'etc/motd', content: 'replaced in layer 3\n', mode: 0o444 },
      { path: 'bin/tool', content: seededBytes('tool', 100_000), mode: 0o755 },
      { path: 'empty', content: '' },
      { path: 'unicode-ĉiuĵaŭde-日本', content: 'ü' },
    ],
  ];
}

async function unpackAndMount(reference: string, name: string): Promise<string> {
  const out = join(work, `${name}-unpacked`);
  const { stdout } = await damselfly('image', 'unpack', reference, '--plain-http', '-o', out);
  assert.match(stdout, /mount -t erofs -o ro,device=/);
  const blobs = (await readdir(join(out, 'blobs'))).filter((f) => f.endsWith('.data'));
  const bootstrap = join(out, 'bootstrap');
  // Device order matters: take it from inspect (device-table order), not from the directory listing.
  const summary = await inspect(reference);
  const ordered = summary.blobs.map((b) => join(out, 'blobs', `${b.digest.slice(7)}.data`));
  assert.equal(ordered.length, blobs.length);
  const fsck = await fsckErofs(bootstrap, ordered);
  assert.equal(fsck.exitCode, 0, fsck.output);
  const mnt = join(work, `${name}-mnt`);
  await mkdir(mnt, { recursive: true });
  mounts.push(await mountErofs(bootstrap, ordered, mnt));
  return mnt;
}

async function inspect(reference: string): Promise<ImageSummary> {
  const { stdout } = await damselfly('image', 'inspect', reference, '--plain-http', '--json');
  return JSON.parse(stdout) as ImageSummary;
}

describe('image convert', async () => {
  const skip = await erofsUnavailable();
  let image: TestImage;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-convert-'));
    registry = await startRegistry();
    image = await buildImage({ layers: layers() });
    await pushImage(client, ref('app', '1.0'), image);
  });

  after(async () => {
    for (const mount of mounts.splice(0)) await mount.unmount().catch(() => undefined);
    await registry?.stop();
    await client.close();
    await rm(work, { recursive: true, force: true });
  });

  it('converts a 3-layer image whose kernel mount equals the layers applied in order', { skip }, async () => {
    const { stdout } = await damselfly(
      'image',
      'convert',
      ref('app', '1.0'),
      ref('app', '1.0-df'),
      '--plain-http',
      '--json',
      '--no-progress',
    );
    const result = JSON.parse(stdout) as {
      digest: string;
      manifests: Array<{ blobs: number; dedup: Record<string, number> }>;
    };
    assert.equal(result.manifests.length, 1);
    assert.ok(
      (result.manifests[0]?.dedup.reusedInImageChunks ?? 0) >= 4,
      'copy.bin and the re-added tool reuse chunks',
    );

    const mnt = await unpackAndMount(ref('app', '1.0-df'), 'app');
    const reference = join(work, 'reference');
    await mkdir(reference);
    await applyLayersToDirectory(
      image.layers.map((l) => l.tar),
      reference,
    );
    assert.deepEqual(
      describeTree(mnt, { contentDigests: true }),
      describeTree(reference, { contentDigests: true }),
    );
    await run('diff', ['-r', '--no-dereference', join(mnt, 'etc'), join(reference, 'etc')]);
  });

  it('keeps the config with matching diff ids and lays out blobs then the bootstrap', { skip }, async () => {
    const target = parseReference(ref('app', '1.0-df'));
    const resolved = await client.resolveImage(target);
    const layers = resolved.manifest.layers;
    assert.equal(layers.at(-1)?.annotations?.['dev.damselfly.image.bootstrap'], 'true');
    assert.ok(layers.slice(0, -1).every((l) => l.mediaType === 'application/vnd.damselfly.image.blob.v1'));
    const config = JSON.parse(resolved.config.toString()) as {
      rootfs: { diff_ids: string[] };
      config: unknown;
    };
    assert.equal(config.rootfs.diff_ids.length, layers.length);
    const source = JSON.parse(image.config.bytes.toString()) as { config: unknown };
    assert.deepEqual(config.config, source.config);
  });

  it('stores a chunk repeated across layers once', { skip }, async () => {
    const summary = await inspect(ref('app', '1.0-df'));
    assert.ok(summary.dedup.referencedBytes > summary.dedup.uniqueBytes + shared.length - MiB);
    assert.ok(summary.dedup.holeBytes >= 2 * MiB, 'the zero part of sparse.bin is a hole');
  });

  it('with --chunk-dict stores only the chunks a new version adds', { skip }, async () => {
    const v2Layers = layers();
    v2Layers[2]?.push({ path: 'data/new.bin', content: seededBytes('new in v2', MiB) });
    const v2 = await buildImage({ layers: v2Layers });
    await pushImage(client, ref('app', '2.0'), v2);
    const { stdout } = await damselfly(
      'image',
      'convert',
      ref('app', '2.0'),
      ref('app', '2.0-df'),
      '--plain-http',
      '--json',
      '--no-progress',
      '--chunk-dict',
      ref('app', '1.0-df'),
    );
    const dedup = (JSON.parse(stdout) as { manifests: Array<{ dedup: Record<string, number> }> }).manifests[0]
      ?.dedup;
    assert.equal(dedup?.storedChunks, 1, 'only data/new.bin is new');
    assert.ok((dedup?.reusedFromDictChunks ?? 0) > 4);
    await damselfly('image', 'check', ref('app', '2.0-df'), '--plain-http');
    const mnt = await unpackAndMount(ref('app', '2.0-df'), 'app2');
    const reference = join(work, 'reference2');
    await mkdir(reference);
    await applyLayersToDirectory(
      v2.layers.map((l) => l.tar),
      reference,
    );
    assert.deepEqual(
      describeTree(mnt, { contentDigests: true }),
      describeTree(reference, { contentDigests: true }),
    );
  });

  it('converts every platform of an index', { skip }, async () => {
    const amd = await buildImage({ layers: [[{ path: 'arch', content: 'amd64' }]], platform: 'linux/amd64' });
    const arm = await buildImage({
      layers: [[{ path: 'arch', content: 'arm64' }]],
      platform: 'linux/arm64/v8',
    });
    await pushIndex(client, ref('multi', '1'), buildIndex([amd, arm]));
    const { stdout } = await damselfly(
      'image',
      'convert',
      ref('multi', '1'),
      ref('multi', '1-df'),
      '--plain-http',
      '--json',
      '--no-progress',
    );
    const result = JSON.parse(stdout) as {
      mediaType: string;
      manifests: Array<{ platform?: { architecture: string } }>;
    };
    assert.equal(result.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(result.manifests.map((m) => m.platform?.architecture).sort(), ['amd64', 'arm64']);
    const armSummary = await damselfly(
      'image',
      'inspect',
      ref('multi', '1-df'),
      '--plain-http',
      '--platform',
      'linux/arm64',
      '--files',
    );
    assert.match(armSummary.stdout, /\/arch 5/);
  });

  it('image check names a flipped byte in any blob', { skip }, async () => {
    const out = join(work, 'local');
    // A local copy with every blob as stored: the registry would refuse to serve flipped bytes.
    const summary = await inspect(ref('app', '1.0-df'));
    await mkdir(join(out, 'blobs'), { recursive: true });
    const target = parseReference(ref('app', '1.0-df'));
    for (const blob of summary.blobs)
      await writeFile(join(out, 'blobs', blob.digest.slice(7)), await client.readBlob(target, blob.digest));
    await copyFile(join(work, 'app-unpacked', 'bootstrap'), join(out, 'bootstrap'));
    await damselfly('image', 'check', out);
    for (const blob of summary.blobs) {
      const path = join(out, 'blobs', blob.digest.slice(7));
      for (const at of [0, Math.floor(blob.compressedSize / 2), blob.compressedSize - 1]) {
        await flipByte(path, at);
        const stderr = await damselflyFails('image', 'check', out);
        assert.match(
          stderr,
          new RegExp(`fault: blob ${blob.digest}: its bytes hash to`),
          `byte ${at} of ${blob.digest}`,
        );
        await flipByte(path, at);
      }
    }
    // A flip inside a chunk is also named by chunk.
    const first = join(out, 'blobs', summary.blobs[0]!.digest.slice(7));
    await flipByte(first, 10);
    assert.match(
      await damselflyFails('image', 'check', out),
      /fault: chunk \d+ .*(digest mismatch|cannot decompress)/,
    );
  });

  it('inspect and check refuse a truncated or mangled bootstrap without crashing', { skip }, async () => {
    const good = await readFile(join(work, 'app-unpacked', 'bootstrap'));
    const dir = join(work, 'mangled');
    await mkdir(join(dir, 'blobs'), { recursive: true });
    const variants = [good.subarray(0, 1500), good.subarray(0, good.length - 4096), Buffer.alloc(0)];
    const mangled = Buffer.from(good);
    mangled.fill(0xff, 4096, 4096 + 512);
    variants.push(mangled);
    for (const bytes of variants) {
      await writeFile(join(dir, 'bootstrap'), bytes);
      for (const command of ['inspect', 'check']) {
        const { code, stderr } = await damselflyExit('image', command, dir);
        assert.equal(code, 1, `${command}: ${stderr}`);
        assert.ok(stderr.trim().split('\n').length <= 2, stderr);
        assert.doesNotMatch(stderr, /unexpected error|\n\s+at /);
        assert.match(stderr, /bootstrap/);
      }
    }
  });

  it('a registry blob that does not match its digest fails the check', { skip }, async () => {
    const summary = await inspect(ref('app', '1.0-df'));
    const path = registry.blobPath(summary.blobs[0]!.digest);
    const file = await open(path, 'r+');
    await file.write(randomBytes(16), 0, 16, 0);
    await file.close();
    const stderr = await damselflyFails('image', 'check', ref('app', '1.0-df'), '--plain-http');
    assert.match(stderr, /fault: blob sha256:[0-9a-f]{64}: .*(digest|sha256)/i);
  });

  it('converts and inspects on a registry with basic auth, credentials from flags or DOCKER_CONFIG', {
    skip,
  }, async () => {
    const secured = await startRegistry({ auth: 'basic' });
    const authed = new RegistryClient({
      plainHttp: true,
      credentials: new StaticCredentialStore({ [secured.host]: TEST_USER }),
    });
    try {
      const src = `${secured.host}/private:1`;
      const dst = `${secured.host}/private:1-df`;
      await pushImage(
        authed,
        src,
        await buildImage({ layers: [[{ path: 'secret', content: 'classified' }]] }),
      );
      const creds = `${TEST_USER.username}:${TEST_USER.password}`;
      const denied = await damselflyFails('image', 'convert', src, dst, '--no-progress');
      assert.match(denied, /unauthori[sz]ed|401|credentials/i);
      assert.doesNotMatch(denied, /\n\s+at /);
      await damselfly(
        'image',
        'convert',
        src,
        dst,
        '--no-progress',
        '--src-creds',
        creds,
        '--dest-creds',
        creds,
      );
      await damselfly('image', 'check', dst, '--creds', creds);
      const config = join(work, 'docker-config');
      await mkdir(config, { recursive: true });
      const auth = Buffer.from(creds).toString('base64');
      await writeFile(join(config, 'config.json'), JSON.stringify({ auths: { [secured.host]: { auth } } }));
      const { stdout } = await run(process.execPath, [cliPath, 'image', 'inspect', dst, '--files'], {
        env: { ...process.env, DOCKER_CONFIG: config },
      });
      assert.match(stdout, /\/secret 10/);
    } finally {
      await authed.close();
      await secured.stop();
    }
  });

  it('a layer with an unsafe path fails the conversion and tags nothing', { skip }, async () => {
    const bad = await buildImage({ layers: [[{ path: '../escape', content: 'x' }]] });
    await pushImage(client, ref('bad', '1'), bad);
    const stderr = await damselflyFails(
      'image',
      'convert',
      ref('bad', '1'),
      ref('bad', '1-df'),
      '--plain-http',
      '--no-progress',
    );
    assert.match(stderr, /escape|\.\./);
    assert.equal(await client.headManifest(parseReference(ref('bad', '1-df'))), null);
  });
});
