/**
 * File bytes from chunk pieces: holes are zeros, chunks the cache has are read from the cache file,
 * the rest come verified from the ChunkFetcher (all missing chunks of one read in one call, so they
 * are planned together). Bytes are copied straight into the reply buffer.
 */
import type { ContentExtent, ContentFile, ContentMap } from '../fuse/index.js';
import { appendExtent } from '../fuse/index.js';
import type { FileNode, ImageBootstrap } from '../image/format/index.js';
import type { BlobCache } from './blob-cache.js';
import type { ChunkFetcher } from './chunk-fetcher.js';
import { piecesLength, type ReadPiece } from './read-plan.js';

export interface ChunkReadStats {
  /** Chunk pieces served from the cache file / from a fetch (joined or started). */
  cacheHits: number;
  cacheMisses: number;
}

export class ChunkReader {
  readonly stats: ChunkReadStats = { cacheHits: 0, cacheMisses: 0 };

  constructor(
    readonly image: ImageBootstrap,
    private readonly caches: readonly BlobCache[],
    private readonly fetcher: ChunkFetcher,
  ) {}

  async read(pieces: readonly ReadPiece[], signal: AbortSignal): Promise<Buffer> {
    const out = Buffer.allocUnsafe(piecesLength(pieces));
    const work: Array<Promise<void>> = [];
    const missing: Array<{ piece: ReadPiece & { chunk: number }; at: number }> = [];
    let at = 0;
    for (const piece of pieces) {
      if (piece.chunk === null) out.fill(0, at, at + piece.length);
      else if (this.cached(piece.chunk)) work.push(this.readCached(piece.chunk, piece, out, at));
      else missing.push({ piece: { ...piece, chunk: piece.chunk }, at });
      at += piece.length;
    }
    if (missing.length > 0) {
      this.stats.cacheMisses += missing.length;
      const fetched = this.fetcher.fetch(missing.map(({ piece }) => piece.chunk));
      missing.forEach(({ piece, at }, i) => {
        work.push(copyWhenReady(fetched[i]!, signal, piece, out, at));
      });
    }
    await Promise.all(work);
    return out;
  }

  /**
   * Where every byte of `file` is in the cache files, or undefined while any of its chunks is not
   * cached yet (or still being committed). Only chunks whose bit is set — verified, durable — are
   * mapped; cached chunks never change, so the map stays true for the life of the mount.
   */
  contentMap(file: Pick<FileNode, 'size' | 'chunks'>): ContentMap | undefined {
    const chunkSize = this.image.chunkSize;
    const files: ContentFile[] = [];
    const fileOfBlob = new Map<number, number>();
    const extents: ContentExtent[] = [];
    for (let slot = 0, offset = 0; offset < file.size; slot++, offset += chunkSize) {
      const length = Math.min(chunkSize, file.size - offset);
      const index = file.chunks[slot];
      if (index === undefined) return undefined;
      if (index === null) {
        appendExtent(extents, { offset, length });
        continue;
      }
      if (!this.cached(index)) return undefined;
      const chunk = this.image.chunks[index]!;
      if (chunk.uncompressedSize < length) return undefined;
      let fileIndex = fileOfBlob.get(chunk.blobIndex);
      if (fileIndex === undefined) {
        const cache = this.caches[chunk.blobIndex]!;
        fileIndex = files.push({ path: cache.dataPath, ...cache.dataFile }) - 1;
        fileOfBlob.set(chunk.blobIndex, fileIndex);
      }
      appendExtent(extents, { offset, length, file: fileIndex, position: chunk.uncompressedOffset });
    }
    return { size: file.size, files, extents };
  }

  /** In the cache file and not still being committed (a pending chunk is served from memory). */
  private cached(index: number): boolean {
    const chunk = this.image.chunks[index]!;
    return !this.fetcher.isPending(index) && this.caches[chunk.blobIndex]!.has(chunk);
  }

  private readCached(index: number, piece: ReadPiece, out: Buffer, at: number): Promise<void> {
    this.stats.cacheHits++;
    const chunk = this.image.chunks[index]!;
    return this.caches[chunk.blobIndex]!.read(out, at, chunk.uncompressedOffset + piece.offset, piece.length);
  }
}

async function copyWhenReady(
  data: Promise<Buffer>,
  signal: AbortSignal,
  piece: ReadPiece,
  out: Buffer,
  at: number,
): Promise<void> {
  const bytes = await abortable(data, signal);
  bytes.copy(out, at, piece.offset, piece.offset + piece.length);
}

/** Stops waiting when `signal` aborts; the shared work behind `promise` carries on. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
