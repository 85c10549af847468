/**
 * The absolute path of every node of an image tree, for the access trace: built once, on first use,
 * by one walk. A hard-linked file gets the first path the walk reaches (any of its names fetches
 * the same chunks).
 */
import type { DirectoryNode, TreeNode } from '../image/format/index.js';

export class NodePaths {
  private paths: Map<TreeNode, string> | undefined;

  constructor(private readonly root: DirectoryNode) {}

  pathOf(node: TreeNode): string | undefined {
    this.paths ??= walk(this.root);
    return this.paths.get(node);
  }
}

function walk(root: DirectoryNode): Map<TreeNode, string> {
  const paths = new Map<TreeNode, string>([[root, '/']]);
  const queue: Array<[DirectoryNode, string]> = [[root, '']];
  for (let cursor = 0; cursor < queue.length; cursor++) {
    const [dir, prefix] = queue[cursor]!;
    for (const [name, child] of dir.children) {
      if (paths.has(child)) continue;
      const path = `${prefix}/${name}`;
      paths.set(child, path);
      if (child.kind === 'directory') queue.push([child, path]);
    }
  }
  return paths;
}
