/**
 * An independent reference for layer merging: GNU tar extracts each layer onto a real directory,
 * with the OCI rules done by hand around it (whiteouts, opaque markers and replaced directories first,
 * then hard-link header attributes and directory mtimes after, as containerd leaves them). Plus
 * `describeTree` / `describeNode`: the same one-line-per-path listing of a real directory and of a
 * merged `DirectoryNode`, so the two can be compared with one deepStrictEqual.
 *
 * Deliberately simple: sync I/O and one process per step; for tests only. Needs root (owners,
 * device nodes), GNU tar, touch and getfattr.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  lchownSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import type { DirectoryNode, FileNode, TreeNode } from '../../src/image/format/index.js';

interface ReferenceEntry {
  /** Normalized: no leading `./`, no trailing `/`. */
  path: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  /** `sec.nsec` as touch(1) takes it after `@`. */
  mtime: string;
}

const OPAQUE = '.wh..wh..opq';
const WHITEOUT = '.wh.';

/** Applies the layer tars (plain or gzip) in order onto `dir` (which should start empty). */
export async function applyLayersToDirectory(layerTars: Buffer[], dir: string): Promise<void> {
  for (const blob of layerTars) {
    const layer = blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob;
    applyLayer(await listEntries(layer), layer, dir);
  }
}

function applyLayer(entries: ReferenceEntry[], layer: Buffer, dir: string): void {
  const mtimesBefore = directoryMtimes(dir);
  applyWhiteouts(entries, dir);
  removeReplacedDirectories(entries, dir);
  for (const path of mtimesBefore.keys()) if (!isDirectory(join(dir, path))) mtimesBefore.delete(path);
  extract(layer, dir);
  applyLinkAttributes(entries, dir);
  fixDirectories(entries, dir, mtimesBefore);
}

/** Whiteouts hide lower entries only, so they go before the layer is extracted (OCI). */
function applyWhiteouts(entries: ReferenceEntry[], dir: string): void {
  for (const entry of entries) {
    const [parent, base] = splitPath(entry.path);
    if (!base.startsWith(WHITEOUT)) continue;
    const parentPath = join(dir, parent);
    if (base === OPAQUE) {
      if (!isDirectory(parentPath)) continue; // hiding the children of nothing is a no-op
      for (const name of readdirSync(parentPath)) rmSync(join(parentPath, name), { recursive: true });
    } else {
      rmSync(join(parentPath, base.slice(WHITEOUT.length)), { recursive: true, force: true });
    }
  }
}

/**
 * GNU tar replaces what an entry lands on in archive order, except a directory under a non-directory
 * entry (it only removes empty ones): remove those first. (So a layer must not, earlier, hard-link
 * into a directory it later replaces by a non-directory.)
 */
function removeReplacedDirectories(entries: ReferenceEntry[], dir: string): void {
  for (const entry of entries) {
    const path = join(dir, entry.path);
    if (entry.type !== 'directory' && isDirectory(path)) rmSync(path, { recursive: true });
  }
}

function extract(layer: Buffer, dir: string): void {
  const script =
    'umask 022 && exec tar -x -f - -C "$0" --numeric-owner --same-owner --same-permissions --xattrs --xattrs-include="*" --exclude=".wh.*"';
  const result = spawnSync('sh', ['-c', script, dir], { input: layer });
  if (result.status !== 0) throw new Error(`GNU tar failed: ${result.stderr.toString()}`);
}

/** containerd chowns, chmods and chtimes the path of a hard link entry; GNU tar does not. */
function applyLinkAttributes(entries: ReferenceEntry[], dir: string): void {
  for (const entry of entries) {
    if (entry.type !== 'link') continue;
    const path = join(dir, entry.path);
    const before = lstatOrNull(path);
    if (before === null) continue;
    lchownSync(path, entry.uid, entry.gid);
    if (!before.isSymbolicLink()) chmodSync(path, entry.mode & 0o7777);
    spawnChecked('touch', ['-h', '-m', '-d', `@${entry.mtime}`, path]);
  }
}

/**
 * Directories as containerd leaves them. Those the layer names: their mode exactly (GNU tar keeps a
 * setgid bit inherited from the parent) and their mtime set last (GNU tar sets it when the archive
 * leaves the directory, and a later entry may still add to it). Those it implies: 0755 (root, and
 * the group of a setgid parent), mtime 0 where containerd leaves the time of unpacking. The others:
 * the mtime they had before (adding or removing children changed it; containerd leaves that too).
 */
function fixDirectories(entries: ReferenceEntry[], dir: string, before: Map<string, bigint>): void {
  const named = new Map(
    entries.filter((entry) => entry.type === 'directory').map((entry) => [entry.path, entry]),
  );
  const byTime = new Map<string, string[]>();
  for (const path of directoryMtimes(dir).keys()) {
    const full = join(dir, path);
    const entry = named.get(path);
    let time: string;
    if (entry !== undefined) {
      chmodSync(full, entry.mode & 0o7777);
      time = entry.mtime;
    } else if (before.has(path)) {
      time = nsToTouchTime(before.get(path)!);
    } else {
      chmodSync(full, 0o755); // the group stays: the parent's if setgid, as under containerd
      time = nsToTouchTime(0n);
    }
    byTime.set(time, [...(byTime.get(time) ?? []), full]);
  }
  for (const [time, paths] of byTime) spawnChecked('touch', ['-h', '-m', '-d', `@${time}`, ...paths]);
}

async function listEntries(layer: Buffer): Promise<ReferenceEntry[]> {
  const extract = tarStream.extract();
  Readable.from([layer]).pipe(extract);
  const entries: ReferenceEntry[] = [];
  for await (const item of extract) {
    const { header } = item;
    const pax = (header as { pax?: Record<string, string> }).pax ?? {};
    entries.push({
      path: normalize(header.name),
      type: header.type ?? 'file',
      mode: header.mode ?? 0,
      uid: pax.uid !== undefined ? Number(pax.uid) : (header.uid ?? 0),
      gid: pax.gid !== undefined ? Number(pax.gid) : (header.gid ?? 0),
      mtime: pax.mtime ?? String(Math.floor((header.mtime?.getTime() ?? 0) / 1000)),
    });
    item.resume();
  }
  return entries;
}

export interface DescribeOptions {
  /** Include mtimes (default true). */
  mtimes?: boolean;
  /** Include extended attributes (default true). */
  xattrs?: boolean;
}

/**
 * One line per path below `dir` (the root itself is not listed), sorted:
 * `path kind mode uid:gid details [mtime=s.ns] [xattrs={…}] [hardlink=first-path]`.
 * `contentDigests` adds each regular file's sha256.
 */
export function describeTree(
  dir: string,
  options: DescribeOptions & { contentDigests?: boolean } = {},
): string[] {
  const xattrs = options.xattrs === false ? new Map<string, Map<string, string>>() : readAllXattrs(dir);
  const rows: Row[] = [];
  const walk = (relative: string) => {
    for (const name of readdirSync(join(dir, relative))) {
      const path = relative === '' ? name : `${relative}/${name}`;
      const full = join(dir, path);
      const stat = lstatSync(full, { bigint: true });
      const kind = kindOf(stat);
      let detail = '';
      if (kind === 'file') {
        detail = `size=${stat.size}`;
        if (options.contentDigests)
          detail += ` sha256=${createHash('sha256').update(readFileSync(full)).digest('hex')}`;
      } else if (kind === 'symlink') {
        detail = `-> ${JSON.stringify(readlinkSync(full, 'utf8'))}`;
      } else if (kind === 'char' || kind === 'block') {
        detail = `rdev=${major(stat.rdev)}:${minor(stat.rdev)}`;
      }
      rows.push({
        path,
        kind,
        mode: Number(stat.mode & 0o7777n),
        uid: Number(stat.uid),
        gid: Number(stat.gid),
        detail,
        mtime: nsToTouchTime(stat.mtimeNs),
        xattrs: xattrs.get(full) ?? new Map(),
        identity: kind === 'directory' || stat.nlink < 2n ? null : `${stat.dev}:${stat.ino}`,
      });
      if (kind === 'directory') walk(path);
    }
  };
  walk('');
  return formatRows(rows, options);
}

/** The listing `describeTree` gives, for a merged tree. `contentDigest` names a file's content. */
export function describeNode(
  root: DirectoryNode,
  options: DescribeOptions & { contentDigest?: (file: FileNode) => string } = {},
): string[] {
  const rows: Row[] = [];
  const walk = (directory: DirectoryNode, relative: string) => {
    for (const [name, node] of directory.children) {
      const path = relative === '' ? name : `${relative}/${name}`;
      rows.push({
        path,
        kind: node.kind,
        mode: node.mode,
        uid: node.uid,
        gid: node.gid,
        detail: nodeDetail(node, options.contentDigest),
        mtime: nsToTouchTime(BigInt(node.mtimeSec) * 1_000_000_000n + BigInt(node.mtimeNsec)),
        xattrs: new Map([...node.xattrs].map(([key, value]) => [key, value.toString('hex')])),
        identity: node.kind === 'directory' ? null : node,
      });
      if (node.kind === 'directory') walk(node, path);
    }
  };
  walk(root, '');
  return formatRows(rows, options);
}

interface Row {
  path: string;
  kind: string;
  mode: number;
  uid: number;
  gid: number;
  detail: string;
  mtime: string;
  xattrs: Map<string, string>;
  /** What hard links share (inode or node object); null when it cannot be shared. */
  identity: unknown;
}

function formatRows(rows: Row[], options: DescribeOptions): string[] {
  const names = new Map<unknown, string[]>();
  for (const row of rows)
    if (row.identity !== null) names.set(row.identity, [...(names.get(row.identity) ?? []), row.path]);
  return rows
    .map((row) => {
      const mode = row.kind === 'symlink' ? '-' : row.mode.toString(8).padStart(4, '0');
      let line = `${row.path} ${row.kind} ${mode} ${row.uid}:${row.gid}`;
      if (row.detail !== '') line += ` ${row.detail}`;
      if (options.mtimes !== false) line += ` mtime=${row.mtime}`;
      if (options.xattrs !== false && row.xattrs.size > 0) {
        const pairs = [...row.xattrs]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([key, value]) => `${key}=${value}`);
        line += ` xattrs={${pairs.join(',')}}`;
      }
      const group = row.identity === null ? [] : (names.get(row.identity) ?? []);
      if (group.length > 1) line += ` hardlink=${[...group].sort()[0]}`;
      return line;
    })
    .sort();
}

function nodeDetail(node: TreeNode, contentDigest?: (file: FileNode) => string): string {
  switch (node.kind) {
    case 'file':
      return contentDigest ? `size=${node.size} sha256=${contentDigest(node)}` : `size=${node.size}`;
    case 'symlink':
      return `-> ${JSON.stringify(node.target)}`;
    case 'char':
    case 'block':
      return `rdev=${node.rdevMajor}:${node.rdevMinor}`;
    default:
      return '';
  }
}

/** `getfattr` once for the whole tree: path → name → hex value. */
function readAllXattrs(dir: string): Map<string, Map<string, string>> {
  const result = spawnSync('getfattr', [
    '-R',
    '-P',
    '-h',
    '-d',
    '-m',
    '-',
    '-e',
    'hex',
    '--absolute-names',
    dir,
  ]);
  if (result.status !== 0 && result.stdout.length === 0 && result.stderr.length > 0) {
    throw new Error(`getfattr failed: ${result.stderr.toString()}`);
  }
  const byPath = new Map<string, Map<string, string>>();
  let current: Map<string, string> | null = null;
  for (const line of result.stdout.toString().split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map();
      byPath.set(unescapeGetfattr(line.slice('# file: '.length)), current);
    } else if (current !== null && line.includes('=')) {
      const at = line.indexOf('=');
      current.set(line.slice(0, at), line.slice(at + 1).replace(/^0x/, ''));
    }
  }
  return byPath;
}

/** getfattr escapes unusual bytes in paths as `\ooo`. */
function unescapeGetfattr(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

function kindOf(
  stat: Pick<
    Stats,
    'isFile' | 'isDirectory' | 'isSymbolicLink' | 'isCharacterDevice' | 'isBlockDevice' | 'isFIFO'
  >,
): string {
  if (stat.isFile()) return 'file';
  if (stat.isDirectory()) return 'directory';
  if (stat.isSymbolicLink()) return 'symlink';
  if (stat.isCharacterDevice()) return 'char';
  if (stat.isBlockDevice()) return 'block';
  if (stat.isFIFO()) return 'fifo';
  return 'socket';
}

/** Linux dev_t encoding (glibc gnu_dev_major/minor). */
function major(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}

function minor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

function directoryMtimes(dir: string): Map<string, bigint> {
  const mtimes = new Map<string, bigint>();
  const walk = (relative: string) => {
    for (const entry of readdirSync(join(dir, relative), { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const path = relative === '' ? entry.name : `${relative}/${entry.name}`;
      mtimes.set(path, lstatSync(join(dir, path), { bigint: true }).mtimeNs);
      walk(path);
    }
  };
  walk('');
  return mtimes;
}

function nsToTouchTime(ns: bigint): string {
  const negative = ns < 0n;
  const abs = negative ? -ns : ns;
  return `${negative ? '-' : ''}${abs / 1_000_000_000n}.${(abs % 1_000_000_000n).toString().padStart(9, '0')}`;
}

function normalize(name: string): string {
  return name
    .split('/')
    .filter((part) => part !== '' && part !== '.')
    .join('/');
}

function splitPath(path: string): [string, string] {
  const at = path.lastIndexOf('/');
  return at === -1 ? ['', path] : [path.slice(0, at), path.slice(at + 1)];
}

function isDirectory(path: string): boolean {
  return lstatOrNull(path)?.isDirectory() ?? false;
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

function spawnChecked(command: string, args: string[]): void {
  const result = spawnSync(command, args);
  if (result.status !== 0)
    throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr.toString()}`);
}
