import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  Cluster,
  type Daemon,
  describeGet,
  type OriginFile,
  sha256File,
  startOrigin,
  type TestOrigin,
} from '../helpers/index.js';

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
const PEERS = 5;

describe('P2P distribution: one seed peer, five daemons, one 256 MiB file', () => {
  let origin: TestOrigin;
  let cluster: Cluster;
  let file: OriginFile;
  let peers: Daemon[];

  before(async () => {
    origin = await startOrigin();
    file = await origin.addFile('/dist/big.bin', SIZE);
    cluster = await Cluster.create('distribution');
    await cluster.startScheduler();
    // The seed first, so it has announced itself before any peer asks for a parent.
    await cluster.startDaemon({ name: 'seed', seedPeer: true });
    peers = await Promise.all(
      Array.from({ length: PEERS }, (_, i) => cluster.startDaemon({ name: `peer${i}` })),
    );
  });

  after(async () => {
    await cluster?.stop();
    await origin?.close();
  });

  it('five concurrent gets: identical bytes, origin read about once, most bytes moved between peers', {
    timeout: 360_000,
  }, async (t) => {
    await cluster.withLogs(async () => {
      const outDir = await cluster.dir('out');
      const outputs = peers.map((p) => join(outDir, `${p.name}.bin`));
      const results = await Promise.all(peers.map((p, i) => p.get(file.url, outputs[i]!)));
      for (const [i, r] of results.entries()) assert.equal(r.code, 0, `${peers[i]!.name}: ${describeGet(r)}`);

      for (const [i, out] of outputs.entries()) {
        assert.equal(
          await sha256File(out),
          file.sha256,
          `${peers[i]!.name}: output differs from the origin's file`,
        );
      }

      const served = origin.bytesServed();
      assert.ok(
        served <= 1.05 * SIZE,
        `origin served ${served} bytes (${(served / SIZE).toFixed(2)} × the file); expected ≤ 1.05 ×`,
      );

      const scrapes = await Promise.all(peers.map((p) => p.metrics()));
      const p2p = scrapes.map((m) => m.value('damselfly_download_traffic_bytes_total', { type: 'p2p' }));
      const source = scrapes.map((m) =>
        m.value('damselfly_download_traffic_bytes_total', { type: 'back_to_source' }),
      );
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      const perPeer = peers.map((p, i) => `${p.name}: p2p=${p2p[i]} back_to_source=${source[i]}`).join('; ');
      t.diagnostic(
        `gets took ${results.map((r) => r.ms).join(', ')} ms; origin served ${served} bytes; ${perPeer}`,
      );
      assert.ok(
        sum(p2p) > sum(source),
        `p2p bytes should exceed back-to-source bytes across the peers (${perPeer})`,
      );
      assert.ok(
        sum(p2p) >= 0.8 * PEERS * SIZE,
        `p2p bytes across the peers ${sum(p2p)} < 0.8 × ${PEERS} × ${SIZE} (${perPeer})`,
      );
      // Peers that start together must also feed each other, not only pull from the seed.
      const uploaded = scrapes.map((m) => m.value('damselfly_upload_traffic_bytes_total'));
      assert.ok(
        sum(uploaded) > 0,
        `no normal peer served another (uploads: ${uploaded.join(', ')}); all bytes came from the seed`,
      );
    });
  });
});

describe('P2P distribution: super-seeding', () => {
  let origin: TestOrigin;
  let cluster: Cluster;

  before(async () => {
    origin = await startOrigin();
    cluster = await Cluster.create('super-seeding');
    await cluster.startScheduler();
  });

  after(async () => {
    await cluster?.stop();
    await origin?.close();
  });

  it('a seed uploads each piece once while held; the next child takes them from the first', {
    timeout: 120_000,
  }, async () => {
    await cluster.withLogs(async () => {
      // A hold far longer than the test, so timing cannot decide the outcome.
      const seed = await cluster.startDaemon({
        name: 'seed',
        seedPeer: true,
        configYaml: 'seedPeer:\n  pieceHold: 10m\n',
      });
      const first = await cluster.startDaemon({ name: 'first' });
      const second = await cluster.startDaemon({ name: 'second' });
      const file = await origin.addFile('/dist/super.bin', 32 * MiB);
      const pieces = 8; // 4 MiB pieces
      const dir = await cluster.dir('super-seeding');
      for (const [name, daemon] of [
        ['first', first!],
        ['second', second!],
      ] as const) {
        const out = join(dir, `${name}.bin`);
        const r = await daemon.get(file.url, out);
        assert.equal(r.code, 0, `${name}: ${describeGet(r)}`);
        assert.equal(await sha256File(out), file.sha256, `${name}: output differs`);
      }
      const [s, a, b] = [await seed.metrics(), await first.metrics(), await second.metrics()];
      const summary =
        `seed uploaded ${s.value('damselfly_upload_pieces_total')} pieces, deferred ` +
        `${s.value('damselfly_upload_deferred_total')}; first uploaded ${a.value('damselfly_upload_pieces_total')}`;
      assert.equal(
        s.value('damselfly_upload_pieces_total'),
        pieces,
        `each piece left the seed once (${summary})`,
      );
      assert.ok(
        s.value('damselfly_upload_deferred_total') > 0,
        `the second child was sent away (${summary})`,
      );
      assert.equal(
        a.value('damselfly_upload_pieces_total'),
        pieces,
        `the first child served them (${summary})`,
      );
      assert.equal(
        b.value('damselfly_download_traffic_bytes_total', { type: 'p2p' }),
        file.size,
        'the second child got every byte from peers',
      );
    });
  });
});
