import {
  BootstrapFormatError,
  decodeBootstrap,
  type ImageBootstrap,
  type TreeNode,
} from '../format/index.js';
import { type ImageSource, verifiedBlobChunks } from '../source/index.js';

export interface CheckReport {
  blobs: number;
  chunks: number;
  /** Stored bytes read. */
  bytes: number;
  /** One line per fault found; empty when the image is sound. */
  faults: string[];
}

export interface CheckOptions {
  signal?: AbortSignal;
  /** Called after each blob with the stored bytes read so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** Verifies an image's structure and every chunk of every blob; collects faults instead of stopping at the first. */
export async function checkImage(source: ImageSource, options: CheckOptions = {}): Promise<CheckReport> {
  const report: CheckReport = { blobs: 0, chunks: 0, bytes: 0, faults: [] };
  let image: ImageBootstrap;
  try {
    image = decodeBootstrap(source.bootstrap).image;
  } catch (err) {
    if (!(err instanceof BootstrapFormatError)) throw err;
    report.faults.push(`${source.name}: invalid bootstrap: ${err.message}`);
    return report;
  }
  report.faults.push(...fileChunkFaults(image));
  const total = image.blobs.reduce((sum, blob) => sum + blob.compressedSize, 0);
  for (const [blobIndex, blob] of image.blobs.entries()) {
    options.signal?.throwIfAborted();
    const read: { digest?: string; size?: number } = {};
    try {
      const stored = await source.openBlob(blob, options.signal);
      for await (const result of verifiedBlobChunks(image, blobIndex, stored, read)) {
        report.chunks++;
        if (result.fault) report.faults.push(result.fault);
      }
    } catch (err) {
      if (options.signal?.aborted) throw err;
      report.faults.push(`blob ${blob.digest}: ${(err as Error).message}`);
      continue;
    }
    report.blobs++;
    report.bytes += read.size ?? 0;
    if (read.size !== blob.compressedSize)
      report.faults.push(
        `blob ${blob.digest}: ${read.size} bytes stored, the bootstrap says ${blob.compressedSize}`,
      );
    else if (read.digest !== blob.digest)
      report.faults.push(`blob ${blob.digest}: its bytes hash to ${read.digest}`);
    options.onProgress?.(report.bytes, total);
  }
  return report;
}

/** Every file must have one chunk per `chunkSize` slice, each exactly as long as its slice. */
export function fileChunkFaults(image: ImageBootstrap): string[] {
  const faults: string[] = [];
  for (const [path, node] of walkTree(image.root)) {
    if (node.kind !== 'file') continue;
    const expected = Math.ceil(node.size / image.chunkSize);
    if (node.chunks.length !== expected) {
      faults.push(`${path}: ${node.chunks.length} chunks for ${node.size} bytes, expected ${expected}`);
      continue;
    }
    node.chunks.forEach((index, i) => {
      if (index === null) return;
      const chunk = image.chunks[index];
      const length = Math.min(image.chunkSize, node.size - i * image.chunkSize);
      if (!chunk) faults.push(`${path}: chunk ${i} refers to missing chunk ${index}`);
      else if (chunk.uncompressedSize !== length)
        faults.push(`${path}: chunk ${i} is ${chunk.uncompressedSize} bytes, the file needs ${length}`);
    });
  }
  return faults;
}

/** Depth-first walk yielding `[absolute path, node]`; a hard-linked node appears once per name. */
export function* walkTree(root: TreeNode, path = '/'): Generator<[string, TreeNode]> {
  yield [path, root];
  if (root.kind !== 'directory') return;
  for (const [name, child] of root.children)
    yield* walkTree(child, path === '/' ? `/${name}` : `${path}/${name}`);
}
