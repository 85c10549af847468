/**
 * The chunk layer over an in-memory backend: duplicate concurrent requests coalesce into one fetch,
 * the chunks of one read share a range request, small reads are amplified, the cache serves what was
 * fetched, a chunk failing its digest is an error (never bytes, never cached) and is refetched next
 * time, and backend requests stay within the concurrency bound.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import type { BlobInfo, FileNode, ImageBootstrap } from '../../src/image/format/index.js';
import { BlobCache } from '../../src/mount/blob-cache.js';
import type { ChunkBackend } from '../../src/mount/chunk-backend.js';
import { ChunkFetcher, type ChunkFetcherOptions } from '../../src/mount/chunk-fetcher.js';
import { ChunkReader } from '../../src/mount/chunk-reader.js';
import { ChunkVerificationError } from '../../src/mount/errors.js';
import { planFileRead } from '../../src/mount/read-plan.js';
import { SyntheticImage } from '../helpers/erofs.js';

const KiB = 1024;
const CHUNK = 16 * KiB;
const silent = pino({ level: 'silent' });

function pattern(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = (x >>> 16) | 1;
  }
  return out;
}

/** Serves blob bytes from memory, counting requests; can delay, corrupt, and record concurrency. */
class MemoryBackend implements ChunkBackend {
  readonly name = 'memory';
  requests: Array<{ offset: number; length: number }> = [];
  delayMs = 0;
  corruptAt: number | undefined;
  inFlight = 0;
  maxInFlight = 0;

  constructor(private readonly blobs: Map<string, Buffer>) {}

  async readRange(blob: BlobInfo, offset: number, length: number): Promise<Buffer> {
    this.requests.push({ offset, length });
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      const bytes = Buffer.from(this.blobs.get(blob.digest)!.subarray(offset, offset + length));
      const at = this.corruptAt;
      if (at !== undefined && at >= offset && at < offset + length) bytes[at - offset]! ^= 0xff;
      return bytes;
    } finally {
      this.inFlight--;
    }
  }

  get bytes(): number {
    return this.requests.reduce((sum, r) => sum + r.length, 0);
  }
}

interface Fixture {
  image: ImageBootstrap;
  files: Map<string, { node: FileNode; data: Buffer }>;
  backend: MemoryBackend;
  caches: BlobCache[];
  fetcher: ChunkFetcher;
  reader: ChunkReader;
}

let dir: string;
let fixture: Fixture;

async function setUp(options: Partial<ChunkFetcherOptions> = {}): Promise<Fixture> {
  const s = new SyntheticImage(CHUNK, 1);
  const files = new Map<string, { node: FileNode; data: Buffer }>();
  // 40 small files (one chunk each, < 16 KiB), then a 1 MiB file: 64 chunks.
  for (let i = 0; i < 40; i++) {
    const data = pattern(1000 + i * 100, i + 1);
    files.set(`small${i}`, { node: s.file(`/small${i}`, data), data });
  }
  const big = pattern(64 * CHUNK, 999);
  files.set('big', { node: s.file('/big', big), data: big });
  const { image, blobs } = s.build();
  const backend = new MemoryBackend(new Map([[image.blobs[0]!.digest, blobs[0]!]]));
  const caches = [await BlobCache.open(dir, image.blobs[0]!)];
  const fetcher = new ChunkFetcher({ image, backend, caches, logger: silent, minFetchSize: 0, ...options });
  return { image, files, backend, caches, fetcher, reader: new ChunkReader(image, caches, fetcher) };
}

function readFile(name: string, offset: number, size: number, signal = new AbortController().signal) {
  const { node } = fixture.files.get(name)!;
  return fixture.reader.read(planFileRead(node, CHUNK, offset, size), signal);
}

function expected(name: string, offset: number, size: number): Buffer {
  return fixture.files.get(name)!.data.subarray(offset, offset + size);
}

describe('chunk fetcher and reader', () => {
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-mount-fetch-'));
  });
  afterEach(async () => {
    await fixture?.fetcher.close();
    for (const cache of fixture?.caches ?? []) await cache.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('coalesces concurrent reads of one chunk into one fetch', async () => {
    fixture = await setUp();
    fixture.backend.delayMs = 20;
    const reads = Array.from({ length: 20 }, () => readFile('big', 100, 4000));
    for (const got of await Promise.all(reads)) assert.deepEqual(got, expected('big', 100, 4000));
    assert.equal(fixture.backend.requests.length, 1);
    assert.equal(fixture.fetcher.stats.chunks, 1);
  });

  it('fetches the chunks of one read with one range request, then serves them from the cache', async () => {
    fixture = await setUp();
    const got = await readFile('big', CHUNK - 10, 5 * CHUNK);
    assert.deepEqual(got, expected('big', CHUNK - 10, 5 * CHUNK));
    assert.deepEqual(fixture.backend.requests.length, 1);
    assert.equal(fixture.backend.bytes, 6 * CHUNK);
    await fixture.fetcher.settled();
    await fixture.caches[0]!.close();
    // Commits done: a reopened cache has all six chunks.
    const reopened = await BlobCache.open(dir, fixture.image.blobs[0]!);
    const bigChunks = fixture.files.get('big')!.node.chunks.slice(0, 6);
    for (const index of bigChunks) assert.ok(reopened.has(fixture.image.chunks[index!]!), `chunk ${index}`);
    fixture.caches[0] = reopened;
    const reader = new ChunkReader(fixture.image, [reopened], fixture.fetcher);
    const again = await reader.read(
      planFileRead(fixture.files.get('big')!.node, CHUNK, CHUNK, 2 * CHUNK),
      new AbortController().signal,
    );
    assert.deepEqual(again, expected('big', CHUNK, 2 * CHUNK));
    assert.equal(fixture.backend.requests.length, 1, 'no new request');
    assert.equal(reader.stats.cacheHits, 2);
  });

  it('amplifies a small read to the minimum fetch size with the neighbouring files', async () => {
    fixture = await setUp({ minFetchSize: 256 * KiB });
    assert.deepEqual(await readFile('small3', 0, 100), expected('small3', 0, 100));
    assert.equal(fixture.backend.requests.length, 1);
    assert.ok(fixture.backend.bytes >= 256 * KiB, `${fixture.backend.bytes} bytes fetched`);
    // The neighbours came along: reading them sends nothing.
    for (const name of ['small4', 'small10', 'small20']) {
      const size = fixture.files.get(name)!.data.length;
      assert.deepEqual(await readFile(name, 0, size), expected(name, 0, size));
    }
    assert.equal(fixture.backend.requests.length, 1);
  });

  it('never serves a chunk that fails verification, caches nothing of it, and refetches next time', async () => {
    fixture = await setUp();
    const node = fixture.files.get('big')!.node;
    const chunk = fixture.image.chunks[node.chunks[2]!]!;
    fixture.backend.corruptAt = chunk.compressedOffset + 77;
    await assert.rejects(readFile('big', 2 * CHUNK, 100), ChunkVerificationError);
    await assert.rejects(readFile('big', 2 * CHUNK + 500, 100), ChunkVerificationError);
    assert.equal(fixture.backend.requests.length, 2, 'each read tried again');
    assert.equal(fixture.caches[0]!.has(chunk), false);
    assert.equal(fixture.fetcher.stats.verifyFailures, 2);
    fixture.backend.corruptAt = undefined;
    assert.deepEqual(await readFile('big', 2 * CHUNK, 100), expected('big', 2 * CHUNK, 100));
  });

  it('fails only the corrupt chunk of a range; its neighbours are served', async () => {
    fixture = await setUp();
    const node = fixture.files.get('big')!.node;
    fixture.backend.corruptAt = fixture.image.chunks[node.chunks[3]!]!.compressedOffset;
    await assert.rejects(readFile('big', 0, 8 * CHUNK), ChunkVerificationError);
    assert.equal(fixture.backend.requests.length, 1);
    fixture.backend.corruptAt = undefined;
    assert.deepEqual(await readFile('big', 0, 8 * CHUNK), expected('big', 0, 8 * CHUNK));
    assert.deepEqual(fixture.backend.requests.at(-1), {
      offset: fixture.image.chunks[node.chunks[3]!]!.compressedOffset,
      length: CHUNK,
    });
  });

  it('a reader that gives up stops waiting; the fetch still fills the cache', async () => {
    fixture = await setUp();
    fixture.backend.delayMs = 30;
    const controller = new AbortController();
    const read = readFile('big', 0, 100, controller.signal);
    controller.abort(new Error('interrupted'));
    await assert.rejects(read, /interrupted/);
    assert.deepEqual(await readFile('big', 0, 100), expected('big', 0, 100));
    assert.equal(fixture.backend.requests.length, 1);
  });

  it('keeps backend requests within the concurrency bound', async () => {
    fixture = await setUp({ concurrency: 3 });
    fixture.backend.delayMs = 10;
    const reads = Array.from({ length: 30 }, (_, i) => readFile('big', i * 2 * CHUNK, 10));
    await Promise.all(reads.slice(0, 30).map((r) => r.catch(() => undefined)));
    assert.ok(fixture.backend.requests.length >= 10);
    assert.equal(fixture.backend.maxInFlight, 3);
  });

  it('reads holes as zeros without asking the backend', async () => {
    fixture = await setUp();
    const s = new SyntheticImage(CHUNK, 1);
    const data = Buffer.concat([Buffer.alloc(3 * CHUNK), pattern(100, 5)]);
    const node = s.file('/sparse', data);
    assert.deepEqual(node.chunks.slice(0, 3), [null, null, null]);
    const got = await fixture.reader.read(
      planFileRead({ size: 3 * CHUNK, chunks: [null, null, null] }, CHUNK, 10, 2 * CHUNK),
      new AbortController().signal,
    );
    assert.deepEqual(got, Buffer.alloc(2 * CHUNK));
    assert.equal(fixture.backend.requests.length, 0);
  });
});
