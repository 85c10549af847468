import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { AsyncQueue } from '../../src/async/index.js';
import { schedulerConfigSchema } from '../../src/config/index.js';
import { createLogger } from '../../src/observability/index.js';
import {
  type AnnouncePeerRequest,
  AnnouncePeerRequestSchema,
  type AnnouncePeerResponse,
  createSchedulerClient,
  type DownloadSchema,
  HostType,
  type SchedulerClient,
  type SeedTaskResponse,
} from '../../src/rpc/index.js';
import { type RunningScheduler, startScheduler } from '../../src/scheduler/index.js';

type Response = AnnouncePeerResponse['response'];
type ResponseCase = Exclude<Response['case'], undefined>;
type ResponseValue<C extends ResponseCase> = Extract<Response, { case: C; value: unknown }>['value'];
type RequestInit = MessageInitShape<typeof AnnouncePeerRequestSchema>['request'];

const MiB = 1024 * 1024;
const logger = createLogger('scheduler-test', process.env.DAMSELFLY_LOG_LEVEL ?? 'silent');

/** Buffers a server stream so tests can wait for the next message with a timeout. */
class StreamReader<T> {
  private readonly items: T[] = [];
  private waiters: (() => void)[] = [];
  ended = false;
  error: unknown;

  constructor(source: AsyncIterable<T>) {
    void (async () => {
      try {
        for await (const item of source) {
          this.items.push(item);
          this.wake();
        }
      } catch (err) {
        this.error = err;
      }
      this.ended = true;
      this.wake();
    })();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Next item, or undefined when the stream ended; rejects on stream error or timeout. */
  async next(timeoutMs = 3000): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.items.length > 0) return this.items.shift();
      if (this.ended) {
        if (this.error !== undefined) throw this.error;
        return undefined;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** True when nothing arrives within `ms`. */
  async quiet(ms: number): Promise<boolean> {
    try {
      await this.next(ms).then((item) => {
        if (item !== undefined) this.items.unshift(item);
      });
      return false;
    } catch (err) {
      if ((err as Error).message.startsWith('no message')) return true;
      throw err;
    }
  }
}

const openPeers = new Set<TestPeer>();

/** Ends every request stream still open (so the server's sessions drain at once on close). */
function closeAllPeers(): void {
  for (const p of openPeers) p.close();
}

/** One daemon-side AnnouncePeer stream. */
class TestPeer {
  private readonly requests = new AsyncQueue<AnnouncePeerRequest>();
  readonly responses: StreamReader<AnnouncePeerResponse>;

  constructor(
    client: SchedulerClient,
    readonly hostId: string,
    readonly taskId: string,
    readonly id: string,
  ) {
    this.responses = new StreamReader(client.announcePeer(this.requests));
    openPeers.add(this);
  }

  send(request: RequestInit): void {
    this.requests.push(
      create(AnnouncePeerRequestSchema, {
        hostId: this.hostId,
        taskId: this.taskId,
        peerId: this.id,
        request,
      }),
    );
  }

  register(download: MessageInitShape<typeof DownloadSchema>): void {
    this.send({ case: 'registerPeer', value: { download } });
  }

  /** The next response that is not a piece_digests relay. */
  async decision(timeoutMs = 3000): Promise<Response> {
    for (;;) {
      const r = await this.responses.next(timeoutMs);
      if (!r) throw new Error('stream ended');
      if (r.response.case !== 'pieceDigests') return r.response;
    }
  }

  async expect<C extends ResponseCase>(c: C, timeoutMs = 3000): Promise<ResponseValue<C>> {
    const r = await this.decision(timeoutMs);
    assert.equal(r.case, c, `expected ${c}, got ${r.case} ${JSON.stringify(r.value ?? {})}`);
    return r.value as ResponseValue<C>;
  }

  /** Acts as a back-to-source peer: started, then the given pieces (4 MiB each) with digests. */
  fetchFromSource(contentLength: number, pieces: number[]): void {
    this.send({ case: 'downloadPeerBackToSourceStarted', value: { contentLength, pieceLength: 4 * MiB } });
    for (const n of pieces) this.sourcePiece(n);
  }

  sourcePiece(n: number, digest = `sha256:${String(n).padStart(64, '0')}`): void {
    this.send({
      case: 'downloadPieceBackToSourceFinished',
      value: { piece: { number: n, offset: n * 4 * MiB, length: 4 * MiB, digest } },
    });
  }

  close(): void {
    this.requests.close();
    openPeers.delete(this);
  }
}

function config(over: Record<string, unknown> = {}) {
  return schedulerConfigSchema.parse({
    listen: '127.0.0.1:0',
    metricsListen: '127.0.0.1:0',
    ...over,
    scheduling: {
      retryInterval: 10,
      retryBackToSourceLimit: 3,
      retryLimit: 6,
      candidateParentLimit: 3,
      ...((over.scheduling as object) ?? {}),
    },
  });
}

async function announce(
  client: SchedulerClient,
  id: string,
  opts: { seed?: boolean; intervalMs?: number; uploadPort?: number } = {},
): Promise<void> {
  await client.announceHost({
    host: {
      id,
      type: opts.seed ? HostType.SEED : HostType.NORMAL,
      hostname: id,
      ip: '127.0.0.1',
      uploadPort: opts.uploadPort ?? 4000,
      concurrentUploadLimit: 50,
    },
    intervalMs: opts.intervalMs ?? 60_000,
  });
}

let seq = 0;
const uniq = (prefix: string) => `${prefix}-${++seq}`;

async function expectCode(promise: Promise<unknown>, code: Code): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('scheduler service (no seed peers)', () => {
  let scheduler: RunningScheduler;
  let client: SchedulerClient;

  before(async () => {
    // Any peer may feed any number of children here; the child limits have their own suite below.
    scheduler = await startScheduler(config({ scheduling: { childLimit: 0 } }), logger);
    assert.ok(scheduler.port > 0, 'port 0 resolves to the bound port');
    client = createSchedulerClient(`127.0.0.1:${scheduler.port}`);
    await announce(client, 'host-a', { uploadPort: 4100 });
    await announce(client, 'host-b');
    await announce(client, 'host-c');
  });

  after(async () => {
    closeAllPeers();
    await scheduler.close();
  });

  it('refuses a peer whose host was never announced', async () => {
    const p = new TestPeer(client, 'nobody', uniq('task'), 'peer-x');
    p.register({ url: 'http://origin/x' });
    await expectCode(p.decision(), Code.FailedPrecondition);
  });

  it('refuses a stream whose first message is not register_peer', async () => {
    const p = new TestPeer(client, 'host-a', uniq('task'), 'peer-x');
    p.send({ case: 'downloadPeerStarted', value: {} });
    await expectCode(p.decision(), Code.InvalidArgument);
  });

  it('sends the first peer to the source, relays digests, and gives the next peer the first as parent', async () => {
    const taskId = uniq('task');
    const a = new TestPeer(client, 'host-a', taskId, 'peer-a');
    a.register({ url: 'http://origin/file' });
    await a.expect('needBackToSource', 500);
    a.fetchFromSource(10 * MiB, [0]);
    await waitFor(async () => (await client.statTask({ taskId })).task?.pieces.length === 1);

    const b = new TestPeer(client, 'host-b', taskId, 'peer-b');
    b.register({ url: 'http://origin/file' });
    const normal = await b.expect('normalTask');
    assert.deepEqual(
      normal.candidateParents.map((p) => p.id),
      ['peer-a'],
    );
    const parent = normal.candidateParents[0]!;
    assert.equal(parent.host?.ip, '127.0.0.1');
    assert.equal(parent.host?.uploadPort, 4100);
    assert.equal(parent.backToSource, true);
    assert.equal(parent.state, 'BackToSource');
    assert.equal(normal.task?.contentLength, 10 * MiB);
    assert.equal(normal.task?.pieceLength, 4 * MiB);
    assert.equal(normal.task?.pieceCount, 3);
    assert.deepEqual(
      normal.task?.pieces.map((p) => [p.number, p.digest]),
      [[0, `sha256:${'0'.repeat(64)}`]],
    );

    // New back-to-source pieces reach the waiting child.
    a.sourcePiece(1);
    a.sourcePiece(2);
    const relayed = new Set<number>();
    while (!relayed.has(1) || !relayed.has(2)) {
      const r = await b.responses.next();
      assert.equal(r?.response.case, 'pieceDigests');
      if (r?.response.case !== 'pieceDigests') break;
      assert.equal(r.response.value.contentLength, 10 * MiB);
      assert.equal(r.response.value.pieceLength, 4 * MiB);
      for (const p of r.response.value.pieces) {
        assert.match(p.digest, /^sha256:0+\d$/);
        relayed.add(p.number);
      }
    }
    assert.ok(await a.responses.quiet(30), 'the reporter does not get its own digests back');

    // Only back-to-source reports set digests: a P2P report with another digest changes nothing.
    b.send({ case: 'downloadPeerStarted', value: {} });
    b.send({
      case: 'downloadPieceFinished',
      value: { piece: { number: 0, parentId: 'peer-a', digest: 'sha256:bad', costMs: 5 } },
    });
    await waitFor(
      async () => (await client.statPeer({ taskId, peerId: 'peer-b' })).peer?.finishedPieces === 1,
    );
    const stat = await client.statPeer({ taskId, peerId: 'peer-b' });
    assert.deepEqual(stat.parentIds, ['peer-a']);
    assert.equal(stat.peer?.state, 'Running');
    assert.equal(stat.peer?.finishedPieces, 1);
    const task = await client.statTask({ taskId });
    assert.equal(task.task?.pieces.find((p) => p.number === 0)?.digest, `sha256:${'0'.repeat(64)}`);
    assert.equal(task.state, 'Running');

    a.send({ case: 'downloadPeerBackToSourceFinished', value: { contentLength: 10 * MiB, pieceCount: 3 } });
    b.send({ case: 'downloadPeerFinished', value: { contentLength: 10 * MiB } });
    await waitFor(async () => (await client.statTask({ taskId })).state === 'Succeeded');
    a.close();
    b.close();
    assert.equal(await b.responses.next(), undefined, 'the stream ends when the peer closes it');
    // Finished peers stay as parents after their stream closed.
    assert.equal((await client.statPeer({ taskId, peerId: 'peer-a' })).peer?.state, 'Succeeded');
  });

  it('a child waits for a back-to-source peer that has no piece yet instead of going to the source', async () => {
    const taskId = uniq('task');
    const a = new TestPeer(client, 'host-a', taskId, 'peer-a');
    a.register({ url: 'http://origin/slow' });
    await a.expect('needBackToSource');
    const b = new TestPeer(client, 'host-b', taskId, 'peer-b');
    b.register({ url: 'http://origin/slow' });
    // a was told to go to the source but has not started: b must wait, not count towards back-to-source.
    assert.ok(await b.responses.quiet(150), 'b waits while a is about to fetch');
    a.send({ case: 'downloadPeerBackToSourceStarted', value: { contentLength: -1, pieceLength: 4 * MiB } });
    const normal = await b.expect('normalTask');
    assert.deepEqual(
      normal.candidateParents.map((p) => p.id),
      ['peer-a'],
    );
    assert.equal(normal.task?.contentLength, -1);
    a.close();
    b.close();
  });

  it('offers a peer with too few parents the peers that started next to it (top-up)', async () => {
    const taskId = uniq('task');
    const a = new TestPeer(client, 'host-a', taskId, 'peer-a');
    a.register({ url: 'http://origin/together' });
    await a.expect('needBackToSource');
    a.fetchFromSource(10 * MiB, [0]);
    const b = new TestPeer(client, 'host-b', taskId, 'peer-b');
    b.register({ url: 'http://origin/together' });
    assert.deepEqual(
      (await b.expect('normalTask')).candidateParents.map((p) => p.id),
      ['peer-a'],
    );
    // b has not started yet, so c sees only a.
    const c = new TestPeer(client, 'host-c', taskId, 'peer-c');
    c.register({ url: 'http://origin/together' });
    assert.deepEqual(
      (await c.expect('normalTask')).candidateParents.map((p) => p.id),
      ['peer-a'],
    );
    // Once c downloads from a it is a useful parent: b is offered c, and only c.
    c.send({ case: 'downloadPeerStarted', value: {} });
    b.send({ case: 'downloadPeerStarted', value: {} });
    const topUp = await b.expect('normalTask', 3000);
    assert.deepEqual(
      topUp.candidateParents.map((p) => p.id),
      ['peer-c'],
    );
    a.close();
    b.close();
    c.close();
  });

  it('rescheduling with the only parent blocked ends in need_back_to_source', async () => {
    const taskId = uniq('task');
    const a = new TestPeer(client, 'host-a', taskId, 'peer-a');
    a.register({ url: 'http://origin/r' });
    await a.expect('needBackToSource');
    a.fetchFromSource(8 * MiB, [0]);
    const b = new TestPeer(client, 'host-b', taskId, 'peer-b');
    b.register({ url: 'http://origin/r' });
    await b.expect('normalTask');
    b.send({ case: 'downloadPieceFailed', value: { pieceNumber: 1, parentId: 'peer-a', temporary: true } });
    b.send({
      case: 'reschedulePeer',
      value: { failedParentIds: ['peer-a'], description: 'parent unreachable' },
    });
    await b.expect('needBackToSource');
    a.close();
    b.close();
  });

  it('a parent that served corrupt data is never offered again', async () => {
    const taskId = uniq('task');
    const a = new TestPeer(client, 'host-a', taskId, 'peer-a');
    a.register({ url: 'http://origin/c' });
    await a.expect('needBackToSource');
    a.fetchFromSource(12 * MiB, [0, 1]);
    const c = new TestPeer(client, 'host-c', taskId, 'peer-c');
    c.register({ url: 'http://origin/c' });
    await c.expect('normalTask');
    // c goes to the source too (e.g. it was told to by its daemon's own timeout).
    c.fetchFromSource(12 * MiB, [2]);
    await waitFor(
      async () => (await client.statPeer({ taskId, peerId: 'peer-c' })).peer?.finishedPieces === 1,
    );

    const b = new TestPeer(client, 'host-b', taskId, 'peer-b');
    b.register({ url: 'http://origin/c' });
    const first = await b.expect('normalTask');
    assert.deepEqual(first.candidateParents.map((p) => p.id).sort(), ['peer-a', 'peer-c']);
    b.send({ case: 'downloadPieceFailed', value: { pieceNumber: 0, parentId: 'peer-a', temporary: false } });
    for (let i = 0; i < 3; i++) {
      b.send({ case: 'reschedulePeer', value: { failedParentIds: [] } });
      const again = await b.expect('normalTask');
      assert.deepEqual(
        again.candidateParents.map((p) => p.id),
        ['peer-c'],
      );
    }
    // Without c, the corrupt a is still not an option: b goes to the source.
    b.send({ case: 'reschedulePeer', value: { failedParentIds: ['peer-c'] } });
    await b.expect('needBackToSource');
    a.close();
    b.close();
    c.close();
  });

  it('answers empty_task for a finished empty file', async () => {
    const taskId = uniq('task');
    const a = new TestPeer(client, 'host-a', taskId, 'peer-a');
    a.register({ url: 'http://origin/empty' });
    await a.expect('needBackToSource');
    a.send({ case: 'downloadPeerBackToSourceStarted', value: { contentLength: 0, pieceLength: 4 * MiB } });
    a.send({ case: 'downloadPeerBackToSourceFinished', value: { contentLength: 0, pieceCount: 0 } });
    await waitFor(async () => (await client.statTask({ taskId })).state === 'Succeeded');
    const b = new TestPeer(client, 'host-b', taskId, 'peer-b');
    b.register({ url: 'http://origin/empty' });
    await b.expect('emptyTask');
    a.close();
    b.close();
  });

  it('fails the download when nobody has data and back-to-source is disabled', async () => {
    const taskId = uniq('task');
    const b = new TestPeer(client, 'host-b', taskId, 'peer-b');
    b.register({ url: 'http://origin/nope', disableBackToSource: true });
    const failed = await b.expect('failed');
    assert.match(failed.description, /no parent/);
    assert.equal(await b.responses.next(), undefined, 'the stream ends after failed');
    assert.equal((await client.statPeer({ taskId, peerId: 'peer-b' })).peer?.state, 'Failed');
  });

  it('a LEVEL2 peer whose only parent fails is failed, never sent to the source', async () => {
    const taskId = uniq('task');
    const a = new TestPeer(client, 'host-a', taskId, 'peer-a');
    a.register({ url: 'http://origin/l2' });
    await a.expect('needBackToSource');
    a.fetchFromSource(8 * MiB, [0]);
    const b = new TestPeer(client, 'host-b', taskId, 'peer-b');
    b.register({ url: 'http://origin/l2', priority: 2 });
    await b.expect('normalTask');
    b.send({ case: 'reschedulePeer', value: { failedParentIds: ['peer-a'], description: 'broken' } });
    const failed = await b.expect('failed', 2000);
    assert.match(failed.description, /back-to-source is not allowed/);
    a.close();
    b.close();
  });

  it('a stream closed before finishing makes the peer leave', async () => {
    const taskId = uniq('task');
    const a = new TestPeer(client, 'host-a', taskId, 'peer-a');
    a.register({ url: 'http://origin/l' });
    await a.expect('needBackToSource');
    a.close();
    await waitFor(async () => {
      try {
        await client.statPeer({ taskId, peerId: 'peer-a' });
        return false;
      } catch (err) {
        return err instanceof ConnectError && err.code === Code.NotFound;
      }
    });
    // The next peer finds no source and is sent to the source itself.
    const b = new TestPeer(client, 'host-b', taskId, 'peer-b');
    b.register({ url: 'http://origin/l' });
    await b.expect('needBackToSource', 500);
    await client.leavePeer({ taskId, peerId: 'peer-b' });
    assert.equal(await b.responses.next(), undefined, 'LeavePeer ends the stream');
    await expectCode(client.statPeer({ taskId, peerId: 'peer-b' }), Code.NotFound);
    await expectCode(client.leavePeer({ taskId, peerId: 'peer-b' }), Code.NotFound);
    await expectCode(client.statTask({ taskId: 'no-such-task' }), Code.NotFound);
  });

  it('exports metrics', async () => {
    const res = await fetch(`http://127.0.0.1:${scheduler.metricsPort}/metrics`);
    const text = await res.text();
    assert.match(text, /damselfly_scheduler_announce_host_total \d+/);
    assert.match(text, /damselfly_scheduler_schedule_total\{result="normal"\} [1-9]/);
    assert.match(text, /damselfly_scheduler_schedule_total\{result="back_to_source"\} [1-9]/);
    assert.match(text, /damselfly_scheduler_schedule_total\{result="failed"\} [1-9]/);
    assert.match(text, /damselfly_scheduler_hosts\{type="normal"\} 3/);
    assert.match(text, /damselfly_scheduler_schedule_duration_seconds_count [1-9]/);
    assert.match(text, /damselfly_scheduler_peer_finished_total\{type="back_to_source"\} [1-9]/);
  });
});

describe('scheduler service (seed peers)', () => {
  let env: SeededScheduler;
  let client: SchedulerClient;
  let seedTasks: StreamReader<SeedTaskResponse>;

  before(async () => {
    // Back-to-source only after many empty rounds, so a need_back_to_source here comes from the seed rule.
    // Every child may use the seed here; the seed child limit has its own suite below.
    env = await startWithSeed(
      {
        scheduling: { retryBackToSourceLimit: 1000, retryLimit: 2000, seedChildLimit: 0 },
        gc: { interval: 20 },
      },
      { id: 'seed-1', uploadPort: 4200 },
      ['host-n'],
    );
    ({ client, seedTasks } = env);
  });

  after(() => env.close());

  it('triggers the seed peer and hands it to the waiting peer as parent', async () => {
    const taskId = uniq('task');
    const n = new TestPeer(client, 'host-n', taskId, 'peer-n');
    n.register({ url: 'http://origin/big', requestHeader: { authorization: 'Bearer x' } });
    const trigger = await seedTasks.next();
    assert.equal(trigger?.taskId, taskId);
    assert.equal(trigger?.download?.url, 'http://origin/big');
    assert.equal(trigger?.download?.needBackToSource, true);
    assert.equal(trigger?.download?.requestHeader.authorization, 'Bearer x');

    const s = new TestPeer(client, 'seed-1', taskId, 'peer-seed');
    s.register(trigger!.download!);
    await s.expect('needBackToSource', 500);
    s.send({
      case: 'downloadPeerBackToSourceStarted',
      value: { contentLength: 4 * MiB, pieceLength: 4 * MiB },
    });
    const normal = await n.expect('normalTask');
    assert.deepEqual(
      normal.candidateParents.map((p) => p.id),
      ['peer-seed'],
    );
    assert.equal(normal.candidateParents[0]!.host?.type, HostType.SEED);
    assert.equal(normal.candidateParents[0]!.host?.uploadPort, 4200);

    // A second peer of the same task does not trigger the seed again.
    await announce(client, 'host-m');
    const m = new TestPeer(client, 'host-m', taskId, 'peer-m');
    m.register({ url: 'http://origin/big' });
    await m.expect('normalTask');
    assert.ok(await seedTasks.quiet(50), 'no second trigger');
    for (const p of [n, s, m]) p.close();
  });

  it('priority decides how a task nobody has is first fetched (Dragonfly LEVEL1..6)', async () => {
    const taskId = uniq('task');
    const url = 'http://origin/prio';
    const forbidden = new TestPeer(client, 'host-n', taskId, 'peer-l1');
    forbidden.register({ url, priority: 1 });
    assert.match((await forbidden.expect('failed')).description, /LEVEL1/);
    assert.equal(await forbidden.responses.next(), undefined, 'the stream ends after failed');
    const peersOnly = new TestPeer(client, 'host-n', taskId, 'peer-l2');
    peersOnly.register({ url, priority: 2 });
    assert.match((await peersOnly.expect('failed')).description, /LEVEL2.*source/);
    assert.ok(await seedTasks.quiet(50), 'LEVEL1 and LEVEL2 do not trigger the seed');

    const self = new TestPeer(client, 'host-n', uniq('task'), 'peer-l3');
    self.register({ url, priority: 3 });
    await self.expect('needBackToSource', 500);
    assert.ok(await seedTasks.quiet(50), 'LEVEL3 fetches the source itself, not through the seed');

    const n = new TestPeer(client, 'host-n', taskId, 'peer-l6');
    n.register({ url, priority: 6 });
    const trigger = await seedTasks.next();
    assert.equal(trigger?.taskId, taskId, 'LEVEL6 triggers the seed');
    const s = new TestPeer(client, 'seed-1', taskId, 'peer-seed');
    s.register(trigger!.download!);
    await s.expect('needBackToSource');
    s.fetchFromSource(8 * MiB, [0]);
    await n.expect('normalTask');

    // Once the task is in the network, LEVEL1 and LEVEL2 peers are scheduled like any other.
    await announce(client, 'host-m');
    for (const [id, priority] of [
      ['peer-l1b', 1],
      ['peer-l2b', 2],
    ] as const) {
      const p = new TestPeer(client, 'host-m', taskId, id);
      p.register({ url, priority });
      const normal = await p.expect('normalTask');
      assert.ok(normal.candidateParents.some((c) => c.id === 'peer-seed'));
      p.close();
    }
    for (const p of [forbidden, peersOnly, self, n, s]) p.close();
  });

  it('a failed seed download sends waiting peers to the source at once', async () => {
    const taskId = uniq('task');
    const n = new TestPeer(client, 'host-n', taskId, 'peer-n');
    n.register({ url: 'http://origin/broken' });
    const trigger = await seedTasks.next();
    assert.equal(trigger?.taskId, taskId);
    const s = new TestPeer(client, 'seed-1', taskId, 'peer-seed');
    s.register(trigger!.download!);
    await s.expect('needBackToSource');
    assert.ok(await n.responses.quiet(100), 'n waits while the seed is on it');
    s.send({ case: 'downloadPeerBackToSourceFailed', value: { description: 'origin said 500' } });
    await n.expect('needBackToSource', 1000);
    n.close();
    s.close();
  });

  it('a host that stops announcing is reclaimed with its peers', async () => {
    await announce(client, 'host-short', { intervalMs: 30 });
    const taskId = uniq('task');
    const p = new TestPeer(client, 'host-short', taskId, 'peer-short');
    p.register({ url: 'http://origin/gc' });
    await seedTasks.next();
    await waitFor(async () => {
      try {
        await client.statPeer({ taskId, peerId: 'peer-short' });
        return false;
      } catch (err) {
        return err instanceof ConnectError && err.code === Code.NotFound;
      }
    });
    assert.equal(await p.responses.next(), undefined, 'its stream is ended');
    await expectCode(
      (async () => {
        const q = new TestPeer(client, 'host-short', taskId, 'peer-again');
        q.register({ url: 'http://origin/gc' });
        await q.decision();
      })(),
      Code.FailedPrecondition,
    );
  });

  it('without the SeedTasks stream the seed is no longer used', async () => {
    env.endSeedTasks();
    await waitFor(() => seedTasks.ended);
    const taskId = uniq('task');
    const n = new TestPeer(client, 'host-n', taskId, 'peer-n');
    n.register({ url: 'http://origin/after' });
    // Either the server already saw the cancel (no seed: straight to the source) or it triggered the
    // seed just before and the closed stream fails that trigger: both end in need_back_to_source.
    await n.expect('needBackToSource', 1000);
    n.close();
  });
});

describe('scheduler service (seed child limit)', () => {
  let env: SeededScheduler;
  let client: SchedulerClient;
  let seedTasks: StreamReader<SeedTaskResponse>;

  before(async () => {
    const scheduling = {
      seedChildLimit: 1,
      childLimit: 1,
      childLimitDepth: 2,
      retryBackToSourceLimit: 1000,
      retryLimit: 2000,
    };
    env = await startWithSeed({ scheduling }, { id: 'seed-l' }, [
      'host-a',
      'host-b',
      'host-c',
      'host-d',
      'host-e',
    ]);
    ({ client, seedTasks } = env);
  });

  after(() => env.close());

  it('gives the seed and each peer above childLimitDepth one downloading child (a chain); the seed is free again once its child is done', async () => {
    const taskId = uniq('task');
    const url = 'http://origin/limited';
    const peers: TestPeer[] = [];
    /** Registers a peer on `host` and returns the ids of the parents it is first given. */
    const join = async (host: string, id: string): Promise<string[]> => {
      const p = new TestPeer(client, host, taskId, id);
      peers.push(p);
      p.register({ url });
      return (await p.expect('normalTask')).candidateParents.map((c) => c.id);
    };
    const reach = async (i: number, state: string, report: RequestInit): Promise<void> => {
      const p = peers[i]!;
      p.send(report);
      await waitFor(async () => (await client.statPeer({ taskId, peerId: p.id })).peer?.state === state);
    };
    const started: RequestInit = { case: 'downloadPeerStarted', value: {} };

    const a = join('host-a', 'peer-a');
    const trigger = await seedTasks.next();
    const s = new TestPeer(client, 'seed-l', taskId, 'peer-s');
    s.register(trigger!.download!);
    await s.expect('needBackToSource', 500);
    s.send({
      case: 'downloadPeerBackToSourceStarted',
      value: { contentLength: 8 * MiB, pieceLength: 4 * MiB },
    });
    assert.deepEqual(await a, ['peer-s']);
    await reach(0, 'Running', started);
    // The seed already feeds a downloading child: b is given a (which has the seed as parent) instead.
    assert.deepEqual(await join('host-b', 'peer-b'), ['peer-a']);
    await reach(1, 'Running', started);
    // childLimit 1: a feeds b, so c is given b: the peers form a chain below the seed.
    assert.deepEqual(await join('host-c', 'peer-c'), ['peer-b']);
    // b is childLimitDepth (2) hops from the source: it is not limited, d gets it too (c has not started).
    assert.deepEqual(await join('host-d', 'peer-d'), ['peer-b']);
    // Once a has finished the seed is free for the next child again.
    await reach(0, 'Succeeded', { case: 'downloadPeerFinished', value: { contentLength: 8 * MiB } });
    const offered = await join('host-e', 'peer-e');
    assert.ok(offered.includes('peer-s'), `the seed is offered again: ${offered.join(', ')}`);
    for (const p of [...peers, s]) p.close();
  });
});

describe('scheduler service (waiting for a busy seed)', () => {
  it('a child whose only parent would be the busy seed waits, not counting towards back-to-source', async () => {
    // One empty schedule would send a peer to the source: waiting must not count as one.
    const env = await startWithSeed(
      { scheduling: { retryBackToSourceLimit: 1, retryLimit: 50 } },
      { id: 'seed-w' },
      ['host-a', 'host-b'],
    );
    try {
      const taskId = uniq('task');
      const url = 'http://origin/busy';
      // The seed fetches the task first (as a triggered seed does), so nobody waits for a trigger.
      const s = new TestPeer(env.client, 'seed-w', taskId, 'peer-s');
      s.register({ url, needBackToSource: true });
      await s.expect('needBackToSource', 500);
      s.send({
        case: 'downloadPeerBackToSourceStarted',
        value: { contentLength: 8 * MiB, pieceLength: 4 * MiB },
      });
      await waitFor(
        async () => (await env.client.statPeer({ taskId, peerId: 'peer-s' })).peer?.state === 'BackToSource',
      );
      const a = new TestPeer(env.client, 'host-a', taskId, 'peer-a');
      a.register({ url });
      assert.deepEqual(
        (await a.expect('normalTask')).candidateParents.map((p) => p.id),
        ['peer-s'],
      );
      // a has not started (no data yet) and the seed feeds a: b has no parent for now, and waits.
      const b = new TestPeer(env.client, 'host-b', taskId, 'peer-b');
      b.register({ url });
      assert.ok(await b.responses.quiet(300), 'b waits (dozens of 10 ms attempts)');
      a.send({ case: 'downloadPeerStarted', value: {} });
      assert.deepEqual(
        (await b.expect('normalTask')).candidateParents.map((p) => p.id),
        ['peer-a'],
      );
    } finally {
      await env.close();
    }
  });
});

interface SeededScheduler {
  scheduler: RunningScheduler;
  client: SchedulerClient;
  /** The seed host's SeedTasks stream: the triggers it gets. */
  seedTasks: StreamReader<SeedTaskResponse>;
  /** Cancels the SeedTasks stream: the seed is no longer available. */
  endSeedTasks(): void;
  close(): Promise<void>;
}

/** A scheduler with `over` config, one announced seed host with its SeedTasks stream open, and `hosts`. */
async function startWithSeed(
  over: Record<string, unknown>,
  seed: { id: string; uploadPort?: number },
  hosts: string[],
): Promise<SeededScheduler> {
  const scheduler = await startScheduler(config(over), logger);
  const client = createSchedulerClient(`127.0.0.1:${scheduler.port}`);
  await announce(client, seed.id, { seed: true, uploadPort: seed.uploadPort });
  for (const h of hosts) await announce(client, h);
  const abort = new AbortController();
  const seedTasks = new StreamReader(client.seedTasks({ hostId: seed.id }, { signal: abort.signal }));
  await waitFor(() => scheduler.core.connectedSeeds().includes(seed.id));
  return {
    scheduler,
    client,
    seedTasks,
    endSeedTasks: () => abort.abort(),
    async close() {
      abort.abort();
      closeAllPeers();
      await scheduler.close();
    },
  };
}

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
