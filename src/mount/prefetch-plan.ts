/**
 * Which chunks a prefetch fetches, in order. Pure. First the chunks of the named paths, in the order
 * named (a directory: every file below it, depth first, in directory order); then, with `all`,
 * every other chunk of the chunk table in each blob's stored order (so neighbouring requests merge).
 * Each chunk once (hard links, deduplicated chunks); holes are nothing to fetch.
 */
import { nodeAtPath } from '../image/convert/index.js';
import type { ImageBootstrap, TreeNode } from '../image/format/index.js';

export interface PrefetchPlan {
  /** Chunk indexes in fetch order, each once. */
  chunks: number[];
  /** Sum of their uncompressed sizes: what "done" counts up to. */
  totalBytes: number;
  /** Named paths that are not in the tree (a stale list); skipped. */
  missingPaths: string[];
}

export function planPrefetch(
  image: ImageBootstrap,
  paths: readonly string[],
  options: { all?: boolean } = {},
): PrefetchPlan {
  const chosen = new Set<number>();
  const missingPaths: string[] = [];
  for (const path of paths) {
    const node = nodeAtPath(image.root, path);
    if (node === undefined) missingPaths.push(path);
    else addChunksBelow(node, chosen);
  }
  if (options.all) for (const index of chunksInStoredOrder(image)) chosen.add(index);
  const chunks = [...chosen];
  const totalBytes = chunks.reduce((sum, index) => sum + image.chunks[index]!.uncompressedSize, 0);
  return { chunks, totalBytes, missingPaths };
}

function addChunksBelow(top: TreeNode, into: Set<number>): void {
  const stack: TreeNode[] = [top];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (node.kind === 'file') {
      for (const index of node.chunks) if (index !== null) into.add(index);
    } else if (node.kind === 'directory') {
      // Reversed onto the stack so the first child is visited first.
      stack.push(...[...node.children.values()].reverse());
    }
  }
}

/** Every chunk index, blob by blob, each blob in stored (compressed offset) order. */
export function chunksInStoredOrder(image: ImageBootstrap): number[] {
  return image.chunks
    .map((_, index) => index)
    .sort((a, b) => {
      const x = image.chunks[a]!;
      const y = image.chunks[b]!;
      return x.blobIndex - y.blobIndex || x.compressedOffset - y.compressedOffset;
    });
}
