/**
 * The pure parts of prefetch and tracing: which chunks a prefetch fetches and in what order, the
 * prefetch list format (`--prefetch-files`), the first-access trace, its file writer, the byte
 * rate limit, and FetchSlots (reads first, reserved slots, promotion).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import {
  checkPrefetchPaths,
  PrefetchListError,
  parsePrefetchList,
  readPrefetchList,
} from '../../src/image/convert/index.js';
import type { FileNode } from '../../src/image/format/index.js';
import { AccessTrace } from '../../src/mount/access-trace.js';
import { FetchSlots, FetchTicket } from '../../src/mount/fetch-slots.js';
import { NodePaths } from '../../src/mount/node-paths.js';
import { chunksInStoredOrder, planPrefetch } from '../../src/mount/prefetch-plan.js';
import { ByteRateLimit } from '../../src/mount/rate-limit.js';
import { TraceFileWriter } from '../../src/mount/trace-file.js';
import { SyntheticImage } from '../helpers/erofs.js';

const CHUNK = 4096;
const silent = pino({ level: 'silent' });

function distinct(seed: number, chunks: number): Buffer {
  return Buffer.concat(
    Array.from({ length: chunks }, (_, i) => Buffer.alloc(CHUNK, 1 + ((seed * 7 + i) % 250))),
  );
}

function sampleImage() {
  const s = new SyntheticImage(CHUNK, 2);
  const a = s.file('/etc/a', distinct(1, 2));
  const b = s.file('/usr/lib/b', distinct(2, 3), {}, 1);
  const c = s.file('/usr/lib/c', Buffer.concat([distinct(3, 1), Buffer.alloc(CHUNK), distinct(4, 1)]));
  s.add('/usr/bin/b-link', b);
  s.file('/var/d', distinct(2, 3)); // same content as b: deduplicated chunks
  const { image } = s.build();
  return { image, a, b, c };
}

const real = (file: FileNode) => file.chunks.filter((index): index is number => index !== null);

describe('planPrefetch', () => {
  it('fetches the named files in order, directories depth first, each chunk once, no holes', () => {
    const { image, a, b, c } = sampleImage();
    const plan = planPrefetch(image, ['/usr/lib/c', '/etc', '/usr', '/usr/bin/b-link', '/var/d']);
    assert.deepEqual(plan.chunks, [...real(c), ...real(a), ...real(b)]);
    assert.equal(plan.totalBytes, plan.chunks.length * CHUNK);
    assert.deepEqual(plan.missingPaths, []);
  });

  it('names paths that are not in the tree and skips them', () => {
    const { image, a } = sampleImage();
    const plan = planPrefetch(image, ['/gone', '/etc/a']);
    assert.deepEqual(plan.missingPaths, ['/gone']);
    assert.deepEqual(plan.chunks, real(a));
  });

  it('with all, adds every other chunk in blob stored order after the named ones', () => {
    const { image, b } = sampleImage();
    const plan = planPrefetch(image, ['/usr/lib/b'], { all: true });
    assert.equal(plan.chunks.length, image.chunks.length);
    assert.deepEqual(plan.chunks.slice(0, 3), real(b));
    const rest = chunksInStoredOrder(image).filter((index) => !real(b).includes(index));
    assert.deepEqual(plan.chunks.slice(3), rest);
    for (let i = 1; i < rest.length; i++) {
      const [x, y] = [image.chunks[rest[i - 1]!]!, image.chunks[rest[i]!]!];
      assert.ok(
        x.blobIndex < y.blobIndex || (x.blobIndex === y.blobIndex && x.compressedOffset < y.compressedOffset),
      );
    }
  });
});

describe('prefetch list', () => {
  it('parses one absolute path per line; blank lines, comments and repeats are skipped', () => {
    assert.deepEqual(parsePrefetchList('/a\r\n\n# note\n/b c\n/a\n'), ['/a', '/b c']);
  });

  it('refuses a relative path with its line number', () => {
    assert.throws(
      () => parsePrefetchList('/a\nrelative\n', 'LIST'),
      /LIST line 2: "relative" is not an absolute path/,
    );
  });

  it('reads standard input for "-"', async () => {
    assert.deepEqual(await readPrefetchList('-', Readable.from([Buffer.from('/x\n/y\n')])), ['/x', '/y']);
  });

  it('names the first missing paths and counts the rest', () => {
    const { image } = sampleImage();
    const paths = ['/etc/a', ...Array.from({ length: 7 }, (_, i) => `/missing/${i}`)];
    assert.throws(
      () => checkPrefetchPaths(image.root, paths),
      (err: Error) =>
        err instanceof PrefetchListError &&
        err.message ===
          '7 of 8 prefetch paths are not in the image: /missing/0, /missing/1, /missing/2, /missing/3, /missing/4 (and 2 more)',
    );
    checkPrefetchPaths(image.root, ['/etc/a', '/usr/lib', '/']);
  });
});

describe('access trace', () => {
  it('records each file once, in first-access order, by any of its names', () => {
    const { image, a, b, c } = sampleImage();
    const paths = new NodePaths(image.root);
    const seen: string[] = [];
    let clock = 100;
    const trace = new AccessTrace(
      (record) => seen.push(record.path),
      () => clock,
    );
    for (const node of [c, a, c, b, a, b]) {
      clock += 5;
      trace.record(node, (n) => paths.pathOf(n));
    }
    assert.deepEqual(seen, ['/usr/lib/c', '/etc/a', '/usr/lib/b']);
    assert.deepEqual(
      trace.entries.map((r) => r.afterMs),
      [5, 10, 20],
    );
  });

  it('the trace file is the --prefetch-files format, complete after close', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'trace-'));
    try {
      const writer = await TraceFileWriter.create(join(dir, 'trace'), silent);
      for (const path of ['/etc/a', '/bad\nname', '/usr/lib/b']) writer.append(path);
      await writer.close();
      const text = await readFile(join(dir, 'trace'), 'utf8');
      assert.equal(text, '/etc/a\n/usr/lib/b\n');
      assert.deepEqual(parsePrefetchList(text), ['/etc/a', '/usr/lib/b']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('ByteRateLimit', () => {
  it('lets a second of bytes through, then makes requests wait for their debt', async () => {
    let now = 0;
    const waits: number[] = [];
    const limit = new ByteRateLimit(
      1000,
      () => now,
      async (ms) => {
        waits.push(ms);
        now += ms;
      },
    );
    await limit.take(1000);
    assert.deepEqual(waits, []);
    await limit.take(500);
    await limit.take(2000);
    assert.deepEqual(waits, [500, 2000]);
    now += 10_000; // idle time refills at most one second's worth
    await limit.take(1500);
    assert.deepEqual(waits, [500, 2000, 500]);
  });

  it('is unlimited at 0', async () => {
    const limit = new ByteRateLimit(0);
    assert.ok(limit.unlimited);
    await limit.take(1e12);
  });
});

describe('FetchSlots', () => {
  function gate() {
    let open!: () => void;
    const opened = new Promise<void>((resolve) => {
      open = resolve;
    });
    return { open, opened };
  }

  it('background requests leave reserved slots free; reads queue ahead of them; promotion moves one up', async () => {
    const slots = new FetchSlots({ limit: 4, reserved: 1, backgroundLimit: 2 });
    const started: string[] = [];
    const gates = new Map<string, ReturnType<typeof gate>>();
    const job = (name: string, ticket: FetchTicket) => {
      const g = gate();
      gates.set(name, g);
      return slots.run(ticket, async () => {
        started.push(name);
        await g.opened;
      });
    };
    const tickets = [1, 2, 3, 4].map(() => new FetchTicket(true));
    const jobs = tickets.map((ticket, i) => job(`bg${i + 1}`, ticket));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, ['bg1', 'bg2'], 'background capped at 2');
    jobs.push(job('read1', new FetchTicket(false)), job('read2', new FetchTicket(false)));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, ['bg1', 'bg2', 'read1', 'read2'], 'reads take the free and reserved slots');
    jobs.push(job('read3', new FetchTicket(false)));
    slots.promote(tickets[3]!);
    assert.ok(tickets[3]!.promoted.aborted);
    gates.get('bg1')!.open();
    await new Promise((r) => setImmediate(r));
    gates.get('read1')!.open();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started.slice(4), ['read3', 'bg4'], 'reads, then the promoted request, before bg3');
    for (const g of gates.values()) g.open();
    await new Promise((r) => setImmediate(r));
    for (const g of gates.values()) g.open();
    await Promise.all(jobs);
    assert.deepEqual(started.at(-1), 'bg3');
    assert.equal(slots.running, 0);
  });
});
