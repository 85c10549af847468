/**
 * An in-memory read-only filesystem for src/fuse tests and benches: a tree built in code, with
 * counters of what the kernel asked and hooks to make a file's reads slow or failing.
 */
import { constants } from 'node:fs';
import {
  type Attr,
  type DirectoryEntry,
  type Entry,
  FuseError,
  type InodeNumber,
  type OpenResult,
  type ReadOnlyFilesystem,
  type RequestContext,
  type Statfs,
} from '../../src/fuse/index.js';

const { S_IFDIR, S_IFREG, S_IFLNK } = constants;
export const MTIME = { sec: 1_700_000_000, nsec: 123_456_789 };

export type ReadHook = (offset: number, size: number, ctx: RequestContext) => Promise<Buffer>;

interface MemoryNode {
  ino: number;
  mode: number;
  nlink: number;
  rdev: number;
  uid: number;
  gid: number;
  data: Buffer;
  /** Directories: parent and names in listing order. */
  parent: number;
  children: Map<string, number>;
  xattrs: Map<string, Buffer>;
  open: OpenResult;
  readHook?: ReadHook;
}

export interface FileOptions {
  mode?: number;
  uid?: number;
  gid?: number;
  xattrs?: Record<string, Buffer | string>;
  open?: OpenResult;
}

export class MemoryFilesystem implements ReadOnlyFilesystem {
  readonly counters = { lookup: 0, read: 0, readdir: 0, readdirplus: 0, forget: 0, open: 0, release: 0 };
  /** Largest READ size asked for (shows what max_pages / readahead produce). */
  largestRead = 0;
  /** Reads whose signal was aborted (interrupted) while the filesystem was still working. */
  abortedReads = 0;
  private readonly nodes = new Map<number, MemoryNode>();
  private nextIno = 2;

  constructor() {
    this.nodes.set(1, this.node(1, S_IFDIR | 0o755, 1));
  }

  addDir(path: string, mode = 0o755): number {
    return this.add(path, S_IFDIR | mode).ino;
  }

  addFile(path: string, data: Buffer, options: FileOptions = {}): number {
    const node = this.add(path, S_IFREG | (options.mode ?? 0o644));
    node.data = data;
    node.uid = options.uid ?? 0;
    node.gid = options.gid ?? 0;
    node.open = options.open ?? {};
    for (const [name, value] of Object.entries(options.xattrs ?? {}))
      node.xattrs.set(name, Buffer.from(value));
    return node.ino;
  }

  addSymlink(path: string, target: string): number {
    const node = this.add(path, S_IFLNK | 0o777);
    node.data = Buffer.from(target);
    return node.ino;
  }

  /** A second name for an existing inode (same node id, same st_ino). */
  addHardLink(path: string, existing: string): number {
    const node = this.resolve(existing);
    const { parent, name } = this.parentOf(path);
    parent.children.set(name, node.ino);
    node.nlink++;
    return node.ino;
  }

  /** FIFOs, sockets, device nodes: `mode` includes the type bits. */
  addSpecial(path: string, mode: number, rdev = 0): number {
    const node = this.add(path, mode);
    node.rdev = rdev;
    return node.ino;
  }

  setReadHook(path: string, hook: ReadHook): void {
    this.resolve(path).readHook = hook;
  }

  inodeOf(path: string): number {
    return this.resolve(path).ino;
  }

  async lookup(parent: InodeNumber, name: Buffer): Promise<Entry> {
    this.counters.lookup++;
    const ino = this.get(parent).children.get(name.toString());
    if (ino === undefined) throw new FuseError('ENOENT');
    return { ino, attr: this.attrOf(this.get(ino)) };
  }

  async getattr(ino: InodeNumber): Promise<Attr> {
    return this.attrOf(this.get(ino));
  }

  async readlink(ino: InodeNumber): Promise<Buffer> {
    const node = this.get(ino);
    if ((node.mode & constants.S_IFMT) !== S_IFLNK) throw new FuseError('EINVAL');
    return node.data;
  }

  async open(ino: InodeNumber): Promise<OpenResult> {
    this.counters.open++;
    return { fh: 7, ...this.get(ino).open };
  }

  async read(
    ino: InodeNumber,
    fh: number,
    offset: number,
    size: number,
    ctx: RequestContext,
  ): Promise<Buffer> {
    this.counters.read++;
    this.largestRead = Math.max(this.largestRead, size);
    if (fh !== 7) throw new Error(`unexpected file handle ${fh}`);
    const node = this.get(ino);
    if (!node.readHook) return node.data.subarray(offset, offset + size);
    try {
      return await node.readHook(offset, size, ctx);
    } finally {
      if (ctx.signal.aborted) this.abortedReads++;
    }
  }

  release(): void {
    this.counters.release++;
  }

  *readdir(ino: InodeNumber, _fh: number, offset: number | bigint, plus: boolean): Iterable<DirectoryEntry> {
    this.counters[plus ? 'readdirplus' : 'readdir']++;
    const dir = this.get(ino);
    const names: Array<[string, number]> = [['.', dir.ino], ['..', dir.parent], ...dir.children];
    for (let i = Number(offset); i < names.length; i++) {
      const [name, child] = names[i]!;
      const node = this.get(child);
      yield { name, ino: child, mode: node.mode, offset: i + 1, attr: plus ? this.attrOf(node) : undefined };
    }
  }

  async statfs(): Promise<Statfs> {
    return {
      blocks: 25_600,
      bfree: 0,
      bavail: 0,
      files: this.nodes.size,
      ffree: 0,
      bsize: 4096,
      namelen: 255,
    };
  }

  async getxattr(ino: InodeNumber, name: Buffer): Promise<Buffer> {
    const value = this.get(ino).xattrs.get(name.toString());
    if (value === undefined) throw new FuseError('ENODATA');
    return value;
  }

  async listxattr(ino: InodeNumber): Promise<string[]> {
    return [...this.get(ino).xattrs.keys()];
  }

  forget(_ino: InodeNumber, nlookup: number): void {
    this.counters.forget += nlookup;
  }

  private attrOf(node: MemoryNode): Attr {
    return {
      mode: node.mode,
      size: node.data.length,
      nlink: node.nlink,
      uid: node.uid,
      gid: node.gid,
      rdev: node.rdev,
      atime: MTIME,
      mtime: MTIME,
      ctime: MTIME,
    };
  }

  private node(ino: number, mode: number, parent: number): MemoryNode {
    const isDir = (mode & constants.S_IFMT) === S_IFDIR;
    return {
      ino,
      mode,
      nlink: isDir ? 2 : 1,
      rdev: 0,
      uid: 0,
      gid: 0,
      data: Buffer.alloc(0),
      parent,
      children: new Map(),
      xattrs: new Map(),
      open: {},
    };
  }

  private add(path: string, mode: number): MemoryNode {
    const { parent, name } = this.parentOf(path);
    if (parent.children.has(name)) throw new Error(`${path} exists`);
    const node = this.node(this.nextIno++, mode, parent.ino);
    this.nodes.set(node.ino, node);
    parent.children.set(name, node.ino);
    if ((mode & constants.S_IFMT) === S_IFDIR) parent.nlink++;
    return node;
  }

  private parentOf(path: string): { parent: MemoryNode; name: string } {
    const parts = path.split('/').filter(Boolean);
    const name = parts.pop();
    if (!name) throw new Error(`bad path ${path}`);
    return { parent: this.resolve(parts.join('/')), name };
  }

  private resolve(path: string): MemoryNode {
    let node = this.get(1);
    for (const part of path.split('/').filter(Boolean)) {
      const child = node.children.get(part);
      if (child === undefined) throw new Error(`no ${path}`);
      node = this.get(child);
    }
    return node;
  }

  private get(ino: InodeNumber): MemoryNode {
    const node = this.nodes.get(Number(ino));
    if (!node) throw new FuseError('ENOENT', `no inode ${ino}`);
    return node;
  }
}

/** Deterministic pseudo-random bytes (xorshift32): a range read from the wrong offset never matches. */
export function patternBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  for (let i = length & ~3; i < length; i++) out[i] = i & 0xff;
  return out;
}
