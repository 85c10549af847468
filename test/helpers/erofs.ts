/**
 * EROFS test helpers: synthetic images (a tree plus blob files in the uncompressed 4 KiB-aligned
 * layout, built in memory), `fsck.erofs`, and kernel mounts through loop devices.
 *
 * Why loop devices for the bootstrap *and* every blob: the kernel wants `device=` of the same kind
 * as the primary, and util-linux `mount` turns a regular-file source into a loop device by itself
 * (so a file-backed mount with regular-file `device=` fails with EINVAL).
 */

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import {
  type BlobInfo,
  type ChunkInfo,
  type DeviceNode,
  type DirectoryNode,
  type FileNode,
  type ImageBootstrap,
  type InodeAttributes,
  newDirectory,
  type SpecialNode,
  type SymlinkNode,
  type TreeNode,
} from '../../src/image/format/index.js';

const run = promisify(execFile);
const BLOCK = 4096;

export function attributes(partial: Partial<InodeAttributes> = {}): InodeAttributes {
  return {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtimeSec: 1_700_000_000,
    mtimeNsec: 0,
    xattrs: new Map(),
    ...partial,
  };
}

export interface SyntheticImageResult {
  image: ImageBootstrap;
  /** Blob files in blob order, each the 4 KiB-aligned uncompressed layout (compressor `none`). */
  blobs: Buffer[];
}

/**
 * Builds an image tree in code with real chunk data: file contents are cut into chunks,
 * identical chunks are stored once (dedup), all-zero chunks become holes.
 */
export class SyntheticImage {
  readonly root: DirectoryNode;
  private readonly chunks: ChunkInfo[] = [];
  private readonly chunkByDigest = new Map<string, number>();
  private readonly blobParts: Array<Array<{ offset: number; data: Buffer }>>;
  private readonly blobEnds: number[];

  constructor(
    readonly chunkSize = 16 * 1024,
    blobCount = 2,
  ) {
    this.root = newDirectory({ mtimeSec: 1_700_000_000 });
    this.blobParts = Array.from({ length: blobCount }, () => []);
    this.blobEnds = new Array<number>(blobCount).fill(0);
  }

  /** The chunk list for `data`, storing chunks not seen before in blob `blobIndex`. */
  chunk(data: Buffer, blobIndex = 0): Array<number | null> {
    const list: Array<number | null> = [];
    for (let at = 0; at < data.length; at += this.chunkSize) {
      const piece = data.subarray(at, Math.min(data.length, at + this.chunkSize));
      list.push(piece.every((b) => b === 0) ? null : this.store(piece, blobIndex));
    }
    return list;
  }

  private store(piece: Buffer, blobIndex: number): number {
    const digest = createHash('sha256').update(piece).digest();
    const known = this.chunkByDigest.get(digest.toString('hex'));
    if (known !== undefined) return known;
    const offset = this.blobEnds[blobIndex]!;
    this.blobParts[blobIndex]!.push({ offset, data: piece });
    this.blobEnds[blobIndex] = offset + Math.ceil(piece.length / BLOCK) * BLOCK;
    const index = this.chunks.length;
    this.chunks.push({
      blobIndex,
      digest,
      compressedOffset: offset,
      compressedSize: piece.length,
      uncompressedOffset: offset,
      uncompressedSize: piece.length,
      compressed: false,
    });
    this.chunkByDigest.set(digest.toString('hex'), index);
    return index;
  }

  /** Adds `node` at `path`, creating missing parent directories. */
  add<T extends TreeNode>(path: string, node: T): T {
    const names = path.split('/').filter((n) => n !== '');
    const last = names.pop();
    if (last === undefined) throw new Error(`cannot add the root (${path})`);
    let dir = this.root;
    for (const name of names) {
      let next = dir.children.get(name);
      if (next === undefined) {
        next = newDirectory({ mtimeSec: 1_700_000_000 });
        dir.children.set(name, next);
      }
      if (next.kind !== 'directory') throw new Error(`${name} in ${path} is not a directory`);
      dir = next;
    }
    dir.children.set(last, node);
    return node;
  }

  file(path: string, data: Buffer, attrs: Partial<InodeAttributes> = {}, blobIndex = 0): FileNode {
    const node: FileNode = {
      kind: 'file',
      ...attributes(attrs),
      size: data.length,
      chunks: this.chunk(data, blobIndex),
    };
    return this.add(path, node);
  }

  dir(path: string, attrs: Partial<InodeAttributes> = {}): DirectoryNode {
    return this.add(path, newDirectory({ ...attributes({ mode: 0o755 }), ...attrs }));
  }

  symlink(path: string, target: string, attrs: Partial<InodeAttributes> = {}): SymlinkNode {
    return this.add(path, { kind: 'symlink', ...attributes({ mode: 0o777, ...attrs }), target });
  }

  device(path: string, kind: 'char' | 'block', major: number, minor: number): DeviceNode {
    return this.add(path, { kind, ...attributes({ mode: 0o600 }), rdevMajor: major, rdevMinor: minor });
  }

  special(path: string, kind: 'fifo' | 'socket', attrs: Partial<InodeAttributes> = {}): SpecialNode {
    return this.add(path, { kind, ...attributes(attrs) });
  }

  build(prefetch: string[] = []): SyntheticImageResult {
    const blobs = this.blobParts.map((parts, i) => {
      const bytes = Buffer.alloc(this.blobEnds[i]!);
      for (const { offset, data } of parts) data.copy(bytes, offset);
      return bytes;
    });
    const blobInfos: BlobInfo[] = blobs.map((bytes, i) => ({
      digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
      compressor: 'none',
      compressedSize: bytes.length,
      uncompressedSize: bytes.length,
      chunkCount: this.blobParts[i]!.length,
    }));
    const image = {
      root: this.root,
      chunkSize: this.chunkSize,
      blobs: blobInfos,
      chunks: this.chunks,
      prefetch,
    };
    return { image, blobs };
  }
}

/**
 * Names whose directory (with `.` and `..`) fills one 4 KiB block to the last byte, so it is
 * stored FLAT_PLAIN with no tail: 27 bytes for the dots, then 15 × (12 + 245) + (12 + 202).
 */
export function namesFillingOneBlock(): string[] {
  const names = Array.from({ length: 15 }, (_, i) => `f${String(i).padStart(2, '0')}`.padEnd(245, 'x'));
  names.push('g'.padEnd(202, 'y'));
  return names;
}

/** Why kernel EROFS tests cannot run here, or undefined when they can. */
export async function erofsUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (loop devices and mount)';
  const filesystems = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  if (!/\berofs\b/.test(filesystems)) {
    await run('modprobe', ['erofs']).catch(() => undefined);
    const again = await readFile('/proc/filesystems', 'utf8').catch(() => '');
    if (!/\berofs\b/.test(again)) return 'the kernel has no EROFS support';
  }
  return undefined;
}

export interface FsckResult {
  exitCode: number;
  output: string;
}

/** `fsck.erofs --device=<blob>… bootstrap` (erofs-utils 1.5 needs exactly one per blob). */
export async function fsckErofs(bootstrapPath: string, blobPaths: string[]): Promise<FsckResult> {
  const args = [...blobPaths.map((p) => `--device=${p}`), bootstrapPath];
  try {
    const { stdout, stderr } = await run('fsck.erofs', args);
    return { exitCode: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    if (typeof e.code !== 'number') throw err;
    return { exitCode: e.code, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

export interface MountedErofs {
  mountpoint: string;
  /** The bootstrap's loop device, then each blob's. */
  loopDevices: string[];
  /** Unmounts and detaches every loop device (tries all, then reports the first failure). */
  unmount(): Promise<void>;
}

/** Mounts bootstrap + blobs read-only through loop devices: `mount -t erofs -o ro,device=… `. */
export async function mountErofs(
  bootstrapPath: string,
  blobPaths: string[],
  mountpoint: string,
): Promise<MountedErofs> {
  const loops: string[] = [];
  try {
    for (const path of [bootstrapPath, ...blobPaths]) loops.push(await attachLoop(path));
    const [primary, ...devices] = loops;
    const options = ['ro', ...devices.map((d) => `device=${d}`)].join(',');
    await run('mount', ['-t', 'erofs', '-o', options, primary!, mountpoint]);
  } catch (err) {
    await detachAll(loops);
    throw err;
  }
  let mounted = true;
  return {
    mountpoint,
    loopDevices: loops,
    unmount: async () => {
      const failures: unknown[] = [];
      if (mounted) {
        await run('umount', [mountpoint]).catch((err) => failures.push(err));
        mounted = false;
      }
      failures.push(...(await detachAll(loops)));
      loops.length = 0;
      if (failures.length > 0) throw failures[0];
    },
  };
}

async function attachLoop(path: string): Promise<string> {
  const { stdout } = await run('losetup', ['-f', '--show', '-r', path]);
  return stdout.trim();
}

async function detachAll(loops: string[]): Promise<unknown[]> {
  const failures: unknown[] = [];
  for (const loop of loops) await run('losetup', ['-d', loop]).catch((err) => failures.push(err));
  return failures;
}

/** Every xattr of `path` (not following symlinks), read with `getfattr` from the attr package. */
export async function getXattrs(path: string): Promise<Map<string, Buffer>> {
  const { stdout } = await run('getfattr', ['--absolute-names', '-h', '-d', '-m', '-', '-e', 'hex', path]);
  const xattrs = new Map<string, Buffer>();
  for (const line of stdout.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq === -1) {
      xattrs.set(line, Buffer.alloc(0));
      continue;
    }
    const value = line.slice(eq + 1);
    xattrs.set(
      line.slice(0, eq),
      value.startsWith('0x') ? Buffer.from(value.slice(2), 'hex') : Buffer.alloc(0),
    );
  }
  return xattrs;
}
