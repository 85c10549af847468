/**
 * The per-blob cache: chunks written at their uncompressed offsets, the persisted chunk bitmap
 * (reopened, replaced when unusable or when its data file is gone), group commit batching the
 * fdatasyncs of concurrent stores, and — with a writer killed by SIGKILL mid-stream — every bit that
 * reached the disk naming the right bytes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BlobInfo, ChunkInfo } from '../../src/image/format/index.js';
import { BlobCache, blobCachePaths } from '../../src/mount/blob-cache.js';
import {
  BITMAP_HEADER_SIZE,
  bitmapBytes,
  ChunkBitmap,
  encodeBitmapHeader,
  isBitmapFor,
} from '../../src/mount/chunk-bitmap.js';
import { GroupCommit } from '../../src/mount/group-commit.js';

const KiB = 1024;
const CHUNK = 16 * KiB;
const CHUNKS = 256;

function blobInfo(seed: number): BlobInfo {
  return {
    digest: `sha256:${seed.toString(16).padStart(64, '0')}`,
    compressor: 'none',
    compressedSize: CHUNKS * CHUNK,
    uncompressedSize: CHUNKS * CHUNK,
    chunkCount: CHUNKS,
  };
}

/** Chunk i: at i·16 KiB, 16 KiB long except the last (5000 bytes: a partial block). */
function chunkAt(i: number): ChunkInfo {
  const size = i === CHUNKS - 1 ? 5000 : CHUNK;
  return {
    blobIndex: 0,
    digest: Buffer.alloc(32),
    compressedOffset: i * CHUNK,
    compressedSize: size,
    uncompressedOffset: i * CHUNK,
    uncompressedSize: size,
    compressed: false,
  };
}

function bytesOf(i: number): Buffer {
  return Buffer.alloc(chunkAt(i).uncompressedSize, `chunk ${i};`);
}

let dir: string;

async function readBack(cache: BlobCache, i: number): Promise<Buffer> {
  const chunk = chunkAt(i);
  const out = Buffer.alloc(chunk.uncompressedSize);
  await cache.read(out, 0, chunk.uncompressedOffset, chunk.uncompressedSize);
  return out;
}

describe('blob cache', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-mount-cache-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps stored chunks across a reopen: sparse data file in the uncompressed layout + bitmap', async () => {
    const blob = blobInfo(1);
    const cache = await BlobCache.open(dir, blob);
    const stored = [0, 5, 6, 100, CHUNKS - 1];
    await Promise.all(stored.map((i) => cache.store(chunkAt(i), bytesOf(i))));
    assert.equal(cache.presentChunks(), stored.length);
    await cache.close();

    const paths = blobCachePaths(dir, blob);
    assert.equal(paths.data, join(dir, `${'1'.padStart(64, '0')}.blob.data`));
    const data = await readFile(paths.data);
    assert.equal(data.length, blob.uncompressedSize, 'sized to the whole layout');
    for (const i of stored)
      assert.deepEqual(data.subarray(i * CHUNK, i * CHUNK + bytesOf(i).length), bytesOf(i));
    assert.ok((await stat(paths.data)).blocks * 512 < blob.uncompressedSize / 2, 'sparse');
    assert.ok(isBitmapFor(await readFile(paths.bitmap), blob.uncompressedSize));

    const again = await BlobCache.open(dir, blob);
    for (let i = 0; i < CHUNKS; i++) assert.equal(again.has(chunkAt(i)), stored.includes(i), `chunk ${i}`);
    for (const i of stored) assert.deepEqual(await readBack(again, i), bytesOf(i));
    await again.close();
  });

  it('batches the commits of concurrent stores', async () => {
    const cache = await BlobCache.open(dir, blobInfo(2));
    await Promise.all(Array.from({ length: 64 }, (_, i) => cache.store(chunkAt(i), bytesOf(i))));
    assert.ok(cache.commitCount <= 4, `${cache.commitCount} commits for 64 concurrent stores`);
    await cache.close();
  });

  it('replaces an unusable bitmap by an empty one', async () => {
    const blob = blobInfo(3);
    const cache = await BlobCache.open(dir, blob);
    await cache.store(chunkAt(1), bytesOf(1));
    await cache.close();
    const { bitmap } = blobCachePaths(dir, blob);
    const good = await readFile(bitmap);

    const variants: Array<[string, Buffer]> = [
      ['truncated', good.subarray(0, good.length - 1)],
      [
        'another layout size',
        Buffer.concat([encodeBitmapHeader(blob.uncompressedSize + 4096), good.subarray(32)]),
      ],
      ['bad magic', Buffer.concat([Buffer.from('XXXXXXXX'), good.subarray(8)])],
    ];
    for (const [what, bytes] of variants) {
      await writeFile(bitmap, bytes);
      const reopened = await BlobCache.open(dir, blob);
      assert.equal(reopened.presentChunks(), 0, what);
      await reopened.close();
      assert.ok(isBitmapFor(await readFile(bitmap), blob.uncompressedSize), `${what}: rewritten`);
    }
  });

  it('forgets every chunk when the data file is gone', async () => {
    const blob = blobInfo(4);
    const cache = await BlobCache.open(dir, blob);
    await cache.store(chunkAt(3), bytesOf(3));
    await cache.close();
    await rm(blobCachePaths(dir, blob).data);
    const reopened = await BlobCache.open(dir, blob);
    assert.equal(reopened.has(chunkAt(3)), false, 'a bit must never name zeros');
    await reopened.close();
  });

  it('bitmap bits survive open/close and are set per first block of a chunk', async () => {
    const path = join(dir, 'plain.chunks');
    const size = 10 * 4096 + 100;
    const bitmap = await ChunkBitmap.open(path, size);
    assert.equal(bitmap.reused, false);
    bitmap.set(0);
    bitmap.set(9);
    bitmap.set(10);
    await bitmap.persist();
    await bitmap.close();
    const file = await readFile(path);
    assert.equal(file.length, BITMAP_HEADER_SIZE + bitmapBytes(size));
    assert.deepEqual([...file.subarray(BITMAP_HEADER_SIZE)], [0b0000_0001, 0b0000_0110]);
    const reopened = await ChunkBitmap.open(path, size);
    assert.equal(reopened.reused, true);
    assert.deepEqual(
      [0, 1, 9, 10].map((b) => reopened.has(b)),
      [true, false, true, true],
    );
    assert.throws(() => reopened.set(16), RangeError);
    await reopened.close();
  });

  it('group commit: one flush at a time, later items wait for the next, errors reach their batch', async () => {
    const batches: number[][] = [];
    let fail = false;
    const commits = new GroupCommit<number>(async (items) => {
      batches.push(items);
      await new Promise((r) => setTimeout(r, 20));
      if (fail) throw new Error('disk on fire');
    });
    const first = [1, 2, 3].map((n) => commits.commit(n));
    await new Promise((r) => setTimeout(r, 5));
    const second = [4, 5].map((n) => commits.commit(n));
    await Promise.all([...first, ...second]);
    assert.deepEqual(batches, [
      [1, 2, 3],
      [4, 5],
    ]);
    fail = true;
    await assert.rejects(commits.commit(6), /disk on fire/);
    await commits.idle();
  });

  it('after SIGKILL of a writer, every chunk marked present holds its bytes', async () => {
    const blob = blobInfo(5);
    const blobCacheModule = new URL('../../src/mount/blob-cache.ts', import.meta.url).href;
    const script = join(dir, 'writer.mts');
    await writeFile(
      script,
      `import { BlobCache } from ${JSON.stringify(blobCacheModule)};
const [dir, size, chunk, chunks] = process.argv.slice(2).map((v, i) => (i === 0 ? v : Number(v)));
const blob = { digest: 'sha256:${'5'.padStart(64, '0')}', compressor: 'none', compressedSize: size, uncompressedSize: size, chunkCount: chunks };
const cache = await BlobCache.open(dir, blob);
for (let wave = 0; ; wave++) {
  const batch = [];
  for (let k = 0; k < 8; k++) {
    const i = (wave * 8 + k) % chunks;
    const length = i === chunks - 1 ? 5000 : chunk;
    const info = { blobIndex: 0, digest: Buffer.alloc(32), compressedOffset: i * chunk, compressedSize: length, uncompressedOffset: i * chunk, uncompressedSize: length, compressed: false };
    batch.push(cache.store(info, Buffer.alloc(length, \`chunk \${i};\`)));
  }
  await Promise.all(batch);
  process.stdout.write(\`\${wave}\\n\`);
}
`,
    );
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', script, dir, String(CHUNKS * CHUNK), String(CHUNK), String(CHUNKS)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let waves = 0;
    let stopping = false;
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.stdout!.on('data', (text: Buffer) => {
        waves += text.toString().split('\n').filter(Boolean).length;
        if (waves >= 5 && !stopping) {
          stopping = true;
          // Somewhere in the middle of later writes and commits.
          setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, 3);
        }
      });
    });
    await new Promise((r) => child.once('exit', r));
    const cache = await BlobCache.open(dir, blob);
    assert.ok(cache.presentChunks() >= Math.min(5 * 8, CHUNKS), `${cache.presentChunks()} chunks survived`);
    for (let i = 0; i < CHUNKS; i++) {
      if (cache.has(chunkAt(i))) assert.deepEqual(await readBack(cache, i), bytesOf(i), `chunk ${i}`);
    }
    await cache.close();
  });
});
