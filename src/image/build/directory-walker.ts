/**
 * Walks a directory into the image tree model, and streams every regular file's content once (hard
 * links share one node, keyed by (dev, ino)) through a caller's sink, one file at a time in image
 * order (depth first, names sorted by UTF-8 bytes) — so the walker knows nothing about chunks.
 *
 * The file system work runs on a worker thread (tree-reader-worker.ts) that sends entries and file
 * bytes in that order; this side assembles the tree, has getfattr read the xattrs, and feeds the
 * sink, consuming file bytes no faster than the sink takes them.
 *
 * Never follows symlinks and stays on DIR's filesystem: a mount point inside DIR is kept as an empty
 * directory (like `tar --one-file-system`). Names and symlink targets must be valid UTF-8, because
 * the image model holds them as strings: anything else is refused with ENONUTF8NAME naming the path.
 */
import { realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { AsyncQueue, siblingModule, startWorker } from '../../async/index.js';
import type { DirectoryNode, FileNode, TreeNode } from '../format/index.js';
import { ImageBuildError, type ImageBuildErrorCode } from './errors.js';
import { rememberDigests } from './piece-digests.js';
import type { DataRecord, EntryRecord, TreeReaderInput, TreeRecord } from './tree-reader-protocol.js';
import { XattrReader } from './xattr-reader.js';

/**
 * Receives one file's content (`size` bytes, or one more if the file grew) and returns its chunk list.
 * It must read the content to the end or throw: unread bytes hold up the reader.
 */
export type FileContentSink = (content: AsyncIterable<Buffer>, size: number) => Promise<Array<number | null>>;

export interface WalkProgress {
  /** Entries and regular files (each inode once) found so far, and the file bytes the sink took. */
  entries: number;
  files: number;
  bytesDone: number;
}

export interface WalkOptions {
  onFileContent: FileContentSink;
  /** Largest piece of content the sink gets. */
  readSize?: number;
  /**
   * Have the reader compute the sha256 of every `digestSize` slice of each piece (see
   * piece-digests.ts); `readSize` should be a multiple of it.
   */
  digestSize?: number;
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

const DEFAULT_READ_SIZE = 1024 * 1024;
/** ImageBuildError codes the tree reader reports (others are errno codes). */
const READER_ERROR_CODES = new Set(['ENONUTF8NAME', 'EINVAL']);
/** File bytes read ahead of the sink (bounds memory; keeps the reader busy while the sink works). */
const READ_AHEAD_BYTES = 64 * 1024 * 1024;
const NOTIFY_STEP_BYTES = 4 * 1024 * 1024;

export async function walkDirectory(dir: string, options: WalkOptions): Promise<WalkResult> {
  const root = await realpath(dir);
  if (!(await stat(root)).isDirectory()) throw new ImageBuildError('EINVAL', `${dir} is not a directory`);
  options.signal?.throwIfAborted();
  return new TreeAssembly(root, options).run();
}

/** One file whose bytes are arriving: its pieces queue up until the sink takes them. */
interface IncomingFile {
  node: FileNode;
  pieces: AsyncQueue<Buffer>;
}

class TreeAssembly {
  private readonly nodes: TreeNode[] = [];
  private readonly directoryPaths = new Map<number, string>();
  private readonly xattrs: XattrReader;
  /** Every node with the path its xattrs were requested for. */
  private readonly xattrTargets: Array<[string, TreeNode]> = [];
  private readonly consumed = new SharedArrayBuffer(8);
  private readonly consumedView = new BigInt64Array(this.consumed);
  private worker: Worker | null = null;
  private incoming: IncomingFile | null = null;
  /** Sink calls, chained: one file at a time, in image order. */
  private sinking: Promise<void> = Promise.resolve();
  private finished = false;
  private settle!: { resolve: () => void; reject: (err: unknown) => void };
  private readonly result: Omit<WalkResult, 'root'> = {
    entries: 0,
    files: 0,
    fileBytes: 0,
    hardLinks: 0,
    mountPoints: [],
  };
  private bytesDone = 0;
  /** File bytes the sink took that the reader was not told about yet. */
  private unreported = 0;

  constructor(
    private readonly rootPath: string,
    private readonly options: WalkOptions,
  ) {
    this.xattrs = new XattrReader(options.signal);
  }

  async run(): Promise<WalkResult> {
    const read = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    const onAbort = () => this.fail(this.options.signal?.reason);
    this.options.signal?.addEventListener('abort', onAbort, { once: true });
    this.startReader();
    try {
      await read;
      await this.sinking;
    } catch (err) {
      // Let the sink and getfattr stop before reporting, so nothing runs on after the walk failed.
      this.incoming?.pieces.close(err);
      this.xattrs.stop();
      await this.sinking.catch(() => undefined);
      throw err;
    } finally {
      this.options.signal?.removeEventListener('abort', onAbort);
      await this.worker?.terminate();
    }
    const xattrs = await this.xattrs.finish();
    for (const [path, node] of this.xattrTargets) node.xattrs = xattrs.get(path) ?? node.xattrs;
    return { root: this.nodes[0] as DirectoryNode, ...this.result };
  }

  private startReader(): void {
    const input: TreeReaderInput = {
      root: this.rootPath,
      readSize: this.options.readSize ?? DEFAULT_READ_SIZE,
      budgetBytes: READ_AHEAD_BYTES,
      consumed: this.consumed,
      digestSize: this.options.digestSize,
    };
    const worker = startWorker(siblingModule(import.meta.url, 'tree-reader-worker'), { workerData: input });
    this.worker = worker;
    worker.on('message', (records: TreeRecord[]) => {
      try {
        for (const record of records) this.accept(record);
      } catch (err) {
        this.fail(err);
      }
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => {
      if (!this.finished) this.fail(new Error(`the tree reader stopped (exit code ${code}) before the end`));
    });
  }

  private fail(err: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.settle.reject(err);
  }

  private accept(record: TreeRecord): void {
    if (this.finished) return;
    switch (record.type) {
      case 'entry':
        this.addEntry(record);
        break;
      case 'link':
        this.addLink(record.parent, record.name, record.target);
        break;
      case 'data':
        this.addData(record);
        break;
      case 'done':
        this.finished = true;
        this.settle.resolve();
        break;
      case 'error':
        throw this.readerError(record.code, record.message);
    }
  }

  private readerError(code: string, message: string): Error {
    if (READER_ERROR_CODES.has(code)) return new ImageBuildError(code as ImageBuildErrorCode, message);
    return Object.assign(new Error(message), { code });
  }

  private addEntry(record: EntryRecord): void {
    const node = nodeOf(record);
    this.nodes[record.id] = node;
    const path =
      record.parent < 0 ? this.rootPath : join(this.directoryPaths.get(record.parent)!, record.name);
    if (record.parent >= 0) {
      this.directoryOf(record.parent).children.set(record.name, node);
      this.result.entries++;
    }
    if (node.kind === 'directory') this.directoryPaths.set(record.id, path);
    if (node.kind === 'file') {
      this.result.files++;
      this.result.fileBytes += node.size;
    }
    if (record.mountPoint) this.result.mountPoints.push(path);
    this.xattrs.request(path);
    this.xattrTargets.push([path, node]);
    if (record.id % 1024 === 0) this.reportProgress();
  }

  private addLink(parent: number, name: string, target: number): void {
    this.directoryOf(parent).children.set(name, this.nodes[target]!);
    this.result.entries++;
    this.result.hardLinks++;
  }

  private directoryOf(id: number): DirectoryNode {
    const dir = this.nodes[id];
    if (dir?.kind !== 'directory') throw new Error(`tree reader: entry ${id} is not a directory`);
    return dir;
  }

  private addData({ id, bytes, end, digests }: DataRecord): void {
    if (this.incoming?.node !== this.nodes[id]) this.startFile(this.nodes[id] as FileNode);
    const piece = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (digests && this.options.digestSize) {
      rememberDigests(
        piece,
        this.options.digestSize,
        Buffer.from(digests.buffer, digests.byteOffset, digests.byteLength),
      );
    }
    const { pieces } = this.incoming!;
    pieces.push(piece);
    if (end) {
      pieces.close();
      this.incoming = null;
    }
  }

  /** Queues the sink call for the next file; it starts once the previous file's call is done. */
  private startFile(node: FileNode): void {
    const pieces = new AsyncQueue<Buffer>();
    this.incoming = { node, pieces };
    this.sinking = this.sinking.then(async () => {
      node.chunks = await this.options.onFileContent(this.consumedAsTaken(pieces), node.size);
      this.reportProgress();
    });
    // A sink failure ends the walk at once (the reader must not keep going).
    this.sinking.catch((err: unknown) => this.fail(err));
  }

  /** Pieces as the sink takes them, telling the reader how far the sink got. */
  private async *consumedAsTaken(pieces: AsyncQueue<Buffer>): AsyncGenerator<Buffer> {
    for await (const piece of pieces) {
      this.options.signal?.throwIfAborted();
      // Read before yielding: the sink may move the piece's memory to another thread.
      const length = piece.length;
      yield piece;
      this.bytesDone += length;
      this.unreported += length;
      // Waking the reader costs a syscall: publish progress in steps, far below the read-ahead budget.
      if (this.unreported >= NOTIFY_STEP_BYTES) this.reportConsumed();
    }
  }

  private reportConsumed(): void {
    Atomics.add(this.consumedView, 0, BigInt(this.unreported));
    Atomics.notify(this.consumedView, 0);
    this.unreported = 0;
  }

  private reportProgress(): void {
    const { entries, files } = this.result;
    this.options.onProgress?.({ entries, files, bytesDone: this.bytesDone });
  }
}

function nodeOf(record: EntryRecord): TreeNode {
  const attributes = {
    mode: record.mode,
    uid: record.uid,
    gid: record.gid,
    mtimeSec: record.mtimeSec,
    mtimeNsec: record.mtimeNsec,
    xattrs: new Map<string, Buffer>(),
  };
  switch (record.kind) {
    case 'file':
      return { kind: 'file', ...attributes, size: record.size, chunks: [] };
    case 'directory':
      return { kind: 'directory', ...attributes, children: new Map() };
    case 'symlink':
      return { kind: 'symlink', ...attributes, target: record.target ?? '' };
    case 'char':
    case 'block':
      return { kind: record.kind, ...attributes, rdevMajor: record.rdevMajor, rdevMinor: record.rdevMinor };
    case 'fifo':
    case 'socket':
      return { kind: record.kind, ...attributes };
  }
}
