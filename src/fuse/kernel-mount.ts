/**
 * The kernel side of a mount: mount(8) with our /dev/fuse fd, finding the mount in mountinfo,
 * umount(8), and aborting a connection through fusectl. Pure Node cannot receive an fd from
 * fusermount3 (SCM_RIGHTS), so this needs root: `mount -i -t fuse.<subtype> -o fd=3,…`.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

const FUSECTL_DIR = '/sys/fs/fuse/connections';
const CHILD_TIMEOUT_MS = 30_000;

export interface MountParameters {
  fsName: string;
  subtype: string;
  maxRead: number;
  allowOther: boolean;
  defaultPermissions: boolean;
  readOnly: boolean;
}

/** The `-o` string of mount(8). `fd=3` is the child's fd 3, our /dev/fuse fd passed as stdio[3]. */
export function mountOptions(p: MountParameters): string {
  const options = ['fd=3', 'rootmode=40000', 'user_id=0', 'group_id=0', `max_read=${p.maxRead}`];
  if (p.allowOther) options.push('allow_other');
  if (p.defaultPermissions) options.push('default_permissions');
  // The kernel refuses writes itself on an `ro` mount; the server still answers EROFS otherwise.
  options.push(p.readOnly ? 'ro' : 'rw');
  return options.join(',');
}

/** Runs mount(8) on `fd`. Rejects with mount's own message. */
export async function mountFuse(fd: number, mountpoint: string, p: MountParameters): Promise<void> {
  const args = ['-i', '-t', `fuse.${p.subtype}`, '-o', mountOptions(p), p.fsName, mountpoint];
  const child = spawn('mount', args, { stdio: ['ignore', 'ignore', 'pipe', fd] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(stderr.trim() || `mount exited with ${code}`);
}

export interface MountInfoEntry {
  /** "major:minor" of the superblock: for FUSE, its connection in fusectl. */
  device: string;
  mountpoint: string;
  fsType: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** Parses /proc/self/mountinfo (proc(5)): `id parent major:minor root mountpoint opts [tags] - type source super`. */
export function parseMountinfo(text: string): MountInfoEntry[] {
  const entries: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    if (fields.length < 10 || separator < 0) continue;
    entries.push({
      device: fields[2]!,
      mountpoint: unescapeMountinfo(fields[4]!),
      fsType: fields[separator + 1]!,
      source: unescapeMountinfo(fields[separator + 2] ?? ''),
    });
  }
  return entries;
}

/** The topmost mount at `mountpoint` (a canonical path), if any. */
export async function findMount(mountpoint: string): Promise<MountInfoEntry | undefined> {
  return topmost(parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')), mountpoint);
}

function topmost(entries: MountInfoEntry[], mountpoint: string): MountInfoEntry | undefined {
  return entries.filter((entry) => entry.mountpoint === mountpoint).at(-1);
}

export async function isMounted(mountpoint: string, device: string): Promise<boolean> {
  const entries = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  return entries.some((entry) => entry.mountpoint === mountpoint && entry.device === device);
}

/**
 * umount(8) without canonicalisation (`-c`): canonicalising stats the mountpoint, which would wait
 * on the filesystem being unmounted. Lazy (`-l`) detaches even while files are open.
 */
export async function umount(mountpoint: string, lazy: boolean): Promise<void> {
  await run('umount', [...(lazy ? ['-l'] : []), '-c', mountpoint], { timeout: CHILD_TIMEOUT_MS });
}

/** A FUSE mount's backing device (bdi) is named after its "major:minor". */
export async function setReadahead(device: string, bytes: number): Promise<void> {
  await writeFile(`/sys/class/bdi/${device}/read_ahead_kb`, String(Math.ceil(bytes / 1024)));
}

/** fusectl names a connection by the superblock's dev_t (MKDEV(major, minor), major 0 for FUSE). */
export function connectionId(device: string): string {
  const [major, minor] = device.split(':').map(Number);
  return String(((major ?? 0) << 20) | (minor ?? 0));
}

/**
 * Ends a FUSE connection from outside: every waiting and future request fails (ENOTCONN) and our
 * reader threads get ENODEV. The only way to stop readers of a lazily unmounted filesystem that is
 * still in use. Mounts fusectl if the system has not (systemd normally does). Returns false if the
 * connection could not be aborted.
 */
export async function abortConnection(device: string): Promise<boolean> {
  const abortFile = `${FUSECTL_DIR}/${connectionId(device)}/abort`;
  try {
    if ((await readdir(FUSECTL_DIR)).length === 0) {
      await run('mount', ['-t', 'fusectl', 'fusectl', FUSECTL_DIR], { timeout: CHILD_TIMEOUT_MS });
    }
    await writeFile(abortFile, '1');
    return true;
  } catch {
    return false;
  }
}

/**
 * For process exit, where nothing asynchronous runs: abort the connection first (so nothing can
 * wait for this process's main thread), then detach the mount.
 */
export function abortAndDetachSync(mountpoint: string, device: string | undefined): void {
  if (device !== undefined) {
    const abortFile = `${FUSECTL_DIR}/${connectionId(device)}/abort`;
    try {
      if (existsSync(abortFile)) writeFileSync(abortFile, '1');
    } catch {
      // Best effort: the process is exiting, its fd closes, and that aborts the connection too.
    }
  }
  spawnSync('umount', ['-l', '-c', mountpoint], { stdio: 'ignore', timeout: 10_000 });
}

/**
 * Detaches a FUSE mount left at `mountpoint` by a server that died (the kernel answers ENOTCONN
 * there). Returns whether something was unmounted. For a clean start of `damselfly mount`.
 */
export async function unmountStale(mountpoint: string): Promise<boolean> {
  // Not realpath(): resolving the mountpoint itself fails with ENOTCONN on a dead FUSE mount.
  const path = resolve(mountpoint);
  const mounted = await findMount(path);
  if (!mounted?.fsType.startsWith('fuse')) return false;
  await abortConnection(mounted.device);
  await umount(path, true);
  return true;
}
