/**
 * Walks a directory into the image tree model. First the metadata (lstat of every entry, xattrs in
 * getfattr batches, symlink targets), then every regular file's content once (hard links share one
 * node, keyed by (dev, ino)), in image order (depth first, names sorted by UTF-8 bytes), through
 * a caller's sink — so the walker knows nothing about chunks.
 *
 * Never follows symlinks and stays on DIR's filesystem: a mount point inside DIR is kept as an empty
 * directory (like `tar --one-file-system`). Names (and symlink targets) must be valid UTF-8, because
 * the image model holds them as strings: anything else is refused with ENONUTF8NAME naming the path.
 */
import type { BigIntStats } from 'node:fs';
import { lstat, readdir, readlink, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  DeviceNode,
  DirectoryNode,
  FileNode,
  InodeAttributes,
  SpecialNode,
  SymlinkNode,
  TreeNode,
} from '../format/index.js';
import { ImageBuildError } from './errors.js';
import { FileReader } from './file-reader.js';
import { XattrReader } from './xattr-reader.js';

/** Receives one file's content (exactly `size` bytes) and returns its chunk list. */
export type FileContentSink = (content: AsyncIterable<Buffer>, size: number) => Promise<Array<number | null>>;

export interface WalkProgress {
  phase: 'scan' | 'content';
  /** Entries found so far (scan) / in total (content). */
  entries: number;
  /** Content bytes passed to the sink so far, and in total (content phase only). */
  bytesDone: number;
  bytesTotal: number;
}

export interface WalkOptions {
  onFileContent: FileContentSink;
  /** Largest single read from a file; the sink gets pieces of at most this size. */
  readSize?: number;
  signal?: AbortSignal;
  onProgress?: (progress: WalkProgress) => void;
}

export interface WalkResult {
  root: DirectoryNode;
  /** Every name in the tree, including directories (not the root). */
  entries: number;
  /** Regular files, counting each hard-linked inode once, and their bytes. */
  files: number;
  fileBytes: number;
  /** Extra names of hard-linked files (names − inodes). */
  hardLinks: number;
  /** Paths of directories on another filesystem, kept empty. */
  mountPoints: string[];
}

const FS_CONCURRENCY = 32;
const DEFAULT_READ_SIZE = 1024 * 1024;

export async function walkDirectory(dir: string, options: WalkOptions): Promise<WalkResult> {
  const rootPath = await realpath(dir);
  const scan = new TreeScan(rootPath, options);
  const root = await scan.run();
  const files = filesInImageOrder(root, rootPath);
  const fileBytes = files.reduce((sum, f) => sum + f.node.size, 0);
  await feedContents(files, fileBytes, scan.entries, options);
  return {
    root,
    entries: scan.entries,
    files: files.length,
    fileBytes,
    hardLinks: scan.regularNames - files.length,
    mountPoints: scan.mountPoints,
  };
}

interface FileEntry {
  path: string;
  node: FileNode;
}

/** The metadata pass: builds the tree with empty chunk lists. */
class TreeScan {
  entries = 0;
  regularNames = 0;
  readonly mountPoints: string[] = [];
  /** Hard-linked inodes by (dev, ino); a promise so two names scanned at once share one node. */
  private readonly inodes = new Map<string, Promise<TreeNode>>();
  private readonly xattrs: XattrReader;
  private readonly fsLimit = concurrencyLimit(FS_CONCURRENCY);
  private rootDev = 0n;

  constructor(
    private readonly dir: string,
    private readonly options: WalkOptions,
  ) {
    this.xattrs = new XattrReader({ signal: options.signal });
  }

  async run(): Promise<DirectoryNode> {
    const stats = await lstat(this.dir, { bigint: true });
    if (!stats.isDirectory()) throw new ImageBuildError('EINVAL', `${this.dir} is not a directory`);
    this.rootDev = stats.dev;
    const root = (await this.nodeFor(this.dir, stats)) as DirectoryNode;
    const scanned = await this.fillDirectory(this.dir, root).then(
      () => null,
      (err: unknown) => ({ err }),
    );
    // Wait for the getfattr processes even when the scan failed; report the scan's error first.
    const xattrs = await this.xattrs.finish().then(
      () => null,
      (err: unknown) => ({ err }),
    );
    const failure = scanned ?? xattrs;
    if (failure) throw failure.err;
    return root;
  }

  private async fillDirectory(path: string, dir: DirectoryNode): Promise<void> {
    this.options.signal?.throwIfAborted();
    const names = await this.fsLimit(() => readdir(path, { encoding: 'buffer' }));
    names.sort(Buffer.compare);
    const entries = await Promise.all(
      names.map(async (raw) => {
        const name = utf8Name(raw, path);
        const childPath = join(path, name);
        const stats = await this.fsLimit(() => lstat(childPath, { bigint: true }));
        return { name, childPath, stats, node: await this.nodeFor(childPath, stats) };
      }),
    );
    const subdirectories: Array<Promise<void>> = [];
    for (const { name, childPath, stats, node } of entries) {
      dir.children.set(name, node);
      if (node.kind === 'file') this.regularNames++;
      if (node.kind !== 'directory') continue;
      if (stats.dev !== this.rootDev) this.mountPoints.push(childPath);
      else subdirectories.push(this.fillDirectory(childPath, node));
    }
    this.entries += entries.length;
    this.options.onProgress?.({ phase: 'scan', entries: this.entries, bytesDone: 0, bytesTotal: 0 });
    await Promise.all(subdirectories);
  }

  /** The node for an lstat result; a second name of a hard-linked inode gets the same object. */
  private nodeFor(path: string, stats: BigIntStats): Promise<TreeNode> {
    if (stats.isDirectory() || stats.nlink < 2n) return this.newNode(path, stats);
    const key = `${stats.dev}:${stats.ino}`;
    let node = this.inodes.get(key);
    if (!node) {
      node = this.newNode(path, stats);
      this.inodes.set(key, node);
    }
    return node;
  }

  private async newNode(path: string, stats: BigIntStats): Promise<TreeNode> {
    const node = await this.nodeOfType(path, stats);
    this.xattrs.request(path, (xattrs) => {
      node.xattrs = xattrs;
    });
    return node;
  }

  private async nodeOfType(path: string, stats: BigIntStats): Promise<TreeNode> {
    const attributes = attributesOf(stats);
    if (stats.isFile())
      return { kind: 'file', ...attributes, size: Number(stats.size), chunks: [] } satisfies FileNode;
    if (stats.isDirectory())
      return { kind: 'directory', ...attributes, children: new Map() } satisfies DirectoryNode;
    if (stats.isSymbolicLink()) {
      const target = await this.fsLimit(() => readlink(path, { encoding: 'buffer' }));
      return { kind: 'symlink', ...attributes, target: utf8Target(target, path) } satisfies SymlinkNode;
    }
    if (stats.isCharacterDevice() || stats.isBlockDevice()) {
      const kind = stats.isCharacterDevice() ? 'char' : 'block';
      return { kind, ...attributes, ...decodeRdev(stats.rdev) } satisfies DeviceNode;
    }
    if (stats.isFIFO()) return { kind: 'fifo', ...attributes } satisfies SpecialNode;
    if (stats.isSocket()) return { kind: 'socket', ...attributes } satisfies SpecialNode;
    throw new ImageBuildError('EINVAL', `${path}: unsupported file type (mode ${stats.mode.toString(8)})`);
  }
}

/** Regular files once each, depth first in sorted name order, with a path to read each from. */
function filesInImageOrder(root: DirectoryNode, rootPath: string): FileEntry[] {
  const files: FileEntry[] = [];
  const seen = new Set<FileNode>();
  const visit = (dir: DirectoryNode, dirPath: string) => {
    for (const [name, node] of dir.children) {
      if (node.kind === 'directory') visit(node, join(dirPath, name));
      else if (node.kind === 'file' && !seen.has(node)) {
        seen.add(node);
        files.push({ path: join(dirPath, name), node });
      }
    }
  };
  visit(root, rootPath);
  return files;
}

function attributesOf(stats: BigIntStats): InodeAttributes {
  // mtimeNs may be negative (before 1970): keep nsec in [0, 1e9).
  const ns = stats.mtimeNs;
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    nsec += 1_000_000_000n;
    sec -= 1n;
  }
  return {
    mode: Number(stats.mode & 0o7777n),
    uid: Number(stats.uid),
    gid: Number(stats.gid),
    mtimeSec: Number(sec),
    mtimeNsec: Number(nsec),
    xattrs: new Map(),
  };
}

/** Linux's dev_t encoding (glibc `gnu_dev_major/minor`): 12+20 bits split across the 64-bit value. */
export function decodeRdev(rdev: bigint): { rdevMajor: number; rdevMinor: number } {
  return {
    rdevMajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
    rdevMinor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)),
  };
}

function utf8Name(raw: Buffer, dir: string): string {
  const name = raw.toString('utf8');
  if (!Buffer.from(name, 'utf8').equals(raw)) {
    throw new ImageBuildError(
      'ENONUTF8NAME',
      `${join(dir, escapeBytes(raw))}: the name is not valid UTF-8; image names must be UTF-8 (rename it)`,
    );
  }
  return name;
}

function utf8Target(raw: Buffer, path: string): string {
  const target = raw.toString('utf8');
  if (!Buffer.from(target, 'utf8').equals(raw)) {
    throw new ImageBuildError(
      'ENONUTF8NAME',
      `${path}: the symlink target ${escapeBytes(raw)} is not valid UTF-8; image symlink targets must be UTF-8`,
    );
  }
  return target;
}

/** Printable ASCII as is, everything else as \xNN. */
function escapeBytes(raw: Buffer): string {
  return [...raw]
    .map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`))
    .join('');
}

/**
 * Streams each file to the sink, one at a time, in image order. The next few files are opened and
 * their first piece read while the sink works, so small files do not cost a round trip each.
 */
async function feedContents(
  files: FileEntry[],
  bytesTotal: number,
  entries: number,
  options: WalkOptions,
): Promise<void> {
  let bytesDone = 0;
  const readSize = options.readSize ?? DEFAULT_READ_SIZE;
  const withContent = files.filter((f) => f.node.size > 0);
  const started: FileReader[] = [];
  let next = 0;
  try {
    for (const { node } of withContent) {
      options.signal?.throwIfAborted();
      while (next < withContent.length && started.length < READ_AHEAD_FILES) {
        const { path, node: ahead } = withContent[next++]!;
        started.push(FileReader.start(path, ahead.size, readSize));
      }
      const reader = started.shift()!;
      try {
        node.chunks = await options.onFileContent(reader.pieces(options.signal), node.size);
      } finally {
        await reader.close();
      }
      bytesDone += node.size;
      options.onProgress?.({ phase: 'content', entries, bytesDone, bytesTotal });
    }
  } finally {
    await Promise.all(started.map((r) => r.close()));
  }
}

/** Files opened (and first piece read) ahead of the one being chunked. */
const READ_AHEAD_FILES = 16;

/** Runs at most `limit` of the given operations at once. */
function concurrencyLimit(limit: number) {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async <T>(operation: () => Promise<T>): Promise<T> => {
    if (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await operation();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}
