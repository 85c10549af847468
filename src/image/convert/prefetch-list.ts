/**
 * The prefetch list users hand to `image convert|build --prefetch-files LIST`: one absolute path per
 * line — exactly what `damselfly mount --trace FILE` writes — so a traced container start feeds the
 * next conversion. Blank lines and lines starting with `#` are skipped; repeats keep their first place.
 *
 * The bootstrap encoder refuses an unknown path too, but only the first; checking up front names
 * every missing path (the first few), which is what a user fixing a stale list needs.
 */
import { readFile } from 'node:fs/promises';
import type { DirectoryNode, TreeNode } from '../format/index.js';

/** Missing paths named in the message; the rest are counted. */
const SHOWN_MISSING = 5;

export class PrefetchListError extends Error {
  override readonly name = 'PrefetchListError';
  readonly code = 'EPREFETCHLIST';
}

export function parsePrefetchList(text: string, origin = 'the prefetch list'): string[] {
  const seen = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '' || line.startsWith('#')) return;
    if (!line.startsWith('/')) {
      throw new PrefetchListError(`${origin} line ${i + 1}: ${JSON.stringify(line)} is not an absolute path`);
    }
    seen.add(line);
  });
  return [...seen];
}

/** Reads LIST (`-` = standard input). */
export async function readPrefetchList(source: string, stdin: NodeJS.ReadableStream = process.stdin) {
  const origin = source === '-' ? 'standard input' : source;
  let text: string;
  try {
    text = source === '-' ? await readAll(stdin) : await readFile(source, 'utf8');
  } catch (err) {
    throw new PrefetchListError(`cannot read the prefetch list ${origin}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parsePrefetchList(text, origin);
}

/** Throws PrefetchListError naming the first few paths that are not in the tree. */
export function checkPrefetchPaths(root: DirectoryNode, paths: readonly string[]): void {
  const missing = paths.filter((path) => nodeAtPath(root, path) === undefined);
  if (missing.length === 0) return;
  const shown = missing.slice(0, SHOWN_MISSING).join(', ');
  const more = missing.length > SHOWN_MISSING ? ` (and ${missing.length - SHOWN_MISSING} more)` : '';
  throw new PrefetchListError(
    `${missing.length} of ${paths.length} prefetch paths are not in the image: ${shown}${more}`,
  );
}

/** The node an absolute path names, or undefined (as the encoder resolves it: empty parts ignored). */
export function nodeAtPath(root: DirectoryNode, path: string): TreeNode | undefined {
  let node: TreeNode = root;
  for (const name of path.split('/')) {
    if (name === '') continue;
    const child: TreeNode | undefined = node.kind === 'directory' ? node.children.get(name) : undefined;
    if (child === undefined) return undefined;
    node = child;
  }
  return node;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.isBuffer(part) ? part : Buffer.from(part));
  return Buffer.concat(parts).toString('utf8');
}
