import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Agent, ProxyAgent, request } from 'undici';
import { RegistryClient, StaticCredentialStore } from '../../src/image/oci/index.js';
import { taskId } from '../../src/task/index.js';
import { type CertifiedKey, createCertificateAuthority, LeafIssuer } from '../../src/tls/index.js';
import {
  Cluster,
  cliPath,
  type Daemon,
  seededBytes,
  startOrigin,
  type TestOrigin,
} from '../helpers/index.js';
import { eventually } from '../helpers/mount-process.js';
import { buildImage, pushImage, type TestImage } from '../helpers/oci-image.js';
import { startRegistry, TEST_USER, type TestRegistry } from '../helpers/registry.js';
import { type RegistryTap, startRegistryTap } from '../helpers/registry-tap.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BLOB_SIZE = 24 * MiB;
const BASIC = `Basic ${Buffer.from(`${TEST_USER.username}:${TEST_USER.password}`).toString('base64')}`;

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function mirrorUrl(daemon: Daemon, path: string): string {
  return `http://127.0.0.1:${daemon.proxyPort}${path}`;
}

async function readAll(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c);
  return Buffer.concat(chunks);
}

/** The daemon's record of a task, from its local API. */
async function taskState(
  daemon: Daemon,
  taskId: string,
): Promise<{ state: string; piecesStored: number; pieceCount: number }> {
  const res = await request(`http://localhost/v1/tasks/${taskId}`, {
    dispatcher: new Agent({ connect: { socketPath: daemon.socket } }),
  });
  return (await res.body.json()) as { state: string; piecesStored: number; pieceCount: number };
}

describe('registry mirror: blob GETs go P2P, the rest passes through', () => {
  let registry: TestRegistry;
  let tap: RegistryTap;
  let cluster: Cluster;
  let image: TestImage;
  let layer: { digest: string; size: number; bytes: Buffer };
  let peers: Daemon[];
  let headerRouted: Daemon;
  let layered: TestImage;

  before(async () => {
    registry = await startRegistry();
    tap = await startRegistryTap(registry.url);
    image = await buildImage({
      layers: [[{ path: 'data/blob.bin', content: seededBytes('mirror-layer', BLOB_SIZE) }]],
      compression: 'none',
    });
    layer = image.layers[0]!;
    await pushImage(new RegistryClient({ plainHttp: true }), `${registry.host}/app/data:1`, image);
    layered = await buildImage({
      layers: [0, 1, 2].map((i) => [{ path: `l${i}.bin`, content: seededBytes(`layer-${i}`, 5 * MiB) }]),
      compression: 'none',
    });
    await pushImage(new RegistryClient({ plainHttp: true }), `${registry.host}/app/layers:1`, layered);
    cluster = await Cluster.create('mirror');
    await cluster.startScheduler();
    const mirrorYaml = `proxy:\n  registryMirror:\n    addr: ${tap.url}\n`;
    // A slow seed, so clients are still receiving while the task downloads.
    await cluster.startDaemon({
      name: 'seed',
      seedPeer: true,
      configYaml: `${mirrorYaml}download:\n  rateLimit: 6MiB\n`,
    });
    peers = await Promise.all(
      [0, 1, 2].map((i) => cluster.startDaemon({ name: `peer${i}`, configYaml: mirrorYaml })),
    );
    // Its default registry is nowhere: only the X-Damselfly-Registry header can route its requests.
    headerRouted = await cluster.startDaemon({
      name: 'header-routed',
      configYaml: 'proxy:\n  registryMirror:\n    addr: http://127.0.0.1:1\n',
    });
  });

  after(async () => {
    await cluster?.stop();
    await tap?.close();
    await registry?.stop();
  });

  it('streams a blob to the client while the task downloads; three daemons, registry read about once', {
    timeout: 180_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const path = `/v2/app/data/blobs/${layer.digest}?ns=${encodeURIComponent(tap.host)}`;
      const first = await request(mirrorUrl(peers[0]!, path));
      assert.equal(first.statusCode, 200);
      assert.equal(first.headers['content-length'], String(layer.size));
      assert.equal(first.headers['docker-content-digest'], layer.digest);
      const taskId = String(first.headers['x-damselfly-task-id']);
      const chunks: Buffer[] = [];
      let stateAtFirstChunk: { state: string; piecesStored: number; pieceCount: number } | undefined;
      for await (const chunk of first.body) {
        stateAtFirstChunk ??= await taskState(peers[0]!, taskId);
        chunks.push(chunk as Buffer);
      }
      const bytes = Buffer.concat(chunks);
      assert.equal(sha256(bytes), layer.digest, 'peer0: blob bytes differ');
      assert.equal(stateAtFirstChunk?.state, 'running', 'the first bytes arrived only after the whole blob');
      assert.ok(stateAtFirstChunk.piecesStored < stateAtFirstChunk.pieceCount);

      const others = await Promise.all(
        peers.slice(1).map(async (p) => {
          const res = await request(mirrorUrl(p, path));
          assert.equal(res.statusCode, 200, p.name);
          return readAll(res.body);
        }),
      );
      for (const [i, b] of others.entries())
        assert.equal(sha256(b), layer.digest, `peer${i + 1}: bytes differ`);

      const served = tap.blobBytes();
      assert.ok(
        served <= 1.05 * layer.size,
        `the registry served ${served} blob bytes for a ${layer.size}-byte blob`,
      );
      const p2p = (await peers[2]!.metrics()).value('damselfly_download_traffic_bytes_total', {
        type: 'p2p',
      });
      assert.equal(p2p, layer.size, 'peer2 did not get the blob from peers');
      const perRegistry = await peers[2]!.metrics();
      assert.equal(
        perRegistry.value('damselfly_proxy_served_bytes_total', { registry: tap.host }),
        layer.size,
      );
      assert.equal(
        perRegistry.value('damselfly_proxy_traffic_bytes_total', { registry: tap.host, type: 'p2p' }),
        layer.size,
      );
    });
  });

  it('answers a range of a blob with 206 and exactly those bytes', async () => {
    const res = await request(mirrorUrl(peers[1]!, `/v2/app/data/blobs/${layer.digest}`), {
      headers: { range: 'bytes=5000000-5000099' },
    });
    assert.equal(res.statusCode, 206);
    assert.equal(res.headers['content-range'], `bytes 5000000-5000099/${layer.size}`);
    assert.deepEqual(await readAll(res.body), layer.bytes.subarray(5000000, 5000100));
    const past = await request(mirrorUrl(peers[1]!, `/v2/app/data/blobs/${layer.digest}`), {
      headers: { range: `bytes=${layer.size}-` },
    });
    await past.body.dump();
    assert.equal(past.statusCode, 416);
  });

  it('a range fetches only the pieces under it; a later whole GET fetches the rest', async () => {
    const daemon = headerRouted; // it has none of the layer yet
    const headers = { 'x-damselfly-registry': tap.url };
    const path = `/v2/app/data/blobs/${layer.digest}`;
    const downloaded = async () =>
      (await daemon.metrics()).value('damselfly_download_traffic_bytes_total', { type: 'p2p' });
    const before = await downloaded();
    const PIECE = 4 * MiB; // the piece length of a blob this size
    const ranged = await request(mirrorUrl(daemon, path), {
      headers: { ...headers, range: 'bytes=5000000-5000099' },
    });
    assert.equal(ranged.statusCode, 206);
    assert.deepEqual(await readAll(ranged.body), layer.bytes.subarray(5000000, 5000100));
    assert.equal((await downloaded()) - before, PIECE, 'a 100-byte range should move one piece');

    const whole = await request(mirrorUrl(daemon, path), { headers });
    assert.equal(sha256(await readAll(whole.body)), layer.digest);
    assert.equal((await downloaded()) - before, layer.size, 'the whole GET fetched a piece twice');
  });

  it('a whole-layer GET starts the later layers of its manifest; a ranged read starts none', {
    timeout: 120_000,
  }, async () => {
    const ns = `?ns=${encodeURIComponent(tap.host)}`;
    const accept = { accept: layered.manifest.mediaType };
    const blobPath = (digest: string) => `/v2/app/layers/blobs/${digest}${ns}`;
    const prefetches = async (d: Daemon) =>
      (await d.metrics()).value('damselfly_proxy_layer_prefetches_total') ?? 0;
    const [l0, l1, l2] = layered.layers as [
      TestImage['layers'][0],
      TestImage['layers'][0],
      TestImage['layers'][0],
    ];

    // A lazy reader: manifest, then a range of the first layer. Nothing else starts.
    const lazy = peers[2]!;
    await (
      await request(mirrorUrl(lazy, `/v2/app/layers/manifests/1${ns}`), { headers: accept })
    ).body.dump();
    const ranged = await request(mirrorUrl(lazy, blobPath(l0.digest)), { headers: { range: 'bytes=0-99' } });
    assert.equal(ranged.statusCode, 206);
    await ranged.body.dump();
    assert.equal(await prefetches(lazy), 0, 'a ranged read started a prefetch');

    // A pull: manifest, then the whole first layer. Layers 1 and 2 arrive without being asked for.
    const node = peers[1]!;
    const manifest = await request(mirrorUrl(node, `/v2/app/layers/manifests/1${ns}`), { headers: accept });
    assert.deepEqual(await readAll(manifest.body), layered.manifest.bytes);
    const first = await request(mirrorUrl(node, blobPath(l0.digest)));
    assert.equal(sha256(await readAll(first.body)), l0.digest);
    assert.equal(await prefetches(node), 2);
    for (const later of [l1, l2]) {
      const id = taskId({ url: `${tap.url}/v2/app/layers/blobs/${later.digest}` });
      await eventually(`${later.digest} prefetched`, async () =>
        (await taskState(node, id)).state === 'succeeded' ? true : undefined,
      );
    }
    // The client's own GETs are then answered from the stored tasks, and the access check still runs.
    const checksBefore = tap.records.filter((r) => r.range === 'bytes=0-0').length;
    for (const later of [l1, l2]) {
      const res = await request(mirrorUrl(node, blobPath(later.digest)));
      assert.equal(res.statusCode, 200);
      assert.equal(sha256(await readAll(res.body)), later.digest);
    }
    assert.equal(tap.records.filter((r) => r.range === 'bytes=0-0').length - checksBefore, 2);
    assert.equal(await prefetches(node), 2, 'the later layers were started twice');
  });

  it('passes the ping, manifests and HEADs through; routes by X-Damselfly-Registry', async () => {
    const ping = await request(mirrorUrl(peers[0]!, '/v2/'));
    await ping.body.dump();
    assert.equal(ping.statusCode, 200);
    assert.equal(ping.headers['docker-distribution-api-version'], 'registry/2.0');

    const accept = { accept: image.manifest.mediaType };
    const manifest = await request(mirrorUrl(peers[0]!, '/v2/app/data/manifests/1'), { headers: accept });
    assert.equal(manifest.statusCode, 200);
    assert.deepEqual(await readAll(manifest.body), image.manifest.bytes);

    const head = await request(mirrorUrl(headerRouted, `/v2/app/data/manifests/1`), {
      method: 'HEAD',
      headers: { ...accept, 'x-damselfly-registry': tap.url },
    });
    await head.body.dump();
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers['docker-content-digest'], image.manifest.digest);

    const blob = await request(mirrorUrl(headerRouted, `/v2/app/data/blobs/${image.config.digest}`), {
      headers: { 'x-damselfly-registry': tap.url },
    });
    assert.equal(blob.statusCode, 200);
    assert.deepEqual(await readAll(blob.body), image.config.bytes);
  });

  it('refuses what a read-only mirror cannot do, with a registry error body', async () => {
    const cases: Array<[string, string, Record<string, string>, number]> = [
      ['POST', '/v2/app/data/blobs/uploads/', {}, 405],
      ['GET', '/metrics', {}, 404],
      ['GET', '/v2/app/data/manifests/1', { 'x-damselfly-registry': 'ftp://example' }, 400],
    ];
    for (const [method, path, headers, status] of cases) {
      const res = await request(mirrorUrl(peers[0]!, path), { method: method as 'GET', headers });
      assert.equal(res.statusCode, status, `${method} ${path}`);
      const body = (await res.body.json()) as { errors: { code: string; message: string }[] };
      assert.ok(body.errors[0]?.message, `${method} ${path}: no error message`);
    }
  });
});

describe('registry mirror with an authenticating registry', () => {
  let registry: TestRegistry;
  let cluster: Cluster;
  let secret: TestImage;
  let daemons: Daemon[];

  before(async () => {
    registry = await startRegistry({ auth: 'basic' });
    secret = await buildImage({
      layers: [[{ path: 'secret.bin', content: seededBytes('private-layer', 6 * MiB) }]],
      compression: 'none',
    });
    const authed = new RegistryClient({
      plainHttp: true,
      credentials: new StaticCredentialStore({ [registry.host]: TEST_USER }),
    });
    await pushImage(authed, `${registry.host}/private/app:1`, secret);
    cluster = await Cluster.create('mirror-auth');
    await cluster.startScheduler();
    const yaml = `proxy:\n  registryMirror:\n    addr: ${registry.url}\n`;
    await cluster.startDaemon({ name: 'seed', seedPeer: true, configYaml: yaml });
    daemons = await Promise.all(
      [0, 1].map((i) => cluster.startDaemon({ name: `peer${i}`, configYaml: yaml })),
    );
  });

  after(async () => {
    await cluster?.stop();
    await registry?.stop();
  });

  it('relays the challenge, serves a cached blob only to clients the registry accepts', {
    timeout: 120_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const blobPath = `/v2/private/app/blobs/${secret.layers[0]!.digest}`;
      const ping = await request(mirrorUrl(daemons[0]!, '/v2/'));
      await ping.body.dump();
      assert.equal(ping.statusCode, 401);
      assert.match(String(ping.headers['www-authenticate']), /^Basic realm=/);

      const allowed = await request(mirrorUrl(daemons[0]!, blobPath), { headers: { authorization: BASIC } });
      assert.equal(allowed.statusCode, 200);
      assert.equal(sha256(await readAll(allowed.body)), secret.layers[0]!.digest);

      // The blob now sits in daemon 0's store and in the P2P network: still no bytes without credentials.
      const wrong = `Basic ${Buffer.from(`${TEST_USER.username}:guess`).toString('base64')}`;
      for (const [daemon, headers] of [
        [daemons[0]!, {}],
        [daemons[0]!, { authorization: wrong }],
        [daemons[1]!, {}],
      ] as const) {
        const denied = await request(mirrorUrl(daemon, blobPath), { headers });
        const body = await readAll(denied.body);
        assert.equal(denied.statusCode, 401, `${daemon.name} ${JSON.stringify(headers)}`);
        assert.match(String(denied.headers['www-authenticate']), /^Basic realm=/);
        assert.ok(body.length < 1024, `${daemon.name}: a ${body.length}-byte body came with the 401`);
        assert.equal(denied.headers['x-damselfly-task-id'], undefined);
      }
      const m = await daemons[0]!.metrics();
      assert.ok(m.value('damselfly_proxy_requests_total', { via: 'refused' }) >= 2);
    });
  });
});

describe('forward proxy', () => {
  let origin: TestOrigin;
  let cluster: Cluster;
  let daemon: Daemon;

  before(async () => {
    origin = await startOrigin();
    cluster = await Cluster.create('forward-proxy');
    await cluster.startScheduler();
    await cluster.startDaemon({ name: 'seed', seedPeer: true });
    daemon = await cluster.startDaemon({ name: 'peer' });
  });

  after(async () => {
    await cluster?.stop();
    await origin?.close();
  });

  function viaProxy(
    url: string,
    headers: Record<string, string> = {},
  ): Promise<{ res: IncomingMessage; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: daemon.proxyPort, path: url, headers });
      req.once('response', (res) => {
        readAll(res).then((body) => resolve({ res, body }), reject);
      });
      req.once('error', reject);
      req.end();
    });
  }

  it('sends matching GETs through P2P and the rest straight to the origin', { timeout: 60_000 }, async () => {
    await cluster.withLogs(async () => {
      const file = await origin.addFile('/files/tool.tar', 5 * MiB);
      const p2p = await viaProxy(file.url, { 'x-damselfly-use-p2p': 'true' });
      assert.equal(p2p.res.statusCode, 200);
      assert.match(String(p2p.res.headers['x-damselfly-task-id']), /^[0-9a-f]{64}$/);
      assert.equal(createHash('sha256').update(p2p.body).digest('hex'), file.sha256);

      const direct = await viaProxy(file.url);
      assert.equal(direct.res.statusCode, 200);
      assert.equal(direct.res.headers['x-damselfly-task-id'], undefined);
      assert.equal(createHash('sha256').update(direct.body).digest('hex'), file.sha256);

      const missing = await viaProxy(origin.url('/files/none'), { 'x-damselfly-use-p2p': 'true' });
      assert.equal(missing.res.statusCode, 404);
    });
  });

  it('ranged reads with no seed peer: a second node whose range no peer holds still finishes', {
    timeout: 120_000,
  }, async () => {
    await cluster.withLogs(async () => {
      // Its own scheduler and no seed: the first ranged peer fetches only its range from the origin.
      const scheduler = await cluster.startScheduler({ name: 'no-seed-scheduler' });
      const [a, b] = await Promise.all(
        ['ranged-a', 'ranged-b'].map((name) => cluster.startDaemon({ name, schedulerPort: scheduler.port })),
      );
      const file = await origin.addFile('/files/ranged.bin', 24 * MiB);
      const bytes = await readFile(file.localPath);
      const ranged = async (daemon: Daemon, start: number, end: number) => {
        const viaA = await new Promise<{ res: IncomingMessage; body: Buffer }>((resolve, reject) => {
          const req = httpRequest({
            host: '127.0.0.1',
            port: daemon.proxyPort,
            path: file.url,
            headers: { 'x-damselfly-use-p2p': 'true', range: `bytes=${start}-${end}` },
          });
          req.once('response', (res) => readAll(res).then((body) => resolve({ res, body }), reject));
          req.once('error', reject);
          req.end();
        });
        assert.equal(viaA.res.statusCode, 206, daemon.name);
        assert.deepEqual(viaA.body, bytes.subarray(start, end + 1), `${daemon.name}: range bytes`);
      };
      await ranged(a!, 0, 999);
      await ranged(b!, 20 * MiB, 20 * MiB + 999);
      const fromSource = (await b!.metrics()).value('damselfly_download_traffic_bytes_total', {
        type: 'back_to_source',
      });
      assert.ok(fromSource <= 4 * MiB, `node b fetched ${fromSource} bytes from the origin for one piece`);
    });
  });

  it('tunnels CONNECT byte for byte, and refuses a target it cannot reach with 502', async () => {
    const target = new URL(origin.url('/')).host;
    const connectTo = (authority: string) =>
      new Promise<{ res: IncomingMessage; socket: Socket }>((resolve, reject) => {
        const req = httpRequest({
          host: '127.0.0.1',
          port: daemon.proxyPort,
          method: 'CONNECT',
          path: authority,
        });
        req.once('connect', (res, socket) => resolve({ res, socket }));
        req.once('response', (res) => resolve({ res, socket: res.socket as Socket }));
        req.once('error', reject);
        req.end();
      });
    const { res, socket } = await connectTo(target);
    assert.equal(res.statusCode, 200);
    await origin.addFile('/files/small.txt', 1000);
    socket.write(`GET /files/small.txt HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`);
    const raw = await readAll(socket);
    assert.match(raw.toString('latin1'), /^HTTP\/1\.1 200/);
    assert.ok(raw.length > 1000);

    const refused = await connectTo('127.0.0.1:1');
    assert.equal(refused.res.statusCode, 502);
    refused.socket.destroy();
  });
});

describe('HTTPS through the forward proxy with TLS interception', () => {
  let intercepted: TestOrigin;
  let tunnelled: TestOrigin;
  let cluster: Cluster;
  let daemon: Daemon;
  let proxyCa: CertifiedKey;
  let originCa: CertifiedKey;

  before(async () => {
    originCa = createCertificateAuthority('test origin CA');
    const originIssuer = new LeafIssuer(originCa);
    const tls = { cert: originIssuer.issue('127.0.0.1'), key: originIssuer.leafKeyPem };
    intercepted = await startOrigin({ tls });
    tunnelled = await startOrigin({ tls });
    cluster = await Cluster.create('interception');
    const dir = await cluster.dir('ca');
    // The proxy's CA, made as a user would make it.
    const made = await run(process.execPath, [cliPath, 'init', 'ca', '--config-path', dir]);
    assert.match(made.stdout, /created .*ca\.crt/);
    proxyCa = {
      cert: await readFile(join(dir, 'ca.crt'), 'utf8'),
      key: await readFile(join(dir, 'ca.key'), 'utf8'),
    };
    assert.equal((await stat(join(dir, 'ca.key'))).mode & 0o777, 0o600, 'the CA key is readable by others');
    const again = await run(process.execPath, [cliPath, 'init', 'ca', '--config-path', dir]);
    assert.match(again.stdout, /already configured/);
    assert.equal(await readFile(join(dir, 'ca.crt'), 'utf8'), proxyCa.cert, 'a second init replaced the CA');
    await writeFile(join(dir, 'origin-ca.pem'), originCa.cert);
    // The daemons fetch the origin themselves, so they must trust its CA like any https client.
    const env = { NODE_EXTRA_CA_CERTS: join(dir, 'origin-ca.pem') };
    await cluster.startScheduler();
    await cluster.startDaemon({ name: 'seed', seedPeer: true, env });
    daemon = await cluster.startDaemon({
      name: 'peer',
      env,
      configYaml: [
        'proxy:',
        '  interception:',
        '    enable: true',
        `    caCert: ${join(dir, 'ca.crt')}`,
        `    caKey: ${join(dir, 'ca.key')}`,
        `    hosts: ['^127\\.0\\.0\\.1:${intercepted.port}$']`,
        '',
      ].join('\n'),
    });
  });

  after(async () => {
    await cluster?.stop();
    await intercepted?.close();
    await tunnelled?.close();
  });

  function through(ca: string): ProxyAgent {
    return new ProxyAgent({ uri: `http://127.0.0.1:${daemon.proxyPort}`, requestTls: { ca } });
  }

  it('decrypts a matching host so its GETs go P2P, under a certificate from our CA', {
    timeout: 60_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const file = await intercepted.addFile('/models/weights.bin', 6 * MiB);
      const res = await request(file.url, {
        dispatcher: through(proxyCa.cert),
        headers: { 'x-damselfly-use-p2p': 'true' },
      });
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['x-damselfly-task-id']), /^[0-9a-f]{64}$/);
      assert.equal(
        createHash('sha256')
          .update(await readAll(res.body))
          .digest('hex'),
        file.sha256,
      );
      const fromOrigin = intercepted.bytesServed(file.path);
      assert.ok(
        fromOrigin <= file.size + 2,
        `the origin served ${fromOrigin} bytes of a ${file.size}-byte file`,
      );

      // A client that trusts only the origin's CA refuses the proxy's certificate.
      await assert.rejects(
        request(file.url, { dispatcher: through(originCa.cert) }),
        /certificate|self.signed|issuer/i,
      );
    });
  });

  it('tunnels other hosts untouched: the client sees the origin certificate', async () => {
    const file = await tunnelled.addFile('/plain.bin', 100_000);
    const res = await request(file.url, { dispatcher: through(originCa.cert) });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-damselfly-task-id'], undefined);
    assert.equal(
      createHash('sha256')
        .update(await readAll(res.body))
        .digest('hex'),
      file.sha256,
    );
    await assert.rejects(
      request(file.url, { dispatcher: through(proxyCa.cert) }),
      /certificate|self.signed|issuer/i,
    );
  });
});
