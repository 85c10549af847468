/**
 * The model every image module speaks: the merged filesystem tree a bootstrap encodes, plus the
 * blob and chunk tables that say where each regular file's bytes live.
 *
 * - `image build` walks a directory into it; `image convert` merges OCI layers into it;
 *   the bootstrap writer encodes it as EROFS; the bootstrap reader decodes it back.
 * - A hard link is the same node object under several names (never a directory).
 * - Names are UTF-8 strings; directories are sorted by their UTF-8 bytes when encoded.
 * - Whiteouts never appear here: layer merging has already applied them.
 */

export type Compressor = 'none' | 'zstd' | 'lz4';

/** Attributes every inode carries. */
export interface InodeAttributes {
  /** Permission bits including setuid/setgid/sticky (`mode & 0o7777`); the type comes from `kind`. */
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Full xattr names (`user.x`, `security.capability`, `trusted.overlay.opaque`) to raw values. */
  xattrs: Map<string, Buffer>;
}

export interface FileNode extends InodeAttributes {
  kind: 'file';
  size: number;
  /**
   * One entry per `chunkSize` slice of the file, in file order: an index into
   * `ImageBootstrap.chunks`, or `null` for a hole (reads as zeros; used for all-zero chunks).
   */
  chunks: Array<number | null>;
}

export interface DirectoryNode extends InodeAttributes {
  kind: 'directory';
  children: Map<string, TreeNode>;
}

export interface SymlinkNode extends InodeAttributes {
  kind: 'symlink';
  target: string;
}

export interface DeviceNode extends InodeAttributes {
  kind: 'char' | 'block';
  rdevMajor: number;
  rdevMinor: number;
}

export interface SpecialNode extends InodeAttributes {
  kind: 'fifo' | 'socket';
}

export type TreeNode = FileNode | DirectoryNode | SymlinkNode | DeviceNode | SpecialNode;

/** One data blob (an OCI layer of the converted image; a device-table slot of the bootstrap). */
export interface BlobInfo {
  /** `sha256:<hex>` of the blob file's bytes as stored (compressed chunks back to back). */
  digest: string;
  compressor: Compressor;
  /** Bytes of the blob file. */
  compressedSize: number;
  /** Bytes of the uncompressed layout the kernel reads: every chunk 4 KiB-aligned. */
  uncompressedSize: number;
  chunkCount: number;
}

/** One unique chunk. (blobIndex, uncompressedOffset) is unique across the table. */
export interface ChunkInfo {
  blobIndex: number;
  /** sha256 of the uncompressed chunk bytes (32 bytes). */
  digest: Buffer;
  /** Where the stored (maybe compressed) bytes are in the blob file. */
  compressedOffset: number;
  compressedSize: number;
  /** Where the chunk sits in the blob's uncompressed layout; a multiple of 4096. */
  uncompressedOffset: number;
  uncompressedSize: number;
  /** False when the chunk is stored raw (compressor `none`, or it did not shrink). */
  compressed: boolean;
}

export interface ImageBootstrap {
  root: DirectoryNode;
  /** Power of two from 4 KiB to 16 MiB; every file is cut at multiples of it. */
  chunkSize: number;
  blobs: BlobInfo[];
  chunks: ChunkInfo[];
  /** Absolute paths (`/usr/bin/sh`) to fetch first after mount, in order. */
  prefetch: string[];
}

export const BLOCK_SIZE = 4096;
export const MIN_CHUNK_SIZE = 4096;
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

export function isValidChunkSize(size: number): boolean {
  return (
    Number.isInteger(size) && size >= MIN_CHUNK_SIZE && size <= MAX_CHUNK_SIZE && (size & (size - 1)) === 0
  );
}

export function newDirectory(attributes: Partial<InodeAttributes> = {}): DirectoryNode {
  return {
    kind: 'directory',
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtimeSec: 0,
    mtimeNsec: 0,
    xattrs: new Map(),
    ...attributes,
    children: new Map(),
  };
}
