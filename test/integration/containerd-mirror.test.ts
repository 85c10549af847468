import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  containerdAvailability,
  describeCommand,
  skopeoCopy,
  startContainerd,
  type TestContainerd,
} from '../helpers/containerd.js';
import { Cluster, cliPath, type Daemon } from '../helpers/index.js';
import { startRegistry, TEST_USER, type TestRegistry } from '../helpers/registry.js';
import { type RegistryTap, startRegistryTap } from '../helpers/registry-tap.js';
import { buildRunnableImage, pushRunnableImage, type RunnableImage } from '../helpers/runnable-image.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const skip = await containerdAvailability();

/** `damselfly init RUNTIME --registry R --proxy 127.0.0.1:PORT --config-path PATH`, as a user runs it. */
async function init(runtime: string, registry: string, daemon: Daemon, configPath: string): Promise<string> {
  const { stdout } = await run(process.execPath, [
    cliPath,
    'init',
    runtime,
    '--registry',
    registry,
    '--proxy',
    `127.0.0.1:${daemon.proxyPort}`,
    '--config-path',
    configPath,
  ]);
  return stdout;
}

function served(m: Awaited<ReturnType<Daemon['metrics']>>, registry: string): number {
  return m.value('damselfly_proxy_served_bytes_total', { registry });
}

describe('containerd and skopeo pull through the P2P mirror', { skip }, () => {
  let registry: TestRegistry;
  let tap: RegistryTap;
  let cluster: Cluster;
  let containerd: TestContainerd;
  let image: RunnableImage;
  let ref: string;
  let peers: Daemon[];

  before(async () => {
    registry = await startRegistry();
    tap = await startRegistryTap(registry.url);
    image = await buildRunnableImage({ extraLayerBytes: 24 * MiB, message: 'hello through the mirror\n' });
    ref = `${tap.host}/app/runnable:1`;
    await pushRunnableImage(registry, 'app/runnable', '1', image);
    cluster = await Cluster.create('containerd');
    await cluster.startScheduler();
    const yaml = `proxy:\n  registryMirror:\n    addr: ${tap.url}\n`;
    await cluster.startDaemon({ name: 'seed', seedPeer: true, configYaml: yaml });
    peers = await Promise.all(
      [0, 1, 2].map((i) => cluster.startDaemon({ name: `peer${i}`, configYaml: yaml })),
    );
    containerd = await startContainerd();
  });

  after(async () => {
    await containerd?.stop();
    await cluster?.stop();
    await tap?.close();
    await registry?.stop();
  });

  it('pulls one image through each of three daemons, runs it, and reads the registry about once', {
    timeout: 300_000,
  }, async () => {
    await cluster.withLogs(async () => {
      for (const peer of peers) {
        const dir = await cluster.dir(`containerd-${peer.name}`);
        const said = await init('containerd', tap.url, peer, join(dir, 'config.toml'));
        assert.match(said, /restart/i, 'init should say what to restart');
        const hostsToml = await readFile(join(dir, 'certs.d', tap.host, 'hosts.toml'), 'utf8');
        assert.match(hostsToml, new RegExp(`127\\.0\\.0\\.1:${peer.proxyPort}`));

        await containerd.pull(ref, { hostsDir: join(dir, 'certs.d') });
        assert.equal(await containerd.run(ref, []), image.message, `${peer.name}: the container's output`);
        const sum = await containerd.run(ref, ['/bin/sha256sum', '/data/blob.bin']);
        assert.equal(sum.split(/\s+/)[0], image.blobSha256, `${peer.name}: /data/blob.bin differs`);
        await containerd.removeImage(ref);
        assert.ok(
          served(await peer.metrics(), tap.host) >= image.blobBytes,
          `${peer.name}: the pull did not go through its mirror`,
        );
      }
      const blobBytes = tap.blobBytes();
      assert.ok(
        blobBytes <= 1.05 * image.blobBytes,
        `the registry served ${blobBytes} blob bytes over 3 pulls of ${image.blobBytes} unique blob bytes`,
      );
      const last = await peers[2]!.metrics();
      assert.ok(
        last.value('damselfly_proxy_traffic_bytes_total', { registry: tap.host, type: 'p2p' }) >=
          image.dataLayer.size,
        'the third daemon did not get the big layer from peers',
      );
    });
  });

  it('skopeo copies through the mirror that `damselfly init podman` configured', {
    timeout: 120_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const dir = await cluster.dir('skopeo');
      const conf = join(dir, 'registries.conf');
      await init('podman', tap.url, peers[0]!, conf);
      const before = served(await peers[0]!.metrics(), tap.host);
      const out = join(dir, 'image');
      const copy = await skopeoCopy(`docker://${ref}`, `dir:${out}`, { registriesConf: conf });
      assert.equal(copy.code, 0, describeCommand('skopeo copy', copy));
      const files = await readdir(out);
      for (const digest of [image.dataLayer.digest, image.busyboxLayer.digest]) {
        assert.ok(files.includes(digest.replace('sha256:', '')), `skopeo did not write ${digest}`);
      }
      const through = served(await peers[0]!.metrics(), tap.host) - before;
      assert.ok(through >= image.blobBytes, `only ${through} bytes went through the mirror`);
    });
  });

  it('falls back to the registry when the mirror is down or answers errors', {
    timeout: 180_000,
  }, async () => {
    await cluster.withLogs(async () => {
      // A mirror that cannot reach the registry answers 502 to everything.
      const broken = await cluster.dir('containerd-broken');
      await init('containerd', tap.url, peers[1]!, join(broken, 'config.toml'));
      const hostsPath = join(broken, 'certs.d', tap.host, 'hosts.toml');
      const hosts = await readFile(hostsPath, 'utf8');
      assert.ok(hosts.includes(`"${tap.url}"`), 'hosts.toml names the registry for the mirror');
      await writeFile(
        hostsPath,
        hosts.replace(/X-Damselfly-Registry = \[[^\]]*\]/i, 'X-Damselfly-Registry = ["http://127.0.0.1:1"]'),
      );
      const requestsBefore = tap.records.length;
      const errorsBefore = (await peers[1]!.metrics()).value('damselfly_proxy_requests_total', {
        via: 'error',
      });
      await containerd.pull(ref, { hostsDir: join(broken, 'certs.d') });
      assert.equal(await containerd.run(ref, []), image.message);
      await containerd.removeImage(ref);
      const errors = (await peers[1]!.metrics()).value('damselfly_proxy_requests_total', { via: 'error' });
      assert.ok(errors > errorsBefore, 'containerd never asked the broken mirror');
      assert.ok(tap.records.length > requestsBefore, 'containerd did not fall back to the registry');

      // A mirror that is not running at all.
      const gone = await cluster.startDaemon({ name: 'stopped-mirror' });
      const down = await cluster.dir('containerd-down');
      await init('containerd', tap.url, gone, join(down, 'config.toml'));
      await gone.stop();
      await containerd.pull(ref, { hostsDir: join(down, 'certs.d') });
      assert.equal(await containerd.run(ref, []), image.message);
      await containerd.removeImage(ref);
    });
  });
});

describe('containerd through the mirror to a registry with auth', { skip }, () => {
  let registry: TestRegistry;
  let cluster: Cluster;
  let containerd: TestContainerd;
  let image: RunnableImage;
  let peer: Daemon;

  before(async () => {
    registry = await startRegistry({ auth: 'basic' });
    image = await buildRunnableImage({ extraLayerBytes: 4 * MiB, seed: 'private', message: 'private\n' });
    await pushRunnableImage(registry, 'team/private', '1', image, TEST_USER);
    cluster = await Cluster.create('containerd-auth');
    await cluster.startScheduler();
    await cluster.startDaemon({ name: 'seed', seedPeer: true });
    peer = await cluster.startDaemon({ name: 'peer' });
    containerd = await startContainerd();
  });

  after(async () => {
    await containerd?.stop();
    await cluster?.stop();
    await registry?.stop();
  });

  it('an authorized pull works; without credentials the blob in the cache is not served', {
    timeout: 180_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const ref = `${registry.host}/team/private:1`;
      const dir = await cluster.dir('hosts');
      await init('containerd', registry.url, peer, join(dir, 'config.toml'));
      const hostsDir = join(dir, 'certs.d');
      await containerd.pull(ref, { hostsDir, user: `${TEST_USER.username}:${TEST_USER.password}` });
      assert.equal(await containerd.run(ref, []), image.message);
      await containerd.removeImage(ref);
      const servedAuthorized = served(await peer.metrics(), registry.host);
      assert.ok(servedAuthorized >= image.blobBytes, 'the authorized pull did not go through the mirror');

      await assert.rejects(containerd.pull(ref, { hostsDir }), /401|unauthorized/i);
      const m = await peer.metrics();
      assert.equal(
        served(m, registry.host) - servedAuthorized < 4096,
        true,
        'blob bytes went to a client without credentials',
      );
      assert.equal(
        m.value('damselfly_proxy_requests_total', { via: 'p2p' }),
        3,
        'only the authorized pull used P2P',
      );
    });
  });
});
