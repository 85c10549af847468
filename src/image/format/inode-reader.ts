/**
 * Reader, second part: decodes one inode (by nid) into a tree node, with its xattrs, its chunk
 * list (chunk indexes mapped back to chunk-table entries) or its inline/plain data. Every byte the
 * inodes claim is charged against a budget of the bootstrap's size, so overlapping or repeated
 * regions cannot make decoding cost more than one pass over the buffer.
 */

import {
  CHUNK_INDEX,
  CHUNK_INDEX_SIZE,
  chunkFormatOf,
  decodeDevice,
  EROFS_BLOCK_SIZE,
  EXTENDED_INODE_SIZE,
  INODE,
  INODE_FORMAT_EXTENDED,
  INODE_FORMAT_KNOWN_BITS,
  INODE_SLOT_SIZE,
  LAYOUT_CHUNK_BASED,
  LAYOUT_FLAT_INLINE,
  LAYOUT_FLAT_PLAIN,
  MAX_SYMLINK_LENGTH,
  NULL_ADDR,
  PERMISSION_BITS,
} from './erofs-layout.js';
import { readU64AsNumber } from './extension-header.js';
import { check, checkRange, fail } from './format-check.js';
import { type BootstrapHeader, chunkKey } from './header-reader.js';
import { kindOfMode, type NodeKind } from './node-kinds.js';
import { decodeStrictUtf8 } from './strict-utf8.js';
import { chunkCountOf, chunkLength } from './table-validation.js';
import type { InodeAttributes, TreeNode } from './tree.js';
import { decodeXattrIbody, ibodySize, XattrError } from './xattr-codec.js';

export interface DecodedInode {
  nid: number;
  node: TreeNode;
  nlink: number;
  /** Directories: their data (dirent blocks). */
  directoryData: Buffer;
}

/** The fixed fields of an extended inode and where its variable parts are. */
interface InodeCore {
  at: number;
  where: string;
  layout: number;
  kind: NodeKind;
  size: number;
  iu: number;
  nlink: number;
  attributes: InodeAttributes;
  /** Byte offset just past the inode and its xattr ibody. */
  bodyEnd: number;
}

const NO_DATA = Buffer.alloc(0);

export class InodeReader {
  private budget: number;
  private readonly metaStart: number;

  constructor(
    private readonly bytes: Buffer,
    private readonly header: BootstrapHeader,
  ) {
    this.budget = bytes.length;
    this.metaStart = header.superblock.metaBlkaddr * EROFS_BLOCK_SIZE;
  }

  read(nid: number): DecodedInode {
    const core = this.readCore(nid);
    const node = this.nodeOf(core);
    const directoryData = core.kind === 'directory' ? this.readDirectoryData(core) : NO_DATA;
    return { nid, node, nlink: core.nlink, directoryData };
  }

  private nodeOf(core: InodeCore): TreeNode {
    const attributes = core.attributes;
    switch (core.kind) {
      case 'file':
        return { kind: 'file', ...attributes, size: core.size, chunks: this.readChunks(core) };
      case 'directory':
        return { kind: 'directory', ...attributes, children: new Map() };
      case 'symlink':
        return { kind: 'symlink', ...attributes, target: this.readSymlinkTarget(core) };
      case 'char':
      case 'block': {
        this.checkNoData(core);
        const { major, minor } = decodeDevice(core.iu);
        return { kind: core.kind, ...attributes, rdevMajor: major, rdevMinor: minor };
      }
      default:
        this.checkNoData(core);
        check(
          core.iu === 0,
          () => `${core.where}: ${core.kind} with i_u 0x${core.iu.toString(16)}, expected 0`,
        );
        return { kind: core.kind, ...attributes };
    }
  }

  private readDirectoryData(core: InodeCore): Buffer {
    check(core.size > 0, () => `${core.where}: directory of size 0 (it needs . and ..)`);
    return this.readFlatData(core);
  }

  private readCore(nid: number): InodeCore {
    const where = `inode nid ${nid}`;
    check(Number.isSafeInteger(nid) && nid > 0, () => `${where}: not a valid nid`);
    const at = this.metaStart + nid * INODE_SLOT_SIZE;
    checkRange(at, EXTENDED_INODE_SIZE, this.bytes.length, () => where);
    const format = this.bytes.readUInt16LE(at + INODE.format);
    check(
      (format & ~INODE_FORMAT_KNOWN_BITS) === 0,
      () => `${where}: unsupported i_format 0x${format.toString(16)}`,
    );
    check(
      (format & INODE_FORMAT_EXTENDED) !== 0,
      () => `${where}: compact inode (Damselfly writes extended inodes only)`,
    );
    const mode = this.bytes.readUInt16LE(at + INODE.mode);
    const kind = kindOfMode(mode);
    if (kind === undefined) fail(`${where}: bogus i_mode 0o${mode.toString(8)}`);
    const ibodyLength = ibodySize(this.bytes.readUInt16LE(at + INODE.xattrIcount));
    checkRange(at + EXTENDED_INODE_SIZE, ibodyLength, this.bytes.length, () => `${where}: xattrs`);
    this.charge(EXTENDED_INODE_SIZE + ibodyLength, where);
    const size = readU64AsNumber(this.bytes, at + INODE.size);
    check(Number.isSafeInteger(size), () => `${where}: size is beyond 2^53`);
    const nlink = this.bytes.readUInt32LE(at + INODE.nlink);
    check(nlink > 0, () => `${where}: nlink 0`);
    return {
      at,
      where,
      layout: format >> 1,
      kind,
      size,
      iu: this.bytes.readUInt32LE(at + INODE.u),
      nlink,
      attributes: this.readAttributes(at, mode, ibodyLength, where),
      bodyEnd: at + EXTENDED_INODE_SIZE + ibodyLength,
    };
  }

  private readAttributes(at: number, mode: number, ibodyLength: number, where: string): InodeAttributes {
    const mtime = this.bytes.readBigInt64LE(at + INODE.mtime);
    check(
      mtime >= BigInt(Number.MIN_SAFE_INTEGER) && mtime <= BigInt(Number.MAX_SAFE_INTEGER),
      () => `${where}: mtime ${mtime} is beyond 2^53 seconds`,
    );
    const mtimeNsec = this.bytes.readUInt32LE(at + INODE.mtimeNsec);
    check(mtimeNsec < 1_000_000_000, () => `${where}: mtime nanoseconds ${mtimeNsec} ≥ 10^9`);
    let xattrs: Map<string, Buffer>;
    try {
      xattrs = decodeXattrIbody(
        this.bytes.subarray(at + EXTENDED_INODE_SIZE, at + EXTENDED_INODE_SIZE + ibodyLength),
      );
    } catch (err) {
      if (err instanceof XattrError) fail(`${where}: ${err.message}`);
      throw err;
    }
    return {
      mode: mode & PERMISSION_BITS,
      uid: this.bytes.readUInt32LE(at + INODE.uid),
      gid: this.bytes.readUInt32LE(at + INODE.gid),
      mtimeSec: Number(mtime),
      mtimeNsec,
      xattrs,
    };
  }

  /** Regular files: empty and FLAT_PLAIN without blocks, or CHUNK_BASED with one index per chunk. */
  private readChunks(core: InodeCore): Array<number | null> {
    const { where, size } = core;
    if (size === 0) {
      check(
        core.layout === LAYOUT_FLAT_PLAIN && core.iu === NULL_ADDR,
        () => `${where}: an empty file must be FLAT_PLAIN with no blocks`,
      );
      return [];
    }
    check(
      core.layout === LAYOUT_CHUNK_BASED,
      () => `${where}: regular file with data layout ${core.layout}, expected chunk-based (4)`,
    );
    const { chunkSize } = this.header.extension;
    const expectedFormat = chunkFormatOf(chunkSize);
    check(
      core.iu === expectedFormat,
      () =>
        `${where}: chunk format 0x${core.iu.toString(16)}, expected 0x${expectedFormat.toString(16)} (chunk size ${chunkSize})`,
    );
    const count = chunkCountOf(size, chunkSize);
    const indexAt = Math.ceil(core.bodyEnd / CHUNK_INDEX_SIZE) * CHUNK_INDEX_SIZE;
    checkRange(
      indexAt,
      count * CHUNK_INDEX_SIZE,
      this.bytes.length,
      () => `${where}: ${count} chunk indexes`,
    );
    this.charge(count * CHUNK_INDEX_SIZE, where);
    const chunks: Array<number | null> = [];
    for (let i = 0; i < count; i++) chunks.push(this.readChunkIndex(core, indexAt + i * CHUNK_INDEX_SIZE, i));
    return chunks;
  }

  private readChunkIndex(core: InodeCore, at: number, i: number): number | null {
    const where = `${core.where}: chunk index ${i}`;
    const advise = this.bytes.readUInt16LE(at + CHUNK_INDEX.advise);
    const device = this.bytes.readUInt16LE(at + CHUNK_INDEX.deviceId);
    const blkaddr = this.bytes.readUInt32LE(at + CHUNK_INDEX.blkaddr);
    check(advise === 0, () => `${where}: advise ${advise}, expected 0`);
    if (device === 0) {
      check(
        blkaddr === NULL_ADDR,
        () => `${where}: points at block ${blkaddr} of the bootstrap (device 0 is only for holes)`,
      );
      return null;
    }
    const blobs = this.header.blobs.length;
    check(device <= blobs, () => `${where} points at device ${device}, but the image has ${blobs} blobs`);
    const chunk = this.header.chunkAt.get(chunkKey(device - 1, blkaddr));
    if (chunk === undefined)
      fail(`${where} points at device ${device} block ${blkaddr}, where no chunk of the chunk table starts`);
    const expected = chunkLength(core.size, this.header.extension.chunkSize, i);
    const actual = this.header.chunks[chunk]!.uncompressedSize;
    check(
      actual === expected,
      () => `${where}: chunk ${chunk} holds ${actual} bytes, but this slice of the file is ${expected}`,
    );
    return chunk;
  }

  private readSymlinkTarget(core: InodeCore): string {
    check(
      core.size > 0 && core.size <= MAX_SYMLINK_LENGTH,
      () => `${core.where}: symlink target of ${core.size} bytes`,
    );
    const target = this.readFlatData(core);
    check(!target.includes(0), () => `${core.where}: symlink target contains NUL`);
    const text = decodeStrictUtf8(target);
    if (text === undefined) fail(`${core.where}: symlink target is not valid UTF-8`);
    return text;
  }

  /** Data of a FLAT_PLAIN or FLAT_INLINE inode (directories, symlinks). */
  private readFlatData(core: InodeCore): Buffer {
    const { where, size } = core;
    checkRange(0, size, this.bytes.length, () => `${where}: size ${size}`);
    this.charge(size, where);
    if (core.layout === LAYOUT_FLAT_PLAIN) return this.readBlocks(core, size);
    check(
      core.layout === LAYOUT_FLAT_INLINE,
      () => `${where}: data layout ${core.layout}, expected flat (0 or 2)`,
    );
    const tail = size % EROFS_BLOCK_SIZE;
    check(tail > 0, () => `${where}: FLAT_INLINE with a block-aligned size ${size}`);
    check(
      (core.at % EROFS_BLOCK_SIZE) + (core.bodyEnd - core.at) + tail <= EROFS_BLOCK_SIZE,
      () => `${where}: inline data of ${tail} bytes crosses a block boundary`,
    );
    const full = this.readBlocks(core, size - tail);
    const inline = this.bytes.subarray(core.bodyEnd, core.bodyEnd + tail);
    return full.length === 0 ? inline : Buffer.concat([full, inline]);
  }

  /** `length` bytes from the consecutive blocks starting at `i_u` (NULL when there are none). */
  private readBlocks(core: InodeCore, length: number): Buffer {
    if (length === 0) {
      check(core.iu === NULL_ADDR, () => `${core.where}: no data blocks, but i_u is ${core.iu}`);
      return Buffer.alloc(0);
    }
    const blocks = Math.ceil(length / EROFS_BLOCK_SIZE);
    const { metaBlkaddr } = this.header.superblock;
    check(
      core.iu !== NULL_ADDR && core.iu >= metaBlkaddr,
      () => `${core.where}: data block ${core.iu} is not in the metadata or data area`,
    );
    checkRange(
      core.iu * EROFS_BLOCK_SIZE,
      blocks * EROFS_BLOCK_SIZE,
      this.bytes.length,
      () => `${core.where}: data blocks`,
    );
    const start = core.iu * EROFS_BLOCK_SIZE;
    return this.bytes.subarray(start, start + length);
  }

  private checkNoData(core: InodeCore): void {
    check(
      core.layout === LAYOUT_FLAT_PLAIN,
      () => `${core.where}: ${core.kind} with data layout ${core.layout}, expected 0`,
    );
    check(core.size === 0, () => `${core.where}: ${core.kind} with size ${core.size}`);
  }

  private charge(bytes: number, where: string): void {
    this.budget -= bytes;
    check(
      this.budget >= 0,
      () => `${where}: the inodes claim more bytes than the bootstrap holds (overlapping or repeated data)`,
    );
  }
}
