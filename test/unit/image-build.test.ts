import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { BlobBuilder } from '../../src/image/build/blob-builder.js';
import { buildImage } from '../../src/image/build/build.js';
import { ChunkDictionary } from '../../src/image/build/chunk-dictionary.js';
import {
  CompressionError,
  compressChunk,
  decompressChunk,
  prepareCompressor,
  zstdFrameContentSize,
} from '../../src/image/build/compression.js';
import { walkDirectory } from '../../src/image/build/directory-walker.js';
import { ImageBuildError } from '../../src/image/build/errors.js';
import { knownDigest, rememberDigests } from '../../src/image/build/piece-digests.js';
import { decodeRdev } from '../../src/image/build/stat-attributes.js';
import { parseGetfattrOutput } from '../../src/image/build/xattr-reader.js';
import type { BlobInfo, Compressor, DirectoryNode, FileNode } from '../../src/image/format/index.js';
import { newDirectory } from '../../src/image/format/index.js';

const KiB = 1024;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'damselfly-image-build-'));
  dirs.push(d);
  return d;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();

/** Text that compresses well but differs per seed, so chunks do not dedup by accident. */
function compressible(length: number, seed: string): Buffer {
  const line = Buffer.from(`${seed}: the quick brown fox jumps over the lazy dog\n`);
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; at += line.length) line.copy(out, at);
  return out;
}

/** `data` in pieces of `pieceSize` (the last shorter), as a stream. */
function pieces(data: Buffer, pieceSize: number): Readable {
  const list: Buffer[] = [];
  for (let at = 0; at < data.length; at += pieceSize) list.push(data.subarray(at, at + pieceSize));
  return Readable.from(list);
}

function fileNode(chunks: Array<number | null>, size = 0): FileNode {
  return {
    kind: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtimeSec: 0,
    mtimeNsec: 0,
    xattrs: new Map(),
    size,
    chunks,
  };
}

async function newBuilder(
  options: {
    compressor?: Compressor;
    chunkSize?: number;
    dictionary?: ChunkDictionary;
    signal?: AbortSignal;
  } = {},
) {
  const blobsDir = tempDir();
  const dictionary = options.dictionary ?? new ChunkDictionary();
  const builder = await BlobBuilder.create({
    dictionary,
    blobsDir,
    compressor: options.compressor ?? 'none',
    chunkSize: options.chunkSize ?? 4 * KiB,
    signal: options.signal,
  });
  return { builder, dictionary, blobsDir };
}

/** Reads chunk `index` back from its blob file and decodes it. */
function readChunk(blobsDir: string, dictionary: ChunkDictionary, index: number): Buffer {
  const chunk = dictionary.chunks[index]!;
  const blob = dictionary.blobs[chunk.blobIndex]!;
  const file = readFileSync(join(blobsDir, blob.digest.slice(7)));
  const stored = file.subarray(chunk.compressedOffset, chunk.compressedOffset + chunk.compressedSize);
  return decompressChunk(chunk.compressed ? blob.compressor : 'none', stored, chunk.uncompressedSize);
}

describe('chunk compression', () => {
  it('round-trips every compressor, and zstd loads once under concurrent callers', async () => {
    await Promise.all([prepareCompressor('zstd'), prepareCompressor('zstd'), prepareCompressor('lz4')]);
    for (const compressor of ['none', 'zstd', 'lz4'] as const) {
      for (const data of [compressible(1024 * KiB, compressor), randomBytes(64 * KiB), Buffer.from('x')]) {
        const stored = compressChunk(compressor, data);
        assert.deepEqual(decompressChunk(compressor, stored, data.length), data, compressor);
      }
    }
  });

  it('stores zstd as one frame declaring its size and lz4 as a bare block', async () => {
    await prepareCompressor('zstd');
    const data = compressible(100 * KiB, 'frame');
    const zstd = compressChunk('zstd', data);
    assert.equal(zstd.readUInt32LE(0), 0xfd2fb528);
    assert.equal(zstdFrameContentSize(zstd), data.length);
    const lz4 = compressChunk('lz4', data);
    assert.ok(lz4.length < data.length / 10);
    assert.notEqual(lz4.readUInt32LE(0), data.length, 'lz4-napi size prefix must be stripped');
  });

  it('refuses stored bytes that decode to another length or not at all', async () => {
    await prepareCompressor('zstd');
    const data = compressible(64 * KiB, 'sizes');
    const expectCorrupt = (fn: () => unknown) =>
      assert.throws(fn, (err: unknown) => err instanceof CompressionError && err.code === 'ECORRUPTCHUNK');
    for (const compressor of ['none', 'zstd', 'lz4'] as const) {
      const stored = compressChunk(compressor, data);
      expectCorrupt(() => decompressChunk(compressor, stored, data.length + 1));
      expectCorrupt(() => decompressChunk(compressor, stored, data.length - 1));
    }
    expectCorrupt(() => decompressChunk('zstd', randomBytes(100), 100));
    expectCorrupt(() => decompressChunk('lz4', Buffer.from([0xff, 0xff, 0xff]), 100));
    const zstd = compressChunk('zstd', data);
    const truncated = zstd.subarray(0, zstd.length - 10);
    expectCorrupt(() => decompressChunk('zstd', truncated, data.length));
    assert.throws(
      () => compressChunk('gzip' as Compressor, data),
      (err: unknown) => err instanceof CompressionError && err.code === 'EINVAL',
    );
  });
});

describe('blob builder', () => {
  it('cuts files at chunk-size boundaries whatever the piece sizes, last chunk shorter', async () => {
    const data = randomBytes(3 * 4 * KiB + 100);
    for (const pieceSize of [1000, 4 * KiB, 4 * KiB + 1, 1024 * KiB]) {
      const { builder, dictionary } = await newBuilder();
      const chunks = await builder.addFile(pieces(data, pieceSize), data.length);
      assert.equal(chunks.length, 4);
      const sizes = chunks.map((i) => dictionary.chunks[i!]!.uncompressedSize);
      assert.deepEqual(sizes, [4096, 4096, 4096, 100]);
      chunks.forEach((i, n) => {
        assert.deepEqual(dictionary.chunks[i!]!.digest, sha256(data.subarray(n * 4096, (n + 1) * 4096)));
      });
      await builder.finish();
    }
  });

  it('turns all-zero chunks into holes, including a short last one', async () => {
    const data = Buffer.concat([
      randomBytes(4 * KiB),
      Buffer.alloc(8 * KiB),
      randomBytes(4 * KiB),
      Buffer.alloc(50),
    ]);
    const { builder, dictionary } = await newBuilder();
    const chunks = await builder.addFile(pieces(data, 3000), data.length);
    assert.equal(chunks.length, 5);
    assert.deepEqual(
      chunks.map((c) => c === null),
      [false, true, true, false, true],
    );
    assert.equal(dictionary.figures.holeChunks, 3);
    assert.equal(dictionary.figures.holeBytes, 8 * KiB + 50);
    const info = await builder.finish();
    assert.equal(info?.chunkCount, 2);
  });

  it('stores a chunk once within a file, across files and across blobs', async () => {
    const a = randomBytes(4 * KiB);
    const b = randomBytes(4 * KiB);
    const { builder, dictionary, blobsDir } = await newBuilder();
    const first = await builder.addFile(pieces(Buffer.concat([a, b, a, a]), 4096), 16 * KiB);
    assert.deepEqual(first, [0, 1, 0, 0]);
    const second = await builder.addFile(pieces(Buffer.concat([b, a.subarray(0, 100)]), 999), 4 * KiB + 100);
    assert.deepEqual(second, [1, 2]);
    const blob = (await builder.finish())!;
    assert.equal(blob.chunkCount, 3);

    // A second blob sharing the dictionary stores nothing when all its chunks are known.
    const other = await BlobBuilder.create({ dictionary, blobsDir, compressor: 'none', chunkSize: 4 * KiB });
    assert.deepEqual(await other.addFile(pieces(Buffer.concat([b, a]), 4096), 8 * KiB), [1, 0]);
    assert.equal(await other.finish(), null);
    assert.deepEqual(readdirSync(blobsDir), [blob.digest.slice(7)], 'an empty blob leaves no file');

    const figures = dictionary.figures;
    assert.equal(figures.referencedChunks, 8);
    assert.equal(figures.storedChunks, 3);
    assert.equal(figures.reusedInImageChunks, 5);
    assert.equal(figures.reusedFromDictChunks, 0);
    assert.equal(figures.storedBytes, 8 * KiB + 100);
  });

  it('reuses chunks of a seeded dictionary and counts them apart', async () => {
    const known = randomBytes(4 * KiB);
    const seed = await newBuilder();
    const seedChunks = await seed.builder.addFile(pieces(known, 4096), known.length);
    const seedBlob = (await seed.builder.finish())!;
    const dictionary = ChunkDictionary.fromBootstrap({
      blobs: [seedBlob],
      chunks: [...seed.dictionary.chunks],
    });
    const fresh = randomBytes(4 * KiB);
    const { builder } = await newBuilder({ dictionary });
    const chunks = await builder.addFile(pieces(Buffer.concat([fresh, known]), 4096), 8 * KiB);
    assert.deepEqual(chunks, [1, seedChunks[0]]);
    assert.equal(dictionary.figures.reusedFromDictChunks, 1);
    assert.equal(dictionary.figures.reusedFromDictBytes, 4 * KiB);
    assert.equal(dictionary.figures.storedChunks, 1);
    await builder.finish();
  });

  it('writes compressor none as the exact 4 KiB-aligned layout the kernel reads', async () => {
    const { builder, dictionary, blobsDir } = await newBuilder({ chunkSize: 8 * KiB });
    const small = randomBytes(5000);
    const large = randomBytes(9000);
    const c1 = await builder.addFile(pieces(small, 777), small.length);
    const c2 = await builder.addFile(pieces(large, 8192), large.length);
    const info = (await builder.finish())!;
    const chunks = [...c1, ...c2].map((i) => dictionary.chunks[i!]!);
    assert.deepEqual(
      chunks.map((c) => c.uncompressedOffset),
      [0, 8192, 16384],
    );
    for (const c of chunks) {
      assert.equal(c.compressedOffset, c.uncompressedOffset);
      assert.equal(c.compressed, false);
      assert.equal(c.compressedSize, c.uncompressedSize);
    }
    const file = readFileSync(join(blobsDir, info.digest.slice(7)));
    assert.equal(file.length, 20480);
    assert.equal(info.uncompressedSize, 20480);
    assert.equal(info.compressedSize, 20480);
    assert.equal(`sha256:${sha256(file).toString('hex')}`, info.digest);
    const expected = Buffer.alloc(20480);
    small.copy(expected, 0);
    large.copy(expected, 8192);
    assert.deepEqual(file, expected, 'chunks at their offsets, zeros between and after');
  });

  for (const compressor of ['zstd', 'lz4'] as const) {
    it(`${compressor}: compressed chunks back to back, incompressible ones raw`, async () => {
      const { builder, dictionary, blobsDir } = await newBuilder({ compressor, chunkSize: 64 * KiB });
      const data = Buffer.concat([
        compressible(64 * KiB, 'one'),
        randomBytes(64 * KiB),
        compressible(1000, 'two'),
      ]);
      const chunks = await builder.addFile(pieces(data, 10_000), data.length);
      const info = (await builder.finish())!;
      const infos = chunks.map((i) => dictionary.chunks[i!]!);
      assert.deepEqual(
        infos.map((c) => c.compressed),
        [true, false, true],
      );
      assert.equal(infos[0]!.compressedOffset, 0);
      assert.equal(infos[1]!.compressedOffset, infos[0]!.compressedSize);
      assert.equal(infos[2]!.compressedOffset, infos[1]!.compressedOffset + 64 * KiB);
      assert.deepEqual(
        infos.map((c) => c.uncompressedOffset),
        [0, 64 * KiB, 128 * KiB],
      );
      assert.equal(info.compressedSize, infos[2]!.compressedOffset + infos[2]!.compressedSize);
      assert.equal(info.uncompressedSize, 128 * KiB + 4 * KiB);
      chunks.forEach((index, n) => {
        const plain = readChunk(blobsDir, dictionary, index!);
        assert.deepEqual(plain, data.subarray(n * 64 * KiB, (n + 1) * 64 * KiB));
      });
    });
  }

  it('zstd: chunks that own their memory are moved to the workers and still stored right', async () => {
    const { builder, dictionary, blobsDir } = await newBuilder({ compressor: 'zstd', chunkSize: 64 * KiB });
    const own = (data: Buffer) => {
      const copy = Buffer.allocUnsafeSlow(data.length);
      data.copy(copy);
      return copy;
    };
    const originals = [compressible(64 * KiB, 'moved'), randomBytes(64 * KiB), compressible(5000, 'tail')];
    const chunks = await builder.addFile(Readable.from(originals.map(own)), 128 * KiB + 5000);
    await builder.finish();
    assert.deepEqual(
      chunks.map((i) => dictionary.chunks[i!]!.compressed),
      [true, false, true],
    );
    for (const [n, index] of chunks.entries()) {
      assert.deepEqual(readChunk(blobsDir, dictionary, index!), originals[n]);
    }
  });

  it('queued addFile calls lay out the blob in call order', async () => {
    const { builder, dictionary } = await newBuilder();
    const a = randomBytes(4 * KiB);
    const b = randomBytes(4 * KiB);
    const slow = new PassThrough();
    const first = builder.addFile(slow, a.length);
    const second = builder.addFile(pieces(b, 4096), b.length);
    setTimeout(() => slow.end(a), 20);
    assert.deepEqual(await Promise.all([first, second]), [[0], [1]]);
    assert.deepEqual(dictionary.chunks[1]!.digest, sha256(b));
    await builder.finish();
  });

  for (const [what, actual] of [
    ['shorter', 8 * KiB - 1],
    ['longer', 8 * KiB + 1],
  ] as const) {
    it(`content ${what} than its size fails the blob and removes the temp file`, async () => {
      const { builder, blobsDir } = await newBuilder();
      const data = randomBytes(actual);
      await assert.rejects(
        builder.addFile(pieces(data, 3000), 8 * KiB),
        (err: unknown) => err instanceof ImageBuildError && err.code === 'ESIZEMISMATCH',
      );
      assert.deepEqual(readdirSync(blobsDir), []);
      await assert.rejects(builder.finish(), (err: unknown) => (err as ImageBuildError).code === 'ECLOSED');
    });
  }

  it('an abort stops a stalled file and removes the temp file', async () => {
    const controller = new AbortController();
    const { builder, blobsDir } = await newBuilder({ signal: controller.signal });
    assert.equal(readdirSync(blobsDir).length, 1, 'the temp file exists while building');
    const stalled = new PassThrough();
    stalled.write(randomBytes(6 * KiB));
    const added = builder.addFile(stalled, 1024 * KiB);
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(added, (err: unknown) => (err as Error).name === 'AbortError');
    assert.deepEqual(readdirSync(blobsDir), []);
    assert.ok(stalled.destroyed, 'the content stream was destroyed');
  });

  it('abort() and finish() without chunks leave nothing', async () => {
    const a = await newBuilder();
    await a.builder.abort();
    assert.deepEqual(readdirSync(a.blobsDir), []);
    const b = await newBuilder();
    assert.deepEqual(await b.builder.addFile(Readable.from([]), 0), []);
    assert.equal(await b.builder.finish(), null);
    assert.deepEqual(readdirSync(b.blobsDir), []);
  });

  it('refuses invalid chunk sizes and compressors', async () => {
    for (const chunkSize of [0, 1000, 2 * KiB, 32 * 1024 * KiB, 6 * KiB]) {
      await assert.rejects(
        newBuilder({ chunkSize }),
        (err: unknown) => (err as ImageBuildError).code === 'EINVAL',
      );
    }
    await assert.rejects(
      newBuilder({ compressor: 'brotli' as Compressor }),
      (err: unknown) => (err as ImageBuildError).code === 'EINVAL',
    );
  });
});

describe('chunk dictionary', () => {
  const blob = (name: string, chunkCount: number): BlobInfo => ({
    digest: `sha256:${name.repeat(64).slice(0, 64)}`,
    compressor: 'none',
    compressedSize: chunkCount * 4096,
    uncompressedSize: chunkCount * 4096,
    chunkCount,
  });
  const chunk = (blobIndex: number, n: number) => ({
    blobIndex,
    digest: sha256(Buffer.from(`${blobIndex}/${n}`)),
    compressedOffset: n * 4096,
    compressedSize: 4096,
    uncompressedOffset: n * 4096,
    uncompressedSize: 4096,
    compressed: false,
  });

  it('drops unreferenced dict blobs and chunks, renumbers, and remaps the tree (hard links once)', () => {
    // Dict: blob 0 (chunks 0, 1), blob 1 (chunks 2, 3), blob 2 (chunk 4).
    const dictionary = ChunkDictionary.fromBootstrap({
      blobs: [blob('a', 2), blob('b', 2), blob('c', 1)],
      chunks: [chunk(0, 0), chunk(0, 1), chunk(1, 0), chunk(1, 1), chunk(2, 0)],
    });
    const newBlob = dictionary.reserveBlob();
    const fresh = dictionary.addChunk(chunk(newBlob, 0));
    dictionary.completeBlob(newBlob, blob('d', 1));
    const empty = dictionary.reserveBlob();
    dictionary.discardBlob(empty);

    const linked = fileNode([fresh, 3, null, 3]);
    const root: DirectoryNode = newDirectory();
    const sub = newDirectory();
    root.children.set('sub', sub);
    root.children.set('x', linked);
    sub.children.set('y', linked);
    sub.children.set('z', fileNode([4]));

    const tables = dictionary.compact([root]);
    assert.deepEqual(
      tables.blobs.map((b) => b.digest.slice(7, 8)),
      ['b', 'c', 'd'],
    );
    assert.deepEqual(
      tables.blobs.map((b) => b.chunkCount),
      [1, 1, 1],
      'chunkCount counts the chunks the table keeps',
    );
    assert.deepEqual(tables.dictBlobIndexes, [0, 1]);
    assert.equal(tables.droppedBlobs, 1);
    assert.equal(tables.droppedChunks, 3);
    assert.deepEqual(
      tables.chunks.map((c) => [c.blobIndex, c.uncompressedOffset]),
      [
        [0, 4096],
        [1, 0],
        [2, 0],
      ],
    );
    assert.deepEqual(linked.chunks, [2, 0, null, 0]);
    assert.deepEqual((sub.children.get('z') as FileNode).chunks, [1]);
    assert.throws(
      () => dictionary.reserveBlob(),
      (err: unknown) => (err as ImageBuildError).code === 'ECLOSED',
    );
  });

  it('refuses to compact while a blob is still being written, or with dangling indexes', () => {
    const dictionary = new ChunkDictionary();
    dictionary.reserveBlob();
    assert.throws(
      () => dictionary.compact([newDirectory()]),
      (err: unknown) => (err as ImageBuildError).code === 'EMODEL',
    );
    const other = new ChunkDictionary();
    const root = newDirectory();
    root.children.set('f', fileNode([7]));
    assert.throws(
      () => other.compact([root]),
      (err: unknown) => (err as ImageBuildError).code === 'EMODEL',
    );
  });

  it('refuses a dict whose chunks name missing blobs', () => {
    assert.throws(
      () => ChunkDictionary.fromBootstrap({ blobs: [], chunks: [chunk(0, 0)] }),
      (err: unknown) => (err as ImageBuildError).code === 'ECHUNKDICT',
    );
  });
});

describe('walker helpers', () => {
  it('finds a remembered slice digest only for a view of exactly that slice', () => {
    const piece = Buffer.from(new Uint8Array(10_000)).fill(7);
    const digests = Buffer.concat([0, 4096, 8192].map((at) => sha256(piece.subarray(at, at + 4096))));
    rememberDigests(piece, 4096, digests);
    assert.deepEqual(knownDigest(piece.subarray(4096, 8192)), digests.subarray(32, 64));
    assert.deepEqual(knownDigest(piece.subarray(8192)), digests.subarray(64, 96), 'the shorter last slice');
    assert.equal(knownDigest(piece.subarray(0, 4000)), undefined, 'another length');
    assert.equal(knownDigest(piece.subarray(100, 4196)), undefined, 'another offset');
    assert.equal(knownDigest(Buffer.from(piece.subarray(0, 4096))), undefined, 'a copy');
  });

  it('decodes Linux dev_t numbers', () => {
    assert.deepEqual(decodeRdev(0x0103n), { rdevMajor: 1, rdevMinor: 3 });
    // makedev(300, 1234) = (1234 & 0xff) | ((300 & 0xfff) << 8) | ((1234 & ~0xff) << 12)
    const rdev = BigInt((1234 & 0xff) | ((300 & 0xfff) << 8)) | (BigInt(1234 & ~0xff) << 12n);
    assert.deepEqual(decodeRdev(rdev), { rdevMajor: 300, rdevMinor: 1234 });
    const big = (BigInt(0x12345 & ~0xfff) << 32n) | BigInt((0x12345 & 0xfff) << 8);
    assert.equal(decodeRdev(big).rdevMajor, 0x12345);
  });

  it('parses getfattr dumps with escaped paths and names', () => {
    const output = Buffer.from(
      '# file: /t/a\nuser.empty=0s\nuser.foo=0sYmFy\n\n' +
        '# file: /t/back\\134slash\\012nl\ntrusted.t=0sAP8=\n\n' +
        '# file: /t/ünï\nuser.we\\075ird=0seQ==\n\n',
    );
    const parsed = parseGetfattrOutput(output);
    assert.deepEqual([...parsed.keys()], ['/t/a', '/t/back\\slash\nnl', '/t/ünï']);
    assert.deepEqual(
      parsed.get('/t/a'),
      new Map([
        ['user.empty', Buffer.alloc(0)],
        ['user.foo', Buffer.from('bar')],
      ]),
    );
    assert.deepEqual(parsed.get('/t/back\\slash\nnl')?.get('trusted.t'), Buffer.from([0, 0xff]));
    assert.deepEqual(parsed.get('/t/ünï')?.get('user.we=ird'), Buffer.from('y'));
  });
});

describe('directory walker and build', () => {
  /** A sink that records which contents it got, in order, and hands out one fake chunk per file. */
  function recordingSink() {
    const seen: string[] = [];
    const sink = async (content: AsyncIterable<Buffer>, size: number) => {
      const parts: Buffer[] = [];
      for await (const piece of content) parts.push(piece);
      const data = Buffer.concat(parts);
      assert.equal(data.length, size);
      seen.push(data.toString());
      return [seen.length - 1];
    };
    return { seen, sink };
  }

  it('feeds contents in UTF-8 byte order, once per hard-linked inode, which is one node', async () => {
    const dir = tempDir();
    for (const name of ['b', 'B', 'a', 'é', 'z-empty'])
      writeFileSync(join(dir, name), name === 'z-empty' ? '' : name);
    mkdirSync(join(dir, 'sub'));
    linkSync(join(dir, 'a'), join(dir, 'sub', 'link-to-a'));
    const { seen, sink } = recordingSink();
    const walk = await walkDirectory(dir, { onFileContent: sink });
    assert.deepEqual(
      seen,
      ['B', 'a', 'b', 'é'],
      'sorted by bytes; the empty file and the second name not read',
    );
    assert.deepEqual([...walk.root.children.keys()], ['B', 'a', 'b', 'sub', 'z-empty', 'é']);
    const sub = walk.root.children.get('sub') as DirectoryNode;
    assert.equal(sub.children.get('link-to-a'), walk.root.children.get('a'), 'hard links share the node');
    assert.equal(walk.files, 5);
    assert.equal(walk.hardLinks, 1);
    assert.equal(walk.entries, 7);
  });

  it('refuses names that are not UTF-8, naming the path', async () => {
    const dir = tempDir();
    writeFileSync(Buffer.concat([Buffer.from(`${dir}/bad-`), Buffer.from([0xff, 0xfe])]), 'x');
    await assert.rejects(walkDirectory(dir, { onFileContent: recordingSink().sink }), (err: unknown) => {
      assert.equal((err as ImageBuildError).code, 'ENONUTF8NAME');
      assert.match((err as Error).message, /bad-\\xff\\xfe/);
      return true;
    });
  });

  it('a failed or aborted build removes everything it created', async () => {
    const source = tempDir();
    writeFileSync(join(source, 'data'), randomBytes(3 * 1024 * KiB));
    const out = join(tempDir(), 'new', 'out');
    const controller = new AbortController();
    const building = buildImage(source, out, {
      compressor: 'none',
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });
    await assert.rejects(building, (err: unknown) => (err as Error).name === 'AbortError');
    assert.equal(existsSync(join(out, '..')), false, 'directories created by the run are gone');

    writeFileSync(Buffer.concat([Buffer.from(`${source}/bad-`), Buffer.from([0xc3])]), 'x');
    await assert.rejects(
      buildImage(source, out),
      (err: unknown) => (err as ImageBuildError).code === 'ENONUTF8NAME',
    );
    assert.equal(existsSync(join(out, '..')), false);
  });

  it('refuses an output inside the source and invalid options', async () => {
    const source = tempDir();
    await assert.rejects(
      buildImage(source, join(source, 'out')),
      (err: unknown) => (err as ImageBuildError).code === 'EINVAL',
    );
    await assert.rejects(buildImage(source, tempDir(), { chunkSize: 12345 }), /power of two/);
    await assert.rejects(
      buildImage(source, tempDir(), { compressor: 'xz' as Compressor }),
      (err: unknown) => (err as ImageBuildError).code === 'EINVAL',
    );
  });
});
