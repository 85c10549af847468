/**
 * `damselfly mount --backend p2p`: chunk ranges go through the local daemon's registry mirror, so two
 * nodes reading a whole image fetch it from the registry about once, and a node reading one file moves
 * only the pieces under it. Real FUSE mounts, a real registry (behind a byte-counting tap), real daemons.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { RegistryClient } from '../../src/image/oci/index.js';
import { decodeSourceBootstrap, openImageSource } from '../../src/image/source/index.js';
import { Cluster, cliPath, type Daemon } from '../helpers/cluster.js';
import { buildImage, pushImage } from '../helpers/oci-image.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { type RegistryTap, startRegistryTap } from '../helpers/registry-tap.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BIG = randomBytes(40 * MiB);
const SMALL = Array.from({ length: 50 }, (_, i) => Buffer.from(`small file ${i}\n`.repeat(100 + i)));
const skip =
  process.getuid?.() !== 0 ? 'needs root' : !existsSync('/dev/fuse') ? 'needs /dev/fuse' : undefined;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('damselfly mount --backend p2p', { skip }, () => {
  let registry: TestRegistry;
  let tap: RegistryTap;
  let cluster: Cluster;
  let nodes: Daemon[];
  let ref: string;
  let imageBytes: number;
  let blobCount: number;

  before(async () => {
    registry = await startRegistry();
    tap = await startRegistryTap(registry.url);
    const image = await buildImage({
      layers: [
        [
          { path: 'data', type: 'dir' },
          { path: 'data/big.bin', content: BIG },
          { path: 'small', type: 'dir' },
          ...SMALL.map((content, i) => ({ path: `small/f${i}`, content })),
        ],
      ],
      compression: 'none',
    });
    await pushImage(new RegistryClient({ plainHttp: true }), `${registry.host}/app:src`, image);
    await run(process.execPath, [
      cliPath,
      ...['image', 'convert', `${registry.host}/app:src`, `${registry.host}/app:df`, '--plain-http'],
      '--no-progress',
    ]);
    const decoded = decodeSourceBootstrap(
      await openImageSource(`${registry.host}/app:df`, { plainHttp: true }),
    );
    imageBytes = decoded.image.blobs.reduce((sum, b) => sum + b.compressedSize, 0);
    blobCount = decoded.image.blobs.length + 1; // and the bootstrap's blob
    ref = `${tap.host}/app:df`;
    cluster = await Cluster.create('mount-p2p');
    await cluster.startScheduler();
    await cluster.startDaemon({ name: 'seed', seedPeer: true });
    nodes = await Promise.all([0, 1].map((i) => cluster.startDaemon({ name: `node${i}` })));
  });

  after(async () => {
    await cluster?.stop(); // the mount processes are the cluster's too: stopped first, by PID
    await tap?.close();
    await registry?.stop();
  });

  /** `damselfly mount REF MNT --backend p2p --proxy <node's proxy>` until it says "mounted". */
  async function mount(node: Daemon, name: string) {
    const dir = await cluster.dir(name);
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const proc = await cluster.startProcess(name, [
      ...['mount', ref, mnt, '--backend', 'p2p', '--proxy', `127.0.0.1:${node.proxyPort}`],
      ...['--plain-http', '--cache-dir', join(dir, 'cache'), '--no-prefetch', '--mode', 'fuse'],
    ]);
    await cluster.waitForOutput(proc, 'mounted ');
    return { mnt, proc };
  }

  it('two nodes read the whole image; the registry serves it about once', { timeout: 240_000 }, async () => {
    await cluster.withLogs(async () => {
      for (const [i, node] of nodes.entries()) {
        const { mnt, proc } = await mount(node, `mount-all-${i}`);
        assert.equal(sha256(await readFile(join(mnt, 'data', 'big.bin'))), sha256(BIG), `node${i}: big.bin`);
        for (const [j, content] of SMALL.entries()) {
          assert.deepEqual(await readFile(join(mnt, 'small', `f${j}`)), content, `node${i}: small/f${j}`);
        }
        const exit = await proc.stop('SIGTERM');
        assert.equal(exit.code, 0, `mount-all-${i} exit`);
      }
      const served = tap.blobBytes();
      process.stdout.write(
        `# two full reads: the registry served ${served} blob bytes; image ${imageBytes}\n`,
      );
      assert.ok(
        served <= 1.05 * imageBytes + 64 * 1024,
        `the registry served ${served} blob bytes for two full reads of a ${imageBytes}-byte image`,
      );
      // The daemon remembers the registry's yes for a while (proxy.accessCacheTtl): not one check per read.
      const checks = tap.records.filter((r) => r.path.includes('/blobs/') && r.range === 'bytes=0-0').length;
      const reads = (await nodes[0]!.metrics()).value('damselfly_proxy_requests_total', { via: 'p2p' });
      process.stdout.write(
        `# access checks at the registry: ${checks}, for ${reads} P2P range reads on node0\n`,
      );
      assert.ok(checks <= 4 * blobCount * nodes.length, `${checks} access checks at the registry`);
      const m = await nodes[1]!.metrics();
      assert.ok(m.value('damselfly_proxy_requests_total', { via: 'p2p' }) > 0, 'node1 served no P2P ranges');
    });
  });

  it('a node reading one small file downloads only the pieces under its chunks', {
    timeout: 120_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const fresh = await cluster.startDaemon({ name: 'node-one-file' });
      const { mnt, proc } = await mount(fresh, 'mount-one');
      assert.deepEqual(await readFile(join(mnt, 'small', 'f7')), SMALL[7]);
      const got = (await fresh.metrics()).value('damselfly_download_traffic_bytes_total', { type: 'p2p' });
      process.stdout.write(`# one small file: ${got} bytes moved to the node; image ${imageBytes}\n`);
      assert.ok(
        got < 0.3 * imageBytes,
        `${got} bytes moved to read one small file of a ${imageBytes}-byte image`,
      );
      assert.equal((await proc.stop('SIGTERM')).code, 0);
    });
  });
});
