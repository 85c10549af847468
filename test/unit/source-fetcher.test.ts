import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Semaphore } from '../../src/async/index.js';
import { SourceFetcher } from '../../src/daemon/download/source-fetcher.js';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import { TokenBucket } from '../../src/daemon/rate-limiter.js';
import type { TaskStorage } from '../../src/daemon/storage/index.js';

const PIECE = 64 * 1024;
const PIECES = 12;
const content = Buffer.alloc(PIECE * PIECES, 7);

describe('SourceFetcher host slots', () => {
  let server: Server;
  let url: string;
  let inFlight = 0;
  let mostInFlight = 0;

  before(async () => {
    // An origin that answers ranges slowly and remembers how many it served at once.
    server = createServer((req, res) => {
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      const [, a, b] = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '') ?? [];
      const [start, end] = [Number(a), Number(b)];
      setTimeout(() => {
        inFlight--;
        res.writeHead(206, {
          'content-range': `bytes ${start}-${end}/${content.length}`,
          'content-length': end - start + 1,
        });
        res.end(content.subarray(start, end + 1));
      }, 30);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`;
  });

  after(() => server.close());

  /** Two tasks' fetchers, four ranges at once each, sharing `slots`; returns pieces stored per task. */
  async function fetchTwoTasks(slots: Semaphore): Promise<number[]> {
    mostInFlight = 0;
    const stored = [0, 0];
    const fetchers = [0, 1].map((i) => {
      const storage = {
        hasPiece: () => false,
        writePiece: async () => undefined,
      } as unknown as TaskStorage;
      const deps = {
        storage,
        downloadLimiter: new TokenBucket(0),
        metrics: new DaemonMetrics(),
        concurrency: 4,
        hostSlots: slots,
        retries: 0,
      };
      return new SourceFetcher(`task${i}`, { url, headers: {} }, deps, () => stored[i]!++);
    });
    const all = Array.from({ length: PIECES }, (_, n) => n);
    await Promise.all(fetchers.map((f) => f.fetchRanges(all, content.length, PIECE)));
    return stored;
  }

  it('keeps the ranges of all tasks within the host limit, and every piece arrives', async () => {
    assert.deepEqual(await fetchTwoTasks(new Semaphore(3)), [PIECES, PIECES]);
    assert.equal(mostInFlight, 3);
    // The same two tasks with room for all their workers: both run theirs at once.
    await fetchTwoTasks(new Semaphore(64));
    assert.ok(mostInFlight > 4, `only ${mostInFlight} ranges at once without a host limit`);
  });
});
