import type { BlobInfo, ImageBootstrap, TreeNode } from '../format/index.js';
import { walkTree } from '../verify/index.js';

export interface DedupFigures {
  /** Bytes of regular-file content, holes included. */
  fileBytes: number;
  /** Bytes of file content that point at stored chunks (holes excluded), counting every reference. */
  referencedBytes: number;
  /** Bytes of unique chunks, uncompressed. */
  uniqueBytes: number;
  /** Bytes the blobs occupy as stored. */
  storedBytes: number;
  holeBytes: number;
  /** referencedBytes / uniqueBytes: how many times an average stored byte is used. */
  dedupRatio: number;
}

export interface ImageSummary {
  chunkSize: number;
  entries: Record<TreeNode['kind'], number>;
  /** Distinct inodes (hard links counted once). */
  inodes: number;
  chunks: number;
  blobs: Array<BlobInfo & { referencedChunks: number }>;
  dedup: DedupFigures;
  prefetch: string[];
}

/** What `image inspect` shows: counts, blobs in device-table order and dedup figures. */
export function summarizeImage(image: ImageBootstrap): ImageSummary {
  const entries = { file: 0, directory: 0, symlink: 0, char: 0, block: 0, fifo: 0, socket: 0 };
  const seen = new Set<TreeNode>();
  const referencedPerChunk = new Map<number, number>();
  let fileBytes = 0;
  let referencedBytes = 0;
  for (const [, node] of walkTree(image.root)) {
    entries[node.kind]++;
    if (seen.has(node)) continue;
    seen.add(node);
    if (node.kind !== 'file') continue;
    fileBytes += node.size;
    for (const index of node.chunks) {
      if (index === null) continue;
      referencedBytes += image.chunks[index]?.uncompressedSize ?? 0;
      referencedPerChunk.set(index, (referencedPerChunk.get(index) ?? 0) + 1);
    }
  }
  const uniqueBytes = image.chunks.reduce((sum, chunk) => sum + chunk.uncompressedSize, 0);
  const blobs = image.blobs.map((blob, blobIndex) => ({
    ...blob,
    referencedChunks: image.chunks.filter(
      (chunk, i) => chunk.blobIndex === blobIndex && referencedPerChunk.has(i),
    ).length,
  }));
  return {
    chunkSize: image.chunkSize,
    entries,
    inodes: seen.size,
    chunks: image.chunks.length,
    blobs,
    dedup: {
      fileBytes,
      referencedBytes,
      uniqueBytes,
      storedBytes: image.blobs.reduce((sum, blob) => sum + blob.compressedSize, 0),
      holeBytes: fileBytes - referencedBytes,
      dedupRatio: uniqueBytes === 0 ? 1 : referencedBytes / uniqueBytes,
    },
    prefetch: image.prefetch,
  };
}

export interface FileListing {
  path: string;
  kind: TreeNode['kind'];
  size: number;
  /** For files: `[blob index, uncompressed offset, size]` per chunk, `null` for holes. */
  chunks?: Array<[number, number, number] | null>;
  target?: string;
}

/** Every path of the tree, with each file's chunk locations (`image inspect --files`). */
export function listFiles(image: ImageBootstrap): FileListing[] {
  const listing: FileListing[] = [];
  for (const [path, node] of walkTree(image.root)) {
    const entry: FileListing = { path, kind: node.kind, size: node.kind === 'file' ? node.size : 0 };
    if (node.kind === 'file')
      entry.chunks = node.chunks.map((index) => {
        const chunk = index === null ? undefined : image.chunks[index];
        return chunk ? [chunk.blobIndex, chunk.uncompressedOffset, chunk.uncompressedSize] : null;
      });
    if (node.kind === 'symlink') entry.target = node.target;
    listing.push(entry);
  }
  return listing;
}
