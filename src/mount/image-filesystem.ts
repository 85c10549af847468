/**
 * The tree of a decoded bootstrap served as a read-only FUSE filesystem. Metadata (lookup, getattr,
 * readdir, readlink, xattrs, statfs) is answered from memory; file bytes come from a `FileContent`
 * (the ChunkReader: cache, then verified fetches). Content is immutable, so opens keep the page
 * cache and the kernel may cache names and attributes for as long as it likes.
 */
import type {
  Attr,
  ContentMap,
  DirectoryEntry,
  Entry,
  InodeNumber,
  OpenResult,
  ReadOnlyFilesystem,
  RequestContext,
  Statfs,
} from '../fuse/index.js';
import { FuseError } from '../fuse/index.js';
import type { DecodedBootstrap, DirectoryNode, FileNode, TreeNode } from '../image/format/index.js';
import type { Logger } from '../observability/index.js';
import { childNamed, DirectoryListings } from './directory-listing.js';
import { ChunkFetchError, ChunkVerificationError } from './errors.js';
import { InodeTable } from './inode-table.js';
import { planFileRead, type ReadPiece } from './read-plan.js';

/** Where file bytes come from; rejects when a chunk cannot be fetched or fails verification. */
export interface FileContent {
  read(pieces: readonly ReadPiece[], signal: AbortSignal): Promise<Buffer>;
  /** Where the whole file is in local files, once all of it is (see ChunkReader.contentMap). */
  contentMap?(file: FileNode): ContentMap | undefined;
}

/** Sees what readers do: the access trace (first open/read of a file) and read latency metrics. */
export interface FilesystemObserver {
  accessed(node: FileNode): void;
  readDone(seconds: number, bytes: number, ok: boolean): void;
}

const BLOCK = 4096;
const NAME_MAX = 255;

export class ImageFilesystem implements ReadOnlyFilesystem {
  private readonly inodes: InodeTable;
  private readonly listings = new DirectoryListings();
  private readonly chunkSize: number;
  private readonly totalBlocks: number;

  constructor(
    decoded: DecodedBootstrap,
    private readonly content: FileContent,
    private readonly logger: Logger,
    private readonly observer?: FilesystemObserver,
  ) {
    this.inodes = new InodeTable(decoded);
    this.chunkSize = decoded.image.chunkSize;
    this.totalBlocks =
      decoded.superblock.blocks +
      decoded.image.blobs.reduce((sum, blob) => sum + blob.uncompressedSize / BLOCK, 0);
  }

  async lookup(parent: InodeNumber, name: Buffer): Promise<Entry> {
    const child = childNamed(this.directory(parent), name);
    if (child === undefined) throw new FuseError('ENOENT');
    const ino = this.inodes.idOfNode(child);
    return { ino, attr: this.inodes.attributes(ino) };
  }

  async getattr(ino: InodeNumber): Promise<Attr> {
    this.node(ino);
    return this.inodes.attributes(ino as number);
  }

  async readlink(ino: InodeNumber): Promise<Buffer | string> {
    const node = this.node(ino);
    if (node.kind !== 'symlink') throw new FuseError('EINVAL');
    return node.target;
  }

  async open(ino: InodeNumber): Promise<OpenResult> {
    const node = this.node(ino);
    if (node.kind === 'directory') throw new FuseError('EISDIR');
    if (node.kind !== 'file') return { keepCache: true };
    this.observer?.accessed(node);
    // A fully cached file is read by the FUSE reader threads straight from the cache file.
    const contentMap = this.content.contentMap?.(node);
    return contentMap ? { keepCache: true, contentMap } : { keepCache: true };
  }

  async read(
    ino: InodeNumber,
    _fh: number,
    offset: number,
    size: number,
    ctx: RequestContext,
  ): Promise<Buffer> {
    const file = this.file(ino);
    const pieces = planFileRead(file, this.chunkSize, offset, size);
    if (this.observer === undefined) return this.readPieces(ino, offset, size, pieces, ctx);
    this.observer.accessed(file);
    const started = performance.now();
    try {
      const data = await this.readPieces(ino, offset, size, pieces, ctx);
      this.observer.readDone((performance.now() - started) / 1000, data.length, true);
      return data;
    } catch (err) {
      this.observer.readDone((performance.now() - started) / 1000, 0, false);
      throw err;
    }
  }

  private async readPieces(
    ino: InodeNumber,
    offset: number,
    size: number,
    pieces: readonly ReadPiece[],
    ctx: RequestContext,
  ): Promise<Buffer> {
    try {
      return await this.content.read(pieces, ctx.signal);
    } catch (err) {
      if (ctx.signal.aborted || err instanceof FuseError) throw err;
      // Fetch and verification failures are logged by the fetcher, once per fetch, not per waiting reader.
      const logged = err instanceof ChunkFetchError || err instanceof ChunkVerificationError;
      if (!logged) this.logger.error({ err, ino, offset, size }, 'read failed');
      throw new FuseError('EIO', (err as Error).message);
    }
  }

  async opendir(ino: InodeNumber): Promise<{ cacheDir: boolean }> {
    this.directory(ino);
    return { cacheDir: true };
  }

  *readdir(ino: InodeNumber, _fh: number, offset: number | bigint): Generator<DirectoryEntry> {
    const dir = this.directory(ino);
    const entries = this.listings.entries(dir, this.inodes.parentOf(dir));
    for (let position = Number(offset); position < entries.length; position++) {
      const { name, node } = entries[position]!;
      const id = this.inodes.idOfNode(node);
      const attr = this.inodes.attributes(id);
      // With plain READDIR too: attr.ino (the nid) becomes d_ino, which differs from the id for the root.
      yield { name, ino: id, mode: attr.mode, offset: position + 1, attr };
    }
  }

  async statfs(): Promise<Statfs> {
    return {
      blocks: this.totalBlocks,
      bfree: 0,
      bavail: 0,
      files: this.inodes.size,
      ffree: 0,
      bsize: BLOCK,
      frsize: BLOCK,
      namelen: NAME_MAX,
    };
  }

  async getxattr(ino: InodeNumber, name: Buffer): Promise<Buffer> {
    const value = this.node(ino).xattrs.get(name.toString('utf8'));
    if (value === undefined) throw new FuseError('ENODATA');
    return value;
  }

  async listxattr(ino: InodeNumber): Promise<string[]> {
    return [...this.node(ino).xattrs.keys()];
  }

  private node(ino: InodeNumber): TreeNode {
    const node = this.inodes.node(ino);
    if (node === undefined) throw new FuseError('ENOENT');
    return node;
  }

  private directory(ino: InodeNumber): DirectoryNode {
    const node = this.node(ino);
    if (node.kind !== 'directory') throw new FuseError('ENOTDIR');
    return node;
  }

  private file(ino: InodeNumber): FileNode {
    const node = this.node(ino);
    if (node.kind === 'directory') throw new FuseError('EISDIR');
    if (node.kind !== 'file') throw new FuseError('EINVAL');
    return node;
  }
}
