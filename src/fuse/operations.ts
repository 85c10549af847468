/**
 * The answer to each FUSE opcode: argument decoding, the filesystem call, reply encoding. What a
 * read-only server answers without asking the filesystem (EROFS, ENOSYS) is decided here too.
 */

import { constants } from 'node:fs';
import type { Logger } from '../observability/index.js';
import { Opcode, OpenFlag } from './abi.js';
import { type ContentMap, validContentMap } from './content-map.js';
import { DirentPacker } from './dirent-packer.js';
import { errnoNumber, FuseError } from './errors.js';
import {
  type CacheTimeouts,
  encodeAttrOut,
  encodeEntryOut,
  encodeNegativeEntryOut,
  encodeOpenOut,
  encodeStatfsOut,
  encodeXattrNames,
  encodeXattrReply,
} from './reply-encoder.js';
import {
  decodeAccess,
  decodeGetxattr,
  decodeListxattr,
  decodeName,
  decodeOpen,
  decodeRead,
  decodeRelease,
  type Request,
} from './request-decoder.js';
import type { DirectoryEntry, InodeNumber, ReadOnlyFilesystem, RequestContext } from './types.js';

export interface Operation {
  run(request: Request, ctx: RequestContext): Promise<Buffer[]>;
  /**
   * Answer EINTR the moment the kernel interrupts, without waiting for the filesystem: true for
   * operations that hand out nothing (a late result is dropped). LOOKUP, OPEN, OPENDIR and
   * READDIRPLUS wait for the filesystem, so that a reference it created reaches the kernel.
   */
  answersInterruptAtOnce: boolean;
}

export interface OperationSettings {
  timeouts: CacheTimeouts;
  /** Seconds a failed LOOKUP (ENOENT) is cached by the kernel; 0 = not cached. */
  negativeTimeout: number;
  /** Hands a node's content map to the reader threads (before the OPEN is answered). */
  publishContentMap?: (nodeid: number, content: ContentMap) => void;
}

/** Opcodes that would modify the tree: refused with EROFS whether or not the mount is `ro`. */
const WRITE_OPCODES: ReadonlySet<number> = new Set([
  Opcode.SETATTR,
  Opcode.SYMLINK,
  Opcode.MKNOD,
  Opcode.MKDIR,
  Opcode.UNLINK,
  Opcode.RMDIR,
  Opcode.RENAME,
  Opcode.LINK,
  Opcode.WRITE,
  Opcode.SETXATTR,
  Opcode.REMOVEXATTR,
  Opcode.CREATE,
  Opcode.FALLOCATE,
  Opcode.RENAME2,
  Opcode.COPY_FILE_RANGE,
  Opcode.TMPFILE,
]);

const EROFS = errnoNumber('EROFS');
const ENOSYS = errnoNumber('ENOSYS');
const EBADF = errnoNumber('EBADF');
const ENOENT = errnoNumber('ENOENT');

const NOTHING: Buffer[] = [];
/** Not in Node's fs.constants; the same on every Linux architecture. */
const O_ACCMODE = 0o3;

/** fh values come from the filesystem as numbers; a u64 beyond 2^53 cannot be one of them. */
function handle(fh: number | bigint): number {
  if (typeof fh === 'bigint') throw new FuseError(EBADF);
  return fh;
}

export class FilesystemOperations {
  private readonly table = new Map<number, Operation>();
  /** Node ids whose content map went to the reader threads (one map per node id and session). */
  private readonly mapped = new Set<number>();

  constructor(
    private readonly fs: ReadOnlyFilesystem,
    private readonly settings: OperationSettings,
    private readonly logger: Logger,
  ) {
    const at = (opcode: number, answersInterruptAtOnce: boolean, run: Operation['run']) =>
      this.table.set(opcode, { run, answersInterruptAtOnce });
    at(Opcode.LOOKUP, false, (r, ctx) => this.lookup(r, ctx));
    at(Opcode.GETATTR, true, (r, ctx) => this.getattr(r, ctx));
    at(Opcode.READLINK, true, (r, ctx) => this.readlink(r, ctx));
    at(Opcode.OPEN, false, (r, ctx) => this.open(r, ctx));
    at(Opcode.READ, true, (r, ctx) => this.read(r, ctx));
    at(Opcode.RELEASE, false, (r) => this.release(r));
    at(Opcode.OPENDIR, false, (r, ctx) => this.opendir(r, ctx));
    at(Opcode.READDIR, true, (r, ctx) => this.readdir(r, ctx, false));
    at(Opcode.READDIRPLUS, false, (r, ctx) => this.readdir(r, ctx, true));
    at(Opcode.RELEASEDIR, false, (r) => this.releasedir(r));
    at(Opcode.STATFS, true, (r, ctx) => this.statfs(r, ctx));
    at(Opcode.GETXATTR, true, (r, ctx) => this.getxattr(r, ctx));
    at(Opcode.LISTXATTR, true, (r, ctx) => this.listxattr(r, ctx));
    at(Opcode.ACCESS, true, (r, ctx) => this.access(r, ctx));
  }

  /**
   * The operation for an opcode, or the errno answered without the filesystem: EROFS for anything
   * that writes; ENOSYS for the rest, which for FLUSH, FSYNC, FSYNCDIR (nothing to write back),
   * GETXATTR/LISTXATTR of a filesystem without xattrs, LSEEK, POLL, locks, BMAP and IOCTL makes the
   * kernel stop asking and do the generic thing itself.
   */
  resolve(opcode: number): Operation | number {
    if (WRITE_OPCODES.has(opcode)) return EROFS;
    if (opcode === Opcode.GETXATTR && !this.fs.getxattr) return ENOSYS;
    if (opcode === Opcode.LISTXATTR && !this.fs.listxattr) return ENOSYS;
    if (opcode === Opcode.READLINK && !this.fs.readlink) return ENOSYS;
    return this.table.get(opcode) ?? ENOSYS;
  }

  forget(ino: InodeNumber, nlookup: number | bigint): void {
    if (!this.fs.forget) return;
    try {
      this.fs.forget(ino, Number(nlookup));
    } catch (err) {
      this.logger.error({ err, ino: String(ino) }, 'fuse forget failed');
    }
  }

  private async lookup({ header, body }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const name = decodeName(body);
    try {
      const entry = await this.fs.lookup(header.nodeid, name, ctx);
      return [encodeEntryOut(entry, this.settings.timeouts)];
    } catch (err) {
      const negative = this.settings.negativeTimeout;
      if (negative > 0 && err instanceof FuseError && err.errno === ENOENT) {
        return [encodeNegativeEntryOut(negative)];
      }
      throw err;
    }
  }

  private async getattr({ header }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const attr = await this.fs.getattr(header.nodeid, ctx);
    return [encodeAttrOut(attr, header.nodeid, this.settings.timeouts.attr)];
  }

  private async readlink({ header }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const target = await this.fs.readlink!(header.nodeid, ctx);
    return [Buffer.from(target)];
  }

  private async open({ header, body }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const flags = decodeOpen(body);
    // O_TRUNC never arrives (without ATOMIC_O_TRUNC the kernel truncates through SETATTR → EROFS).
    if ((flags & O_ACCMODE) !== constants.O_RDONLY) throw new FuseError(EROFS);
    const opened = (await this.fs.open?.(header.nodeid, flags, ctx)) ?? {};
    let openFlags = 0;
    if (opened.keepCache !== false) openFlags |= OpenFlag.KEEP_CACHE;
    if (opened.directIo) openFlags |= OpenFlag.DIRECT_IO;
    const nodeid = header.nodeid;
    const publish = this.settings.publishContentMap;
    if (opened.contentMap && publish && typeof nodeid === 'number' && !this.mapped.has(nodeid)) {
      if (validContentMap(opened.contentMap)) {
        this.mapped.add(nodeid);
        publish(nodeid, opened.contentMap);
      } else {
        this.logger.warn({ ino: nodeid }, 'fuse open: invalid content map ignored');
      }
    }
    return [encodeOpenOut(opened.fh ?? 0, openFlags)];
  }

  private async read({ header, body }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const { fh, offset, size } = decodeRead(body);
    // Offsets beyond 2^53 are past the end of any file we can describe.
    if (size === 0 || typeof offset === 'bigint') return NOTHING;
    const data = await this.fs.read(header.nodeid, handle(fh), offset, size, ctx);
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    // A longer reply would be refused by the kernel (and the caller would get EIO).
    return [bytes.length > size ? bytes.subarray(0, size) : bytes];
  }

  private async release({ header, body }: Request): Promise<Buffer[]> {
    const { fh } = decodeRelease(body);
    await this.fs.release?.(header.nodeid, handle(fh));
    return NOTHING;
  }

  private async opendir({ header, body }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const flags = decodeOpen(body);
    const opened = (await this.fs.opendir?.(header.nodeid, flags, ctx)) ?? {};
    // CACHE_DIR keeps the listing in the page cache; KEEP_CACHE keeps it across opendir().
    const openFlags = opened.cacheDir === false ? 0 : OpenFlag.CACHE_DIR | OpenFlag.KEEP_CACHE;
    return [encodeOpenOut(opened.fh ?? 0, openFlags)];
  }

  private async readdir({ header, body }: Request, ctx: RequestContext, plus: boolean): Promise<Buffer[]> {
    const { fh, offset, size } = decodeRead(body);
    const packer = new DirentPacker(size, plus, this.settings.timeouts);
    const entries = this.fs.readdir(header.nodeid, handle(fh), offset, plus, ctx);
    try {
      for await (const entry of entries) {
        if (ctx.signal.aborted) break;
        const added = packer.add(entry);
        if (added === 'full') {
          this.giveBackUnsent(entry, plus);
          break;
        }
        if (added === 'invalid-name') this.skipInvalidName(header.nodeid, entry, plus);
      }
    } catch (err) {
      // Entries already packed may be READDIRPLUS lookups: deliver them; the error comes next call.
      if (packer.count === 0) throw err;
      this.logger.warn({ err, ino: String(header.nodeid) }, 'fuse readdir failed part way');
    }
    if (packer.count === 0 && ctx.signal.aborted) throw ctx.signal.reason;
    return [packer.finish()];
  }

  /** A READDIRPLUS entry pulled from the filesystem (a lookup) that did not fit in the reply. */
  private giveBackUnsent(entry: DirectoryEntry, plus: boolean): void {
    if (plus && entry.attr && !isDotName(entry.name)) this.forget(entry.ino, 1);
  }

  private skipInvalidName(dir: InodeNumber, entry: DirectoryEntry, plus: boolean): void {
    this.logger.warn({ ino: String(dir), name: String(entry.name) }, 'fuse readdir skipped an invalid name');
    this.giveBackUnsent(entry, plus);
  }

  private async releasedir({ header, body }: Request): Promise<Buffer[]> {
    const { fh } = decodeRelease(body);
    await this.fs.releasedir?.(header.nodeid, handle(fh));
    return NOTHING;
  }

  private async statfs({ header }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const st = (await this.fs.statfs?.(header.nodeid, ctx)) ?? { blocks: 0, files: 0 };
    return [encodeStatfsOut(st)];
  }

  private async getxattr({ header, body }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const { size, name } = decodeGetxattr(body);
    const value = await this.fs.getxattr!(header.nodeid, name, ctx);
    return [encodeXattrReply(value, size)];
  }

  private async listxattr({ header, body }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const { size } = decodeListxattr(body);
    const names = await this.fs.listxattr!(header.nodeid, ctx);
    return [encodeXattrReply(encodeXattrNames(names), size)];
  }

  /**
   * Only sent without `default_permissions`. Write access is EROFS; the rest is allowed unless the
   * filesystem says otherwise. Never ENOSYS: the kernel would stop asking and W_OK would pass.
   */
  private async access({ header, body }: Request, ctx: RequestContext): Promise<Buffer[]> {
    const mask = decodeAccess(body);
    if (mask & constants.W_OK) throw new FuseError(EROFS);
    await this.fs.access?.(header.nodeid, mask, ctx);
    return NOTHING;
  }
}

function isDotName(name: Buffer | string): boolean {
  const text = typeof name === 'string' ? name : name.length <= 2 ? name.toString('latin1') : '';
  return text === '.' || text === '..';
}
