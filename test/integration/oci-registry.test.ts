import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  DigestMismatchError,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DockerConfigCredentialStore,
  hostPlatform,
  type ImageReference,
  OCI_INDEX,
  OCI_MANIFEST,
  PlatformNotFoundError,
  parseReference,
  RegistryClient,
  type RegistryClientOptions,
  RegistryError,
  StaticCredentialStore,
  sha256Digest,
  UnsupportedMediaTypeError,
  withDigest,
} from '../../src/image/oci/index.js';
import { flipByte, seededBytes } from '../helpers/files.js';
import {
  buildImage,
  buildIndex,
  buildLayer,
  type LayerEntry,
  opaqueWhiteout,
  pushImage,
  pushIndex,
  type TestImage,
  whiteout,
} from '../helpers/oci-image.js';
import { startRegistry, TEST_USER, type TestRegistry, TestTokenServer } from '../helpers/registry.js';

const MiB = 1024 * 1024;

const BASE: LayerEntry[] = [
  { path: 'etc', type: 'dir' },
  { path: 'etc/hostname', content: 'base\n' },
  { path: 'etc/old.conf', content: 'old\n' },
  { path: 'var', type: 'dir' },
  { path: 'var/cache', type: 'dir' },
  { path: 'var/cache/a', content: 'cached' },
  { path: 'bin', type: 'dir' },
  { path: 'bin/tool', content: randomBytes(200_000), mode: 0o755 },
];
const MIDDLE: LayerEntry[] = [
  { path: 'etc', type: 'dir' },
  whiteout('etc/old.conf'),
  { path: 'etc/new.conf', content: 'new\n', xattrs: { 'user.origin': 'middle' } },
  { path: 'bin', type: 'dir' },
  { path: 'bin/sh', type: 'symlink', linkname: 'tool' },
  { path: 'bin/tool2', type: 'link', linkname: 'bin/tool' },
];
const TOP: LayerEntry[] = [
  { path: 'var', type: 'dir' },
  { path: 'var/cache', type: 'dir' },
  opaqueWhiteout('var/cache'),
  { path: 'var/cache/b', content: 'fresh', uid: 1000, gid: 1000 },
  { path: 'dev', type: 'dir' },
  { path: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
];

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

interface ProxyLogEntry {
  method: string;
  path: string;
  range?: string;
  authorization: boolean;
  status: number;
}

type FaultAction =
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  | { kind: 'reset' }
  | { kind: 'cut-body'; after: number }
  /** Replace the body; `headers` set (or, when null, remove) answer headers. */
  | { kind: 'body'; bytes: Buffer; headers?: Record<string, string | null> }
  | { kind: 'redirect'; to: (path: string) => string };

interface Fault {
  when: (method: string, path: string) => boolean;
  times: number;
  action: FaultAction;
}

/**
 * A pass-through proxy in front of the registry that can answer with errors, reset connections, cut
 * bodies short, rewrite Content-Type or redirect — each fault for its next `times` matching requests.
 * It keeps the client's Host header, so the registry's Location URLs point back at the proxy.
 */
class FaultProxy {
  readonly log: ProxyLogEntry[] = [];
  private faults: Fault[] = [];
  private server!: Server;
  host = '';

  constructor(private readonly upstream: URL) {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.host = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  inject(fault: Fault): void {
    this.faults.push(fault);
  }

  clear(): void {
    this.faults = [];
    this.log.length = 0;
  }

  count(method: string, pathPart: string): number {
    return this.log.filter((e) => e.method === method && e.path.includes(pathPart)).length;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private takeFault(method: string, path: string): FaultAction | undefined {
    const fault = this.faults.find((f) => f.times > 0 && f.when(method, path));
    if (!fault) return undefined;
    fault.times--;
    return fault.action;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = req.url ?? '/';
    const entry: ProxyLogEntry = {
      method: req.method ?? '',
      path,
      authorization: Boolean(req.headers.authorization),
      status: 0,
      ...(req.headers.range ? { range: req.headers.range } : {}),
    };
    this.log.push(entry);
    const action = this.takeFault(entry.method, path);
    if (action?.kind === 'reset') {
      entry.status = -1;
      req.socket.destroy();
      return;
    }
    if (action?.kind === 'status') {
      entry.status = action.status;
      req.resume();
      res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers });
      res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected fault' }] }));
      return;
    }
    if (action?.kind === 'redirect') {
      entry.status = 307;
      req.resume();
      res.writeHead(307, { location: action.to(path) });
      res.end();
      return;
    }
    this.forward(req, res, entry, action);
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    entry: ProxyLogEntry,
    action?: FaultAction,
  ): void {
    const upstream = httpRequest(
      {
        host: this.upstream.hostname,
        port: this.upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (up) => {
        entry.status = up.statusCode ?? 0;
        const headers = { ...up.headers };
        if (action?.kind === 'body') {
          up.resume();
          headers['content-length'] = String(action.bytes.length);
          for (const [name, value] of Object.entries(action.headers ?? {})) {
            if (value === null) delete headers[name];
            else headers[name] = value;
          }
          res.writeHead(up.statusCode ?? 502, headers);
          res.end(action.bytes);
          return;
        }
        res.writeHead(up.statusCode ?? 502, headers);
        if (action?.kind !== 'cut-body') {
          up.pipe(res);
          return;
        }
        let sent = 0;
        up.on('data', (chunk: Buffer) => {
          if (sent >= action.after) return;
          const part = chunk.subarray(0, action.after - sent);
          sent += part.length;
          res.write(part, () => {
            if (sent >= action.after) res.socket?.destroy();
          });
        });
      },
    );
    upstream.on('error', () => res.socket?.destroy());
    req.pipe(upstream);
  }
}

const isBlobGet = (digest: string) => (method: string, path: string) =>
  method === 'GET' && path.includes(digest);

describe('OCI registry client against docker-registry', () => {
  let registry: TestRegistry;
  let client: RegistryClient;
  const ref = (name: string) => parseReference(`${registry.host}/${name}`);

  before(async () => {
    registry = await startRegistry();
    client = new RegistryClient();
  });

  after(async () => {
    await client?.close();
    await registry?.stop();
  });

  it('pushes and pulls a multi-layer image with whiteouts', async () => {
    const image = await buildImage({ layers: [BASE, MIDDLE, TOP] });
    const target = ref('app/multi:v1');
    const pushed = await pushImage(client, target, image);
    assert.equal(pushed.manifestDigest, image.manifest.digest);

    const resolved = await client.resolveImage(target);
    assert.equal(resolved.manifestDigest, image.manifest.digest);
    assert.equal(resolved.manifestMediaType, OCI_MANIFEST);
    assert.equal(resolved.index, undefined);
    assert.deepEqual(resolved.config, image.config.bytes);
    assert.equal(resolved.configDigest, image.config.digest);
    assert.deepEqual(
      resolved.manifest.layers.map((l) => l.digest),
      image.layers.map((l) => l.digest),
    );
    for (const layer of image.layers) {
      assert.deepEqual(await collect(await client.blobStream(target, layer.digest)), layer.bytes);
    }

    const byDigest = await client.getManifest(withDigest(target, image.manifest.digest));
    assert.equal(byDigest.kind, 'manifest');
    assert.deepEqual(byDigest.bytes, image.manifest.bytes);
    assert.deepEqual(await client.headManifest(target), {
      digest: image.manifest.digest,
      mediaType: OCI_MANIFEST,
      size: image.manifest.size,
    });
    assert.equal(await client.headManifest(ref('app/multi:nope')), null);

    // Pushing again finds every blob present and uploads nothing.
    const proxy = await new FaultProxy(new URL(registry.url)).start();
    try {
      await pushImage(client, parseReference(`${proxy.host}/app/multi:v1`), image);
      assert.equal(proxy.count('POST', '/blobs/uploads/'), 0);
      assert.equal(proxy.count('HEAD', '/blobs/'), 4);
    } finally {
      await proxy.close();
    }
  });

  it('follows an OCI index to the requested platform', async () => {
    const amd64 = await buildImage({ layers: [BASE], platform: 'linux/amd64' });
    const arm64 = await buildImage({ layers: [TOP], platform: 'linux/arm64/v8' });
    const index = buildIndex([amd64, arm64]);
    const target = ref('multi/platform:latest');
    const pushed = await pushIndex(client, target, index);
    assert.equal(pushed.indexDigest, index.index.digest);

    const top = await client.getManifest(target);
    assert.equal(top.kind, 'index');
    assert.equal(top.mediaType, OCI_INDEX);

    const onArm = await client.resolveImage(target, 'linux/arm64');
    assert.equal(onArm.manifestDigest, arm64.manifest.digest);
    assert.deepEqual(onArm.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.equal(onArm.index?.digest, index.index.digest);
    assert.deepEqual(onArm.config, arm64.config.bytes);
    assert.equal(
      (await client.resolveImage(target, 'linux/aarch64/v8')).manifestDigest,
      arm64.manifest.digest,
    );
    assert.equal((await client.resolveImage(target, 'linux/x86_64')).manifestDigest, amd64.manifest.digest);

    const host = hostPlatform();
    if (host.architecture === 'amd64' || host.architecture === 'arm64') {
      const expected = host.architecture === 'amd64' ? amd64 : arm64;
      assert.equal((await client.resolveImage(target)).manifestDigest, expected.manifest.digest);
    }
    await assert.rejects(client.resolveImage(target, 'linux/s390x'), (err: unknown) => {
      assert.ok(err instanceof PlatformNotFoundError, String(err));
      assert.match(err.message, /linux\/s390x.*available: linux\/amd64, linux\/arm64\/v8/);
      return true;
    });
  });

  it('follows a Docker v2 manifest list', async () => {
    const amd64 = await buildImage({ layers: [BASE], platform: 'linux/amd64', format: 'docker' });
    const armv7 = await buildImage({ layers: [MIDDLE], platform: 'linux/arm/v7', format: 'docker' });
    const list = buildIndex([amd64, armv7]);
    const target = ref('docker/list:1.0');
    await pushIndex(client, target, list);

    const top = await client.getManifest(target);
    assert.equal(top.mediaType, DOCKER_MANIFEST_LIST);
    const resolved = await client.resolveImage(target, 'linux/arm/v7');
    assert.equal(resolved.manifestMediaType, DOCKER_MANIFEST);
    assert.equal(resolved.manifestDigest, armv7.manifest.digest);
    assert.equal(resolved.manifest.layers[0]?.mediaType, 'application/vnd.docker.image.rootfs.diff.tar.gzip');
    assert.deepEqual(JSON.parse(resolved.config.toString()).architecture, 'arm');
  });

  it('reads byte ranges of a blob', async () => {
    const layer = await buildLayer([{ path: 'big', content: seededBytes('range', 3 * MiB) }], {
      compression: 'none',
    });
    const target = ref('ranges/blob:latest');
    await client.pushBlob(target, layer.digest, layer.size, () => Readable.from([layer.bytes]));

    const cases: Array<[number, number]> = [
      [0, 1],
      [0, 4096],
      [1234567, 100_000],
      [layer.size - 10, 10],
    ];
    for (const [offset, length] of cases) {
      const bytes = await client.readBlobRange(target, layer.digest, offset, length);
      assert.deepEqual(bytes, layer.bytes.subarray(offset, offset + length), `range ${offset}+${length}`);
    }
    assert.equal((await client.readBlobRange(target, layer.digest, 5, 0)).length, 0);
    await assert.rejects(client.readBlobRange(target, layer.digest, layer.size + 10, 5), RegistryError);
  });

  it('finds blobs, and mounts them across repositories', async () => {
    const blob = seededBytes('mount', 10_000);
    const digest = sha256Digest(blob);
    const source = ref('mount/source:latest');
    const dest = ref('mount/dest:latest');
    assert.equal(await client.hasBlob(source, digest), null);
    await client.pushBlob(source, digest, blob.length, () => Readable.from([blob]));
    assert.deepEqual(await client.hasBlob(source, digest), { size: blob.length });
    assert.equal(await client.hasBlob(dest, digest), null);

    assert.equal(await client.mountBlob(dest, 'mount/source', digest), true);
    assert.deepEqual(await client.hasBlob(dest, digest), { size: blob.length });
    const unknown = sha256Digest(Buffer.from('never pushed'));
    assert.equal(await client.mountBlob(dest, 'mount/source', unknown), false);
    assert.equal(await client.hasBlob(dest, unknown), null);
  });

  it('uploads a blob bigger than one chunk in several PATCHes', async () => {
    const proxy = await new FaultProxy(new URL(registry.url)).start();
    const chunked = new RegistryClient({ uploadChunkSize: MiB });
    try {
      const blob = seededBytes('chunked', 3.5 * MiB);
      const digest = sha256Digest(blob);
      const target = parseReference(`${proxy.host}/chunked/blob:latest`);
      // Hand the bytes over in odd-sized pieces so chunk boundaries never line up with them.
      const pieces = () =>
        Readable.from(Array.from({ length: 50 }, (_, i) => blob.subarray(i * 73_421, (i + 1) * 73_421)));
      await chunked.pushBlob(target, digest, blob.length, pieces);
      assert.equal(proxy.count('PATCH', '/blobs/uploads/'), 4);
      assert.equal(proxy.count('PUT', '/blobs/uploads/'), 1);
      assert.deepEqual(await chunked.readBlob(target, digest), blob);

      // A source that does not match its digest is never committed.
      const other = seededBytes('other', 2 * MiB);
      await assert.rejects(
        chunked.pushBlob(target, sha256Digest(Buffer.from('x')), other.length, () => Readable.from([other])),
        DigestMismatchError,
      );
      await assert.rejects(
        chunked.pushBlob(target, sha256Digest(other), other.length + 1, () => Readable.from([other])),
        /the source has 2097152 bytes instead of 2097153/,
      );
    } finally {
      await chunked.close();
      await proxy.close();
    }
  });

  it('fails with DigestMismatchError, never success, when a stored blob is corrupted', async () => {
    const layer = await buildLayer([{ path: 'data', content: seededBytes('corrupt', 2 * MiB) }]);
    const target = ref('corrupt/blob:latest');
    await client.pushBlob(target, layer.digest, layer.size, () => Readable.from([layer.bytes]));
    await flipByte(registry.blobPath(layer.digest), Math.floor(layer.size / 2));

    const stream = await client.blobStream(target, layer.digest);
    let ended = false;
    stream.on('end', () => {
      ended = true;
    });
    await assert.rejects(collect(stream), (err: unknown) => {
      assert.ok(err instanceof DigestMismatchError, String(err));
      assert.equal(err.expected, layer.digest);
      return true;
    });
    assert.equal(ended, false, 'the stream must not end successfully');
    await assert.rejects(client.readBlob(target, layer.digest), DigestMismatchError);
  });

  it('reports unknown manifests and repositories with the registry message', async () => {
    const image = await buildImage({ layers: [[{ path: 'a', content: 'a' }]] });
    await pushImage(client, ref('known/repo:v1'), image);
    await assert.rejects(client.getManifest(ref('known/repo:missing')), (err: unknown) => {
      assert.ok(err instanceof RegistryError, String(err));
      assert.equal(err.code, 'MANIFEST_UNKNOWN');
      assert.equal(err.status, 404);
      assert.equal(err.message, `manifest unknown: ${registry.host}/known/repo:missing`);
      return true;
    });
    await assert.rejects(client.getManifest(ref('no/such/repo:v1')), (err: unknown) => {
      assert.ok(err instanceof RegistryError, String(err));
      assert.equal(err.status, 404);
      assert.match(err.message, /unknown: 127\.0\.0\.1:\d+\/no\/such\/repo:v1$/);
      return true;
    });
    const missingBlob = sha256Digest(Buffer.from('missing'));
    await assert.rejects(client.blobStream(ref('known/repo:v1'), missingBlob), (err: unknown) => {
      assert.ok(err instanceof RegistryError, String(err));
      assert.equal(err.code, 'BLOB_UNKNOWN');
      return true;
    });
  });

  describe('through a fault-injecting proxy', () => {
    let proxy: FaultProxy;
    let image: TestImage;
    let flaky: RegistryClient;
    const viaProxy = () => parseReference(`${proxy.host}/faults/image:v1`);

    before(async () => {
      proxy = await new FaultProxy(new URL(registry.url)).start();
      image = await buildImage({ layers: [[{ path: 'big', content: seededBytes('faults', 3 * MiB) }]] });
      await pushImage(client, ref('faults/image:v1'), image);
      flaky = new RegistryClient({ retries: 3 });
    });

    after(async () => {
      await flaky?.close();
      await proxy?.close();
    });

    it('retries 5xx and connection resets', async () => {
      proxy.clear();
      proxy.inject({
        when: (m, p) => m === 'GET' && p.includes('/manifests/'),
        times: 2,
        action: { kind: 'status', status: 503 },
      });
      proxy.inject({
        when: (m, p) => m === 'GET' && p.includes('/manifests/'),
        times: 1,
        action: { kind: 'reset' },
      });
      const manifest = await flaky.getManifest(viaProxy());
      assert.equal(manifest.digest, image.manifest.digest);
      assert.equal(proxy.count('GET', '/manifests/'), 4);
    });

    it('honours Retry-After on 429', async () => {
      proxy.clear();
      proxy.inject({
        when: isBlobGet(image.config.digest),
        times: 1,
        action: { kind: 'status', status: 429, headers: { 'retry-after': '1' } },
      });
      const started = Date.now();
      assert.deepEqual(await flaky.readBlob(viaProxy(), image.config.digest), image.config.bytes);
      assert.ok(Date.now() - started >= 950, `retried after ${Date.now() - started} ms`);
    });

    it('does not retry other 4xx, and gives up after the configured retries', async () => {
      proxy.clear();
      await assert.rejects(
        flaky.getManifest(parseReference(`${proxy.host}/faults/image:nope`)),
        /manifest unknown/,
      );
      assert.equal(proxy.count('GET', '/manifests/nope'), 1);

      proxy.inject({
        when: (_m, p) => p.includes('/manifests/'),
        times: 100,
        action: { kind: 'status', status: 502 },
      });
      await assert.rejects(flaky.getManifest(viaProxy()), (err: unknown) => {
        assert.ok(err instanceof RegistryError, String(err));
        assert.equal(err.status, 502);
        return true;
      });
      assert.equal(proxy.count('GET', '/manifests/'), 1 + 4);
    });

    it('restarts an upload whose PATCH failed, with a fresh session', async () => {
      proxy.clear();
      const uploader = new RegistryClient({ retries: 3, uploadChunkSize: MiB });
      try {
        const blob = seededBytes('upload-retry', 2.5 * MiB);
        const digest = sha256Digest(blob);
        let opened = 0;
        proxy.inject({ when: (m) => m === 'PATCH', times: 1, action: { kind: 'reset' } });
        proxy.inject({ when: (m) => m === 'PATCH', times: 1, action: { kind: 'status', status: 500 } });
        await uploader.pushBlob(
          parseReference(`${proxy.host}/faults/upload:latest`),
          digest,
          blob.length,
          () => {
            opened++;
            return Readable.from([blob]);
          },
        );
        assert.equal(opened, 3, 'a fresh source for each attempt');
        assert.equal(proxy.count('POST', '/blobs/uploads/'), 3);
        assert.deepEqual(await client.readBlob(ref('faults/upload:latest'), digest), blob);
      } finally {
        await uploader.close();
      }
    });

    it('resumes a blob download cut short with a Range request', async () => {
      proxy.clear();
      const layer = image.layers[0]!;
      proxy.inject({ when: isBlobGet(layer.digest), times: 2, action: { kind: 'cut-body', after: MiB } });
      const bytes = await collect(await flaky.blobStream(viaProxy(), layer.digest));
      assert.deepEqual(bytes, layer.bytes);
      const gets = proxy.log.filter((e) => e.method === 'GET' && e.path.includes(layer.digest));
      assert.deepEqual(
        gets.map((e) => e.range),
        [undefined, `bytes=${MiB}-`, `bytes=${2 * MiB}-`],
      );
    });

    it('stops on abort', async () => {
      proxy.clear();
      proxy.inject({
        when: (_m, p) => p.includes('/manifests/'),
        times: 100,
        action: { kind: 'status', status: 503 },
      });
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error('stop now')), 100);
      const started = Date.now();
      await assert.rejects(flaky.getManifest(viaProxy(), controller.signal), /stop now/);
      assert.ok(Date.now() - started < 2000, 'abort took too long');

      proxy.clear();
      const stream = await flaky.blobStream(viaProxy(), image.layers[0]!.digest, AbortSignal.timeout(50));
      await assert.rejects(
        (async () => {
          for await (const _ of stream) await new Promise((r) => setTimeout(r, 20));
        })(),
        /abort|timeout/i,
      );
    });

    it('checks manifest bytes against the digest asked for or claimed', async () => {
      proxy.clear();
      const other = await buildImage({ layers: [[{ path: 'other', content: 'other' }]] });
      const tampered = { kind: 'body', bytes: other.manifest.bytes } as const;
      const manifestGet = (m: string, p: string) => m === 'GET' && p.includes('/manifests/');
      proxy.inject({ when: manifestGet, times: 2, action: tampered });
      await assert.rejects(
        flaky.getManifest(withDigest(viaProxy(), image.manifest.digest)),
        (err: unknown) => {
          assert.ok(err instanceof DigestMismatchError, String(err));
          assert.equal(err.expected, image.manifest.digest);
          assert.equal(err.actual, other.manifest.digest);
          return true;
        },
      );
      // By tag: the registry's Docker-Content-Digest still names the real manifest.
      await assert.rejects(flaky.getManifest(viaProxy()), DigestMismatchError);
    });

    it('rejects manifests of unsupported media types, naming the type', async () => {
      proxy.clear();
      const schema1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
      const body = Buffer.from(
        JSON.stringify({ schemaVersion: 1, name: 'faults/image', tag: 'v1', fsLayers: [] }),
      );
      proxy.inject({
        when: (m, p) => m === 'GET' && p.includes('/manifests/'),
        times: 1,
        action: {
          kind: 'body',
          bytes: body,
          headers: { 'content-type': schema1, 'docker-content-digest': null },
        },
      });
      await assert.rejects(flaky.getManifest(viaProxy()), (err: unknown) => {
        assert.ok(err instanceof UnsupportedMediaTypeError, String(err));
        assert.equal(err.mediaType, schema1);
        assert.match(err.message, /prettyjws/);
        return true;
      });
    });
  });
});

describe('OCI registry client with basic auth', () => {
  let registry: TestRegistry;
  let image: TestImage;
  const good = () => new StaticCredentialStore({ [registry.host]: TEST_USER });
  const ref = () => parseReference(`${registry.host}/secure/app:v1`);

  before(async () => {
    registry = await startRegistry({ auth: 'basic' });
    image = await buildImage({ layers: [BASE, TOP] });
  });

  after(async () => {
    await registry?.stop();
  });

  it('pushes and pulls with the right password', async () => {
    const client = new RegistryClient({ credentials: good() });
    try {
      await pushImage(client, ref(), image);
      const resolved = await client.resolveImage(ref());
      assert.equal(resolved.manifestDigest, image.manifest.digest);
    } finally {
      await client.close();
    }
  });

  it('fails clearly with a wrong password or none, never echoing the password', async () => {
    const wrong = new RegistryClient({
      credentials: new StaticCredentialStore({
        [registry.host]: { username: TEST_USER.username, password: 'hunter2' },
      }),
    });
    const anonymous = new RegistryClient();
    try {
      await assert.rejects(wrong.getManifest(ref()), (err: unknown) => {
        assert.ok(err instanceof RegistryError, String(err));
        assert.equal(err.code, 'UNAUTHORIZED');
        assert.equal(err.status, 401);
        assert.match(err.message, /credentials were refused/);
        assert.doesNotMatch(err.message, /hunter2/);
        return true;
      });
      await assert.rejects(anonymous.getManifest(ref()), /no credentials configured for 127\.0\.0\.1:\d+/);
    } finally {
      await wrong.close();
      await anonymous.close();
    }
  });

  it('reads credentials from DOCKER_CONFIG', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'damselfly-docker-config-'));
    try {
      const auth = Buffer.from(`${TEST_USER.username}:${TEST_USER.password}`).toString('base64');
      await writeFile(
        join(dir, 'config.json'),
        JSON.stringify({ auths: { [`http://${registry.host}`]: { auth } } }),
      );
      const client = new RegistryClient({
        credentials: new DockerConfigCredentialStore({ env: { DOCKER_CONFIG: dir } }),
      });
      try {
        assert.equal((await client.getManifest(ref())).digest, image.manifest.digest);
      } finally {
        await client.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('follows blob redirects without sending Authorization to the other host', async () => {
    // "Object storage" on another host name (localhost, not 127.0.0.1) serving blob files from disk.
    const seen: Array<{ path: string; authorization: boolean }> = [];
    const storage = createServer((req, res) => {
      seen.push({ path: req.url ?? '', authorization: Boolean(req.headers.authorization) });
      const digest = /\/storage\/(sha256:[0-9a-f]{64})/.exec(req.url ?? '')?.[1];
      readFile(registry.blobPath(digest ?? 'sha256:0'))
        .then((bytes) => res.writeHead(200, { 'content-length': bytes.length }).end(bytes))
        .catch(() => res.writeHead(404).end());
    });
    await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
    const storagePort = (storage.address() as AddressInfo).port;
    const proxy = await new FaultProxy(new URL(registry.url)).start();
    const layer = image.layers[0]!;
    proxy.inject({
      when: isBlobGet(layer.digest),
      times: 1,
      action: {
        kind: 'redirect',
        to: () => `http://localhost:${storagePort}/storage/${layer.digest}?X-Signature=abc`,
      },
    });
    const client = new RegistryClient({
      credentials: new StaticCredentialStore({ [proxy.host]: TEST_USER }),
    });
    try {
      const target = parseReference(`${proxy.host}/secure/app:v1`);
      await client.getManifest(target); // learns the basic challenge
      const bytes = await collect(await client.blobStream(target, layer.digest));
      assert.deepEqual(bytes, layer.bytes);
      const blobGet = proxy.log.find((e) => e.method === 'GET' && e.path.includes(layer.digest));
      assert.equal(blobGet?.authorization, true, 'the registry gets the credentials');
      assert.deepEqual(seen, [{ path: `/storage/${layer.digest}?X-Signature=abc`, authorization: false }]);
    } finally {
      await client.close();
      await proxy.close();
      storage.closeAllConnections();
      await new Promise((resolve) => storage.close(resolve));
    }
  });
});

describe('OCI registry client with bearer token auth', () => {
  let registry: TestRegistry;
  let tokens: TestTokenServer;
  let image: TestImage;
  const ref = (name = 'token/app:v1'): ImageReference => parseReference(`${registry.host}/${name}`);
  const withCredentials = (options: RegistryClientOptions = {}) =>
    new RegistryClient({
      credentials: new StaticCredentialStore({ [registry.host]: TEST_USER }),
      ...options,
    });

  before(async () => {
    registry = await startRegistry({ auth: 'token' });
    tokens = registry.tokenServer!;
    image = await buildImage({ layers: [BASE, MIDDLE] });
  });

  after(async () => {
    await registry?.stop();
  });

  it('gets scoped tokens, caches them, and pushes and pulls', async () => {
    const client = withCredentials();
    try {
      await pushImage(client, ref(), image);
      const resolved = await client.resolveImage(ref());
      assert.equal(resolved.manifestDigest, image.manifest.digest);
      for (const layer of image.layers) {
        assert.deepEqual(await client.readBlob(ref(), layer.digest), layer.bytes);
      }
      const issued = tokens.requests.filter((r) => r.status === 200);
      assert.ok(
        issued.some((r) => r.scopes.includes('repository:token/app:pull,push')),
        JSON.stringify(tokens.requests),
      );
      assert.ok(
        issued.every((r) => r.account === TEST_USER.username && r.service === TestTokenServer.SERVICE),
        JSON.stringify(issued),
      );
      // One token per distinct scope set, however many requests: push (pull,push) and pull.
      assert.ok(issued.length <= 3, `asked for ${issued.length} tokens: ${JSON.stringify(issued)}`);

      // Cross-repository mount asks for pull on the source as well.
      assert.equal(await client.mountBlob(ref('token/other:v1'), 'token/app', image.layers[0]!.digest), true);
      assert.ok(
        tokens.requests.some(
          (r) =>
            r.scopes.includes('repository:token/app:pull') &&
            r.scopes.includes('repository:token/other:pull,push'),
        ),
        JSON.stringify(tokens.requests.slice(-2)),
      );
    } finally {
      await client.close();
    }
  });

  it('replaces a token the registry refuses, once', async () => {
    const pusher = withCredentials();
    await pushImage(pusher, ref('token/second:v1'), image);
    await pusher.close();
    const client = withCredentials();
    try {
      await client.getManifest(ref()); // learns the challenge; caches a good pull token for token/app
      tokens.spoilNext = 1; // the next token fetched has the wrong audience
      const before = tokens.requests.length;
      const manifest = await client.getManifest(ref('token/second:v1'));
      assert.equal(manifest.digest, image.manifest.digest);
      assert.equal(tokens.requests.length - before, 2, 'a spoiled token, then a fresh one');

      tokens.spoilNext = 100;
      await assert.rejects(client.getManifest(ref('token/third:v1')), (err: unknown) => {
        assert.ok(err instanceof RegistryError, String(err));
        assert.equal(err.code, 'UNAUTHORIZED');
        return true;
      });
    } finally {
      tokens.spoilNext = 0;
      await client.close();
    }
  });

  it('fetches a new token once the cached one expires', async () => {
    const client = withCredentials();
    tokens.lifetime = 2; // cached for 1 s: renewed early, never used past its expiry
    try {
      const count = () => tokens.requests.length;
      await client.getManifest(ref());
      const first = count();
      await client.getManifest(ref());
      assert.equal(count(), first, 'the cached token is reused');
      await new Promise((r) => setTimeout(r, 1100));
      await client.getManifest(ref());
      assert.equal(count(), first + 1, 'an expired token is replaced before use');
    } finally {
      tokens.lifetime = 300;
      await client.close();
    }
  });

  it('fails clearly for a wrong password and for anonymous callers', async () => {
    const wrong = new RegistryClient({
      credentials: new StaticCredentialStore({
        [registry.host]: { username: TEST_USER.username, password: 'nope' },
      }),
    });
    const anonymous = new RegistryClient();
    try {
      await assert.rejects(wrong.getManifest(ref()), (err: unknown) => {
        assert.ok(err instanceof RegistryError, String(err));
        assert.equal(err.code, 'UNAUTHORIZED');
        assert.match(err.message, /token server refused the credentials/);
        return true;
      });
      await assert.rejects(anonymous.getManifest(ref()), (err: unknown) => {
        assert.ok(err instanceof RegistryError, String(err));
        assert.equal(err.code, 'UNAUTHORIZED');
        assert.match(err.message, /no credentials configured/);
        return true;
      });
    } finally {
      await wrong.close();
      await anonymous.close();
    }
  });

  it('exchanges a Docker identity token (refresh-token grant)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'damselfly-docker-config-'));
    try {
      const config = { auths: { [registry.host]: { identitytoken: TestTokenServer.REFRESH_TOKEN } } };
      await writeFile(join(dir, 'config.json'), JSON.stringify(config));
      const client = new RegistryClient({ credentials: new DockerConfigCredentialStore({ configDir: dir }) });
      try {
        assert.equal((await client.getManifest(ref())).digest, image.manifest.digest);
        assert.ok(
          tokens.requests.some((r) => r.method === 'POST' && r.account === 'refresh-token'),
          JSON.stringify(tokens.requests.slice(-2)),
        );
      } finally {
        await client.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
