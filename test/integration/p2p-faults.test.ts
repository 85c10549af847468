import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  Cluster,
  corruptEvery,
  type Daemon,
  describeGet,
  exists,
  freePort,
  type GetResult,
  listDir,
  type OriginFile,
  runGet,
  sha256File,
  startOrigin,
  type TestOrigin,
} from '../helpers/index.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A failed get: non-zero exit, one clear line on stderr, nothing at FILE nor beside it. */
async function assertFailedCleanly(r: GetResult, dir: string, out: string): Promise<void> {
  assert.notEqual(r.code, 0, `get should fail: ${describeGet(r)}`);
  assert.ok(r.stderr.trim() !== '', `get failed without a message on stderr: ${describeGet(r)}`);
  assert.doesNotMatch(
    r.stderr,
    /\n\s+at \S/,
    `a failed get should print one line, not a stack trace: ${r.stderr}`,
  );
  assert.equal(await exists(out), false, `${out} exists after a failed get`);
  assert.deepEqual(await listDir(dir), [], `files left in ${dir} after a failed get`);
}

async function assertGot(r: GetResult, out: string, sha256: string, who: string): Promise<void> {
  assert.equal(r.code, 0, `${who}: ${describeGet(r)}`);
  assert.equal(await sha256File(out), sha256, `${who}: output differs from the origin's file`);
}

/** A scheduler and seed peer of their own, plus daemons by name (value: config YAML, or '' for none). */
async function startSwarm<K extends string>(
  cluster: Cluster,
  tag: string,
  peers: Record<K, string>,
): Promise<{ seed: Daemon; peers: Record<K, Daemon> }> {
  const scheduler = await cluster.startScheduler({ name: `scheduler-${tag}` });
  const schedulerPort = scheduler.port;
  const seed = await cluster.startDaemon({ name: `seed-${tag}`, seedPeer: true, schedulerPort });
  const started = {} as Record<K, Daemon>;
  for (const [name, configYaml] of Object.entries(peers) as [K, string][]) {
    started[name] = await cluster.startDaemon({
      name: `${name}-${tag}`,
      schedulerPort,
      ...(configYaml ? { configYaml } : {}),
    });
  }
  return { seed, peers: started };
}

/** Each daemon downloads the file in turn, and every copy must match the origin's. */
async function getInTurn(holders: [string, Daemon][], file: OriginFile, dir: string): Promise<void> {
  for (const [name, daemon] of holders) {
    const out = join(dir, `${name}.bin`);
    await assertGot(await daemon.get(file.url, out), out, file.sha256, name);
  }
}

describe('P2P faults', () => {
  let origin: TestOrigin;
  let cluster: Cluster;
  let peer: Daemon;
  let seed: Daemon;
  let schedulerPort: number;

  before(async () => {
    origin = await startOrigin();
    cluster = await Cluster.create('faults');
    schedulerPort = (await cluster.startScheduler()).port;
    seed = await cluster.startDaemon({ name: 'seed', seedPeer: true });
    peer = await cluster.startDaemon({ name: 'peer' });
  });

  after(async () => {
    await cluster?.stop();
    await origin?.close();
  });

  it('origin answers 404 or 500: get fails, names the status, leaves nothing', {
    timeout: 120_000,
  }, async () => {
    await cluster.withLogs(async () => {
      origin.setStatus('/faults/broken.bin', 500);
      for (const [path, status] of [
        ['/faults/missing.bin', 404],
        ['/faults/broken.bin', 500],
      ] as const) {
        const dir = await cluster.dir(`status-${status}`);
        const out = join(dir, 'out.bin');
        const r = await peer.get(origin.url(path), out);
        await assertFailedCleanly(r, dir, out);
        assert.match(
          r.stderr,
          new RegExp(`\\b${status}\\b`),
          `stderr should mention HTTP ${status}: ${r.stderr}`,
        );
      }
    });
  });

  it('wrong --digest: get fails and leaves nothing; the right one succeeds', {
    timeout: 120_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const file = await origin.addFile('/faults/digest.bin', 8 * MiB);
      const wrong = file.sha256.replace(/^./, (c) => (c === '0' ? '1' : '0'));
      const dir = await cluster.dir('digest-wrong');
      const out = join(dir, 'out.bin');
      const r = await peer.get(file.url, out, ['--digest', `sha256:${wrong}`]);
      await assertFailedCleanly(r, dir, out);

      const okDir = await cluster.dir('digest-right');
      const okOut = join(okDir, 'out.bin');
      await assertGot(
        await peer.get(file.url, okOut, ['--digest', `sha256:${file.sha256}`]),
        okOut,
        file.sha256,
        'right digest',
      );
    });
  });

  it('corrupted parent: pieces failing their digest are rejected and fetched elsewhere', {
    timeout: 180_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const { seed, peers } = await startSwarm(cluster, 'corrupt', { a: '', b: '' });
      const { a, b } = peers;
      const file = await origin.addFile('/faults/corrupt.bin', 64 * MiB);
      const dir = await cluster.dir('corrupt');
      await getInTurn(
        [
          ['seed', seed],
          ['peer A', a],
        ],
        file,
        dir,
      );

      const stored = a.contentPath(file.url);
      assert.ok(await exists(stored), `peer A has no content file at ${stored}`);
      const spots = await corruptEvery(stored, 4 * MiB, 16);
      assert.equal(spots, 16);
      await seed.stop();

      await assertGot(await b.get(file.url, join(dir, 'b.bin')), join(dir, 'b.bin'), file.sha256, 'peer B');
      const failures = (await b.metrics()).value('damselfly_piece_verify_failures_total');
      assert.ok(failures >= 1, `peer B's damselfly_piece_verify_failures_total is ${failures}; expected ≥ 1`);
    });
  });

  it('parent killed mid-download: the download finishes from the others', { timeout: 180_000 }, async (t) => {
    await cluster.withLogs(async () => {
      const { seed, peers } = await startSwarm(cluster, 'kill', {
        a: '',
        b: 'download:\n  rateLimit: 16MiB\n',
      });
      const { a, b } = peers;
      const file = await origin.addFile('/faults/killed.bin', 64 * MiB);
      const dir = await cluster.dir('killed');
      await getInTurn(
        [
          ['seed', seed],
          ['peer A', a],
        ],
        file,
        dir,
      );

      let finished = false;
      const pending = b.get(file.url, join(dir, 'b.bin')).finally(() => {
        finished = true;
      });
      await sleep(1000);
      if (finished) {
        assert.fail(
          `peer B finished within 1 s despite download.rateLimit 16MiB: ${describeGet(await pending)}`,
        );
      }
      // Informational: whether A was actually serving B when it died depends on the scheduler's choice.
      const uploadedByA = (await a.metrics()).value('damselfly_upload_traffic_bytes_total');
      await a.kill();

      await assertGot(await pending, join(dir, 'b.bin'), file.sha256, 'peer B');
      const m = await b.metrics();
      t.diagnostic(
        `A had uploaded ${uploadedByA} bytes when killed; B took ${(await pending).ms} ms, ` +
          `p2p=${m.value('damselfly_download_traffic_bytes_total', { type: 'p2p' })} ` +
          `back_to_source=${m.value('damselfly_download_traffic_bytes_total', { type: 'back_to_source' })} ` +
          `piece failures=${m.value('damselfly_piece_download_failures_total')}`,
      );
    });
  });

  it('slow parent: a piece stuck at a slow parent is fetched from another one', {
    timeout: 180_000,
  }, async () => {
    await cluster.withLogs(async () => {
      // A serves at 256 KiB/s: one 4 MiB piece from it would take ~16 s.
      const { seed, peers } = await startSwarm(cluster, 'slow', {
        a: 'upload:\n  rateLimit: 256KiB\n',
        b: '',
        c: '',
      });
      const { a: slow, b: fast, c } = peers;
      const file = await origin.addFile('/faults/slow-parent.bin', 32 * MiB);
      const dir = await cluster.dir('slow-parent');
      await getInTurn(
        [
          ['seed', seed],
          ['a', slow],
          ['b', fast],
        ],
        file,
        dir,
      );
      await seed.stop();
      const servedBefore = (await slow.metrics()).value('damselfly_upload_pieces_total');
      const out = join(dir, 'c.bin');
      await assertGot(await c.get(file.url, out), out, file.sha256, 'peer C');
      // C probes both parents, so it asked the slow one for a piece; that request must have been
      // overtaken by the fast parent and cancelled rather than waited out.
      const servedBySlow = (await slow.metrics()).value('damselfly_upload_pieces_total') - servedBefore;
      const fromPeers = (await c.metrics()).value('damselfly_download_traffic_bytes_total', { type: 'p2p' });
      assert.equal(fromPeers, file.size, 'C should get every byte from peers');
      assert.equal(servedBySlow, 0, `the slow parent completed ${servedBySlow} pieces for C`);
    });
  });

  it('origin without ranges or length: one streamed GET, cut into verified pieces, shared P2P', {
    timeout: 120_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const { seed, peers } = await startSwarm(cluster, 'plain', { a: '' });
      const file = await origin.addFile('/faults/plain.bin', 10 * MiB + 123);
      origin.disableRangesAndLength(file.path);
      const dir = await cluster.dir('plain');
      await getInTurn(
        [
          ['seed', seed],
          ['peer A', peers.a],
        ],
        file,
        dir,
      );
      assert.ok(
        origin.requestsFor(file.path).every((r) => r.status === 200),
        'the origin answered every request whole',
      );
      const fromPeers = (await peers.a.metrics()).value('damselfly_download_traffic_bytes_total', {
        type: 'p2p',
      });
      assert.equal(fromPeers, file.size, 'peer A should get every byte from the seed');
    });
  });

  it('scheduler down: the daemon downloads straight from the source', { timeout: 120_000 }, async () => {
    await cluster.withLogs(async () => {
      const nobody = await freePort();
      const lone = await cluster.startDaemon({ name: 'no-scheduler', schedulerPort: nobody });
      const file = await origin.addFile('/faults/no-scheduler.bin', 16 * MiB);
      const dir = await cluster.dir('no-scheduler');
      const out = join(dir, 'out.bin');
      await assertGot(await lone.get(file.url, out), out, file.sha256, 'daemon without a scheduler');
      const fromSource = (await lone.metrics()).value('damselfly_download_traffic_bytes_total', {
        type: 'back_to_source',
      });
      assert.equal(fromSource, file.size, 'back_to_source bytes should equal the file size');
    });
  });

  it('no daemon at the socket: a clear error telling how to start one', { timeout: 60_000 }, async () => {
    await cluster.withLogs(async () => {
      const file = await origin.addFile('/faults/no-daemon.bin', MiB);
      const dir = await cluster.dir('no-daemon');
      const sockets = await cluster.dir('no-daemon-sockets');
      const stale = join(sockets, 'stale.sock');
      await writeFile(stale, '');
      for (const socket of [join(sockets, 'absent.sock'), stale]) {
        const out = join(dir, 'out.bin');
        const r = await runGet([file.url, '-O', out, '--socket', socket, '--no-progress'], {
          timeoutMs: 30_000,
        });
        await assertFailedCleanly(r, dir, out);
        assert.match(
          r.stderr,
          /no (damselfly )?daemon/i,
          `stderr should say no daemon answers at ${socket}: ${r.stderr}`,
        );
        assert.match(
          r.stderr,
          /damselfly daemon/,
          `stderr should say how to start one (damselfly daemon): ${r.stderr}`,
        );
      }
      assert.equal(origin.requestsFor('/faults/no-daemon.bin').length, 0);
    });
  });

  it('--priority: 1 and 2 refuse a task no peer has, 3 fetches the source itself, 2 then takes it from peers', {
    timeout: 120_000,
  }, async () => {
    await cluster.withLogs(async () => {
      const file = await origin.addFile('/faults/priority.bin', 12 * MiB);
      const sourceBytes = async (d: Daemon) =>
        (await d.metrics()).value('damselfly_download_traffic_bytes_total', { type: 'back_to_source' });
      for (const level of ['1', '2']) {
        const dir = await cluster.dir(`priority-${level}`);
        const out = join(dir, 'out.bin');
        const r = await peer.get(file.url, out, ['--priority', level]);
        await assertFailedCleanly(r, dir, out);
        assert.match(
          r.stderr,
          new RegExp(`priority ${level}`),
          `stderr should name the priority: ${r.stderr}`,
        );
      }
      assert.ok(origin.bytesServed(file.path) <= 1, 'a refused download reads nothing from the origin');

      const seedBefore = await sourceBytes(seed);
      const peerBefore = await sourceBytes(peer);
      const dir = await cluster.dir('priority-3');
      const out = join(dir, 'out.bin');
      await assertGot(await peer.get(file.url, out, ['--priority', '3']), out, file.sha256, 'priority 3');
      assert.equal((await sourceBytes(peer)) - peerBefore, file.size, 'LEVEL3: the peer fetched the source');
      assert.equal((await sourceBytes(seed)) - seedBefore, 0, 'LEVEL3: the seed peer was not asked');

      // The suite's scheduler: other tests start swarms of their own.
      const other = await cluster.startDaemon({ name: 'priority-2', schedulerPort });
      const out2 = join(dir, 'from-peers.bin');
      await assertGot(await other.get(file.url, out2, ['--priority', '2']), out2, file.sha256, 'priority 2');
      assert.equal(await sourceBytes(other), 0, 'LEVEL2: nothing from the source');
      await other.stop();
    });
  });

  it("-H 'X-Test: 1' reaches the origin", { timeout: 120_000 }, async () => {
    await cluster.withLogs(async () => {
      const file = await origin.addFile('/faults/header.bin', 4 * MiB);
      const dir = await cluster.dir('header');
      const out = join(dir, 'out.bin');
      await assertGot(await peer.get(file.url, out, ['-H', 'X-Test: 1']), out, file.sha256, 'get -H');
      const seen = origin.requestsFor(file.path);
      const summary = seen.map(
        (r) => `${r.method} range=${r.range ?? '-'} x-test=${r.headers['x-test'] ?? '-'}`,
      );
      assert.ok(
        seen.some((r) => r.method === 'GET' && r.headers['x-test'] === '1'),
        `no GET reached the origin with X-Test: 1 (${summary.join('; ') || 'no requests'})`,
      );
      assert.ok(
        seen.every((r) => r.headers['x-test'] === '1'),
        `every request for the file should carry X-Test: 1 (${summary.join('; ')})`,
      );
    });
  });
});
