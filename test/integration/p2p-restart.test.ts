import assert from 'node:assert/strict';
import { closeSync, openSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Cluster, describeGet, sha256File, startOrigin, type TestOrigin } from '../helpers/index.js';

const MiB = 1024 * 1024;

describe('daemon restart', () => {
  let origin: TestOrigin;
  let cluster: Cluster;

  before(async () => {
    origin = await startOrigin();
    cluster = await Cluster.create('restart');
    await cluster.startScheduler();
  });

  after(async () => {
    await cluster?.stop();
    await origin?.close();
  });

  it('a new daemon on the same data dir serves a stored task without the origin', {
    timeout: 180_000,
  }, async () => {
    await cluster.withLogs(async () => {
      // No seed peer: after the restart nothing but the daemon's own store can provide the bytes.
      const first = await cluster.startDaemon({ name: 'daemon' });
      const file = await origin.addFile('/restart/file.bin', 32 * MiB);
      const dir = await cluster.dir('out');

      const before = await first.get(file.url, join(dir, 'first.bin'));
      assert.equal(before.code, 0, `first get: ${describeGet(before)}`);
      assert.equal(await sha256File(join(dir, 'first.bin')), file.sha256, 'first get: output differs');
      const servedBefore = origin.bytesServed(file.path);
      assert.ok(servedBefore >= file.size, `origin served only ${servedBefore} bytes for the first get`);

      const exit = await first.stop('SIGTERM');
      assert.notEqual(exit.signal, 'SIGKILL', 'the daemon did not exit on SIGTERM within the grace period');

      const second = await cluster.restartDaemon(first);
      const again = await second.get(file.url, join(dir, 'second.bin'));
      assert.equal(again.code, 0, `get after restart: ${describeGet(again)}`);
      assert.equal(
        await sha256File(join(dir, 'second.bin')),
        file.sha256,
        'get after restart: output differs',
      );
      assert.equal(
        origin.bytesServed(file.path),
        servedBefore,
        'the origin served bytes again after the restart',
      );

      // The streamed path (content through the socket, written by the get process) gives the same bytes.
      const streamed = await second.get(file.url, join(dir, 'streamed.bin'), [
        '--transfer-from-daemon',
        '--digest',
        `sha256:${file.sha256}`,
      ]);
      assert.equal(streamed.code, 0, `streamed get: ${describeGet(streamed)}`);
      assert.equal(await sha256File(join(dir, 'streamed.bin')), file.sha256, 'streamed get: output differs');

      // Outputs on the daemon's filesystem are hard links to its copy; --copy writes an independent file.
      assert.equal(statSync(join(dir, 'second.bin')).nlink >= 2, true, 'second.bin is not a hard link');
      const copied = await second.get(file.url, join(dir, 'copied.bin'), ['--copy']);
      assert.equal(copied.code, 0, `get --copy: ${describeGet(copied)}`);
      assert.equal(statSync(join(dir, 'copied.bin')).nlink, 1, 'get --copy made a hard link');
      assert.equal(await sha256File(join(dir, 'copied.bin')), file.sha256, 'get --copy: output differs');

      const m = await second.metrics();
      const moved =
        m.value('damselfly_download_traffic_bytes_total', { type: 'p2p' }) +
        m.value('damselfly_download_traffic_bytes_total', { type: 'back_to_source' });
      assert.equal(moved, 0, 'the restarted daemon downloaded bytes instead of using its store');

      // Writing into a hard-linked output changes the daemon's copy: the next get notices (every piece is
      // re-checked once the file's mtime moved), drops the task and fetches it again: right bytes.
      const fd = openSync(join(dir, 'second.bin'), 'r+');
      writeSync(fd, Buffer.from('changed by the user'), 0, 19, 5 * MiB);
      closeSync(fd);
      const fresh = await second.get(file.url, join(dir, 'after-change.bin'));
      assert.equal(fresh.code, 0, `get after the output was changed: ${describeGet(fresh)}`);
      assert.equal(
        await sha256File(join(dir, 'after-change.bin')),
        file.sha256,
        'changed bytes were handed out',
      );
      assert.ok(origin.bytesServed(file.path) >= servedBefore + file.size, 'the task was not fetched again');

      // The same holds when the content is streamed through the socket instead of linked.
      const served = origin.bytesServed(file.path);
      const fd2 = openSync(join(dir, 'after-change.bin'), 'r+');
      writeSync(fd2, Buffer.from('changed again'), 0, 13, 9 * MiB);
      closeSync(fd2);
      const viaSocket = await second.get(file.url, join(dir, 'via-socket.bin'), ['--transfer-from-daemon']);
      assert.equal(viaSocket.code, 0, `streamed get after a change: ${describeGet(viaSocket)}`);
      assert.equal(await sha256File(join(dir, 'via-socket.bin')), file.sha256, 'changed bytes were streamed');
      assert.ok(origin.bytesServed(file.path) >= served + file.size, 'the task was not fetched again');
    });
  });
});
