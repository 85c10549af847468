/**
 * Cuts file contents into fixed-size chunks and stores the new ones in one blob (one OCI layer of a
 * converted image). Per chunk: all zeros → a hole; a sha256 already in the dictionary → a
 * reference; otherwise compressed (kept raw when that does not shrink it) and appended.
 *
 * Blob layout: chunks in the order they were first seen. `uncompressedOffset` advances by the chunk
 * size rounded up to 4 KiB — the layout the kernel reads as an EROFS device. Compressed chunks sit
 * back to back (`compressedOffset` advances by the stored size). With compressor `none` the file
 * *is* the uncompressed layout: compressedOffset = uncompressedOffset, zeros between chunks and up
 * to the next 4 KiB at the end.
 *
 * Pipeline: hashing and the dedup decision happen in order on the calling thread (so indexes and
 * layout are deterministic); new chunks are then encoded off-thread, a few at a time, and appended
 * in order as their encodings arrive, so reading, hashing, compressing and writing overlap.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  BLOCK_SIZE,
  type BlobInfo,
  type ChunkInfo,
  type Compressor,
  isValidChunkSize,
} from '../format/index.js';
import { BlobFile, type CommittedBlobFile } from './blob-file.js';
import type { ChunkDictionary } from './chunk-dictionary.js';
import { type ChunkEncoder, createChunkEncoder, type EncodedChunk } from './chunk-encoder.js';
import { DEFAULT_ZSTD_LEVEL, isCompressor } from './compression.js';
import { ImageBuildError } from './errors.js';
import { knownDigest } from './piece-digests.js';

/** What chunks a file: content in, one chunk index (or null for a hole) per chunk slot out. */
export type FileChunker = (
  content: Readable | AsyncIterable<Buffer | Uint8Array>,
  size: number,
) => Promise<Array<number | null>>;

export interface BlobBuilderOptions {
  dictionary: ChunkDictionary;
  /** Where the blob file goes (`OUT/blobs`); must exist. */
  blobsDir: string;
  compressor: Compressor;
  chunkSize: number;
  zstdLevel?: number;
  signal?: AbortSignal;
}

const alignUp = (n: number) => Math.ceil(n / BLOCK_SIZE) * BLOCK_SIZE;

/** New chunks being encoded or written at once, beyond which chunking waits. */
const CHUNKS_IN_FLIGHT = 8;

let zeros = Buffer.alloc(0);

function isReadable(content: unknown): content is Readable {
  return (
    typeof (content as Readable).destroy === 'function' && typeof (content as Readable).pipe === 'function'
  );
}

/** memcmp against a zero buffer: stops at the first non-zero byte. */
function isAllZero(data: Buffer): boolean {
  if (zeros.length < data.length) zeros = Buffer.alloc(data.length);
  return data.equals(zeros.subarray(0, data.length));
}

export class BlobBuilder {
  private state: 'open' | 'finished' | 'failed' = 'open';
  private failure: unknown;
  /** addFile calls run one after another so the blob layout follows call order. */
  private queue: Promise<unknown> = Promise.resolve();
  private uncompressedEnd = 0;
  private compressedEnd = 0;
  private chunkCount = 0;
  private committed: CommittedBlobFile | null = null;
  /** Appends of new chunks, chained in blob order; the oldest are awaited for backpressure. */
  private appended: Promise<void> = Promise.resolve();
  private readonly inFlight: Array<Promise<void>> = [];

  private constructor(
    private readonly options: Required<Omit<BlobBuilderOptions, 'signal'>> & { signal?: AbortSignal },
    private readonly file: BlobFile,
    private readonly encoder: ChunkEncoder,
    /** This blob's slot in the dictionary; its chunks name it. */
    readonly blobIndex: number,
  ) {}

  static async create(options: BlobBuilderOptions): Promise<BlobBuilder> {
    if (!isValidChunkSize(options.chunkSize)) {
      throw new ImageBuildError('EINVAL', `invalid chunk size ${options.chunkSize}`);
    }
    if (!isCompressor(options.compressor)) {
      throw new ImageBuildError('EINVAL', `unknown compressor "${String(options.compressor)}"`);
    }
    options.signal?.throwIfAborted();
    const full = { zstdLevel: DEFAULT_ZSTD_LEVEL, ...options };
    const blobIndex = options.dictionary.reserveBlob();
    let file: BlobFile;
    try {
      file = await BlobFile.create(options.blobsDir);
    } catch (err) {
      options.dictionary.discardBlob(blobIndex);
      throw err;
    }
    const encoder = createChunkEncoder(options.compressor, full.zstdLevel);
    return new BlobBuilder(full, file, encoder, blobIndex);
  }

  /** The committed blob file (after `finish()` stored something). */
  get blobFile(): CommittedBlobFile | null {
    return this.committed;
  }

  /**
   * Chunks one file's content, which must be exactly `size` bytes. Calls are queued: the blob layout
   * follows call order. Any failure (including a size mismatch or an abort) fails the whole blob and
   * removes its temp file: the blob can no longer be finished.
   */
  readonly addFile: FileChunker = (content, size) => {
    const result = this.queue.then(() => this.run(() => this.chunkFile(content, size)));
    this.queue = result.catch(() => undefined);
    return result;
  };

  private async run<T>(work: () => Promise<T>): Promise<T> {
    this.checkOpen();
    try {
      return await work();
    } catch (err) {
      await this.fail(err);
      throw err;
    }
  }

  private async chunkFile(
    content: Readable | AsyncIterable<Buffer | Uint8Array>,
    size: number,
  ): Promise<Array<number | null>> {
    if (!Number.isSafeInteger(size) || size < 0)
      throw new ImageBuildError('EINVAL', `invalid file size ${size}`);
    const { signal } = this.options;
    const slicer = new ChunkSlicer(this.options.chunkSize, size);
    const chunks: Array<number | null> = [];
    // A stalled producer must not outlive an abort: destroying the stream ends the loop below.
    const onAbort = () => (content as Readable).destroy(signal?.reason);
    if (isReadable(content)) signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const piece of content) {
        signal?.throwIfAborted();
        for (const chunk of slicer.push(Buffer.isBuffer(piece) ? piece : Buffer.from(piece))) {
          chunks.push(await this.acceptChunk(chunk));
        }
      }
      signal?.throwIfAborted();
      slicer.end();
      return chunks;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async acceptChunk(data: Buffer): Promise<number | null> {
    const { dictionary } = this.options;
    if (isAllZero(data)) {
      dictionary.hole(data.length);
      return null;
    }
    const digest = knownDigest(data) ?? createHash('sha256').update(data).digest();
    const existing = dictionary.lookup(digest);
    if (existing !== undefined) {
      dictionary.reuse(existing);
      return existing;
    }
    return this.store(data, digest);
  }

  /** Adds a new chunk to the dictionary now and to the blob once encoded; waits while too many are pending. */
  private async store(data: Buffer, digest: Buffer): Promise<number> {
    const uncompressedOffset = this.uncompressedEnd;
    this.uncompressedEnd = alignUp(uncompressedOffset + data.length);
    this.chunkCount++;
    // Where it is stored is known only once encoded; append() fills that in, in blob order.
    const chunk: ChunkInfo = {
      blobIndex: this.blobIndex,
      digest,
      compressedOffset: 0,
      compressedSize: 0,
      uncompressedOffset,
      uncompressedSize: data.length,
      compressed: false,
    };
    const index = this.options.dictionary.addChunk(chunk);
    const encoded = this.encoder.encode(data); // `data` is the encoder's from here on
    encoded.catch(() => undefined); // awaited by append()
    this.appended = this.appended.then(() => this.append(chunk, encoded));
    this.appended.catch(() => undefined); // awaited below or by finish()
    this.inFlight.push(this.appended);
    while (this.inFlight.length > CHUNKS_IN_FLIGHT) await this.inFlight.shift();
    return index;
  }

  /** Places an encoded chunk after the previous one. */
  private async append(chunk: ChunkInfo, encoded: Promise<EncodedChunk>): Promise<void> {
    const { compressor, dictionary } = this.options;
    const { bytes, compressed } = await encoded;
    chunk.compressed = compressed;
    chunk.compressedSize = bytes.length;
    chunk.compressedOffset = compressor === 'none' ? chunk.uncompressedOffset : this.compressedEnd;
    this.compressedEnd = chunk.compressedOffset + bytes.length;
    dictionary.countStoredCompressed(bytes.length);
    await this.file.write(chunk.compressedOffset, bytes);
  }

  /**
   * Waits for every queued file, then makes the blob durable as `blobsDir/<hex sha256>` and records
   * it in the dictionary. Null (and no file) when no new chunk was stored.
   */
  async finish(): Promise<BlobInfo | null> {
    await this.queue;
    return this.run(async () => {
      await this.appended;
      this.inFlight.length = 0;
      await this.encoder.close();
      this.options.signal?.throwIfAborted();
      this.state = 'finished';
      const { dictionary, compressor } = this.options;
      if (this.chunkCount === 0) {
        await this.file.discard();
        dictionary.discardBlob(this.blobIndex);
        return null;
      }
      // `none`: pad to the aligned end so the file is exactly the device the kernel reads.
      const size = compressor === 'none' ? this.uncompressedEnd : this.compressedEnd;
      this.committed = await this.file.commit(size);
      const info: BlobInfo = {
        digest: this.committed.digest,
        compressor,
        compressedSize: size,
        uncompressedSize: this.uncompressedEnd,
        chunkCount: this.chunkCount,
      };
      dictionary.completeBlob(this.blobIndex, info);
      return info;
    });
  }

  /** Gives the blob up: removes the temp file and frees the dictionary slot. Idempotent. */
  async abort(reason: unknown = new ImageBuildError('ECLOSED', 'the blob was aborted')): Promise<void> {
    if (this.state === 'open') await this.fail(reason);
  }

  private async fail(err: unknown): Promise<void> {
    if (this.state === 'failed') return;
    this.state = 'failed';
    this.failure = err;
    await this.appended.catch(() => undefined);
    await this.encoder.close();
    await this.file.discard();
    try {
      this.options.dictionary.discardBlob(this.blobIndex);
    } catch {
      // The slot was already completed or discarded.
    }
  }

  private checkOpen(): void {
    if (this.state === 'failed') {
      throw new ImageBuildError('ECLOSED', `the blob failed earlier: ${(this.failure as Error)?.message}`, {
        cause: this.failure,
      });
    }
    if (this.state !== 'open') throw new ImageBuildError('ECLOSED', 'the blob was already finished');
  }
}

/**
 * Regroups a file's pieces into chunk-size slices (the last one shorter) and checks the content
 * has exactly the announced size. A piece that exactly covers a chunk is used without a copy.
 */
class ChunkSlicer {
  private offset = 0;
  private current: Buffer | null = null;
  private filled = 0;

  constructor(
    private readonly chunkSize: number,
    private readonly size: number,
  ) {}

  *push(piece: Buffer): Generator<Buffer> {
    if (this.offset + this.filled + piece.length > this.size) {
      throw new ImageBuildError('ESIZEMISMATCH', `content is longer than its announced size ${this.size}`);
    }
    let at = 0;
    while (at < piece.length) {
      const want = Math.min(this.chunkSize, this.size - this.offset);
      if (this.filled === 0 && piece.length - at >= want) {
        yield this.emit(piece.subarray(at, at + want));
        at += want;
        continue;
      }
      this.current ??= Buffer.allocUnsafe(want);
      const n = piece.copy(
        this.current,
        this.filled,
        at,
        at + Math.min(want - this.filled, piece.length - at),
      );
      this.filled += n;
      at += n;
      if (this.filled === want) {
        const full = this.current;
        this.current = null;
        this.filled = 0;
        yield this.emit(full);
      }
    }
  }

  private emit(chunk: Buffer): Buffer {
    this.offset += chunk.length;
    return chunk;
  }

  /** Throws when the content ended before the announced size. */
  end(): void {
    const got = this.offset + this.filled;
    if (got !== this.size) {
      throw new ImageBuildError(
        'ESIZEMISMATCH',
        `content ended after ${got} of its announced ${this.size} bytes`,
      );
    }
  }
}
