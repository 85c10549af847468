/**
 * The kernel fast path: the kernel's EROFS driver mounted on the bootstrap file and the complete
 * blob cache files, so reads never reach userspace. Two ways to hand it the files:
 *
 * - **file-backed** (Linux ≥ 6.12, EROFS_FS_BACKED_BY_FILE): mount(2) on the files themselves, with
 *   `directio` where the kernel knows it (6.14+). Random 4 KiB reads ran at 0.89 × native against
 *   0.83 through loop devices, fio-style single misses at 0.9 against 0.48 (docs/benchmarks.md, Lazy
 *   mount). util-linux `mount` always puts a loop device under a regular file, so the system call is
 *   made directly, by perl (Essential on Debian: always installed).
 * - **loop**: each file through a read-only loop device (the source and every `device=` must be the
 *   same kind; docs/format.md §9). Right after the mount the loop devices are detached with
 *   `losetup -d`: the kernel cannot detach a device in use, so it marks it autoclear instead, and each
 *   goes away by itself when the filesystem is unmounted — by us, by an external `umount`, or after we
 *   were killed. Nothing is left behind.
 *
 * `auto` tries file-backed first and falls back to loop devices, logging why.
 */
import { execFile } from 'node:child_process';
import { readFile, realpath } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Logger } from '../observability/index.js';
import { KernelMountError } from './errors.js';

const run = promisify(execFile);

export interface KernelMountOptions {
  bootstrapPath: string;
  /** Blob files in blob order (the cache data files). */
  devicePaths: readonly string[];
  mountpoint: string;
  logger: Logger;
  /** How the kernel reaches the files (default auto: file-backed if the kernel can, else loop). */
  backing?: KernelBacking;
  /** How often to look for an external umount (default 500 ms). */
  pollMs?: number;
}

export type KernelBacking = 'auto' | 'file' | 'loop';

export class KernelMount {
  private readonly watching = new AbortController();
  private closing: Promise<void> | undefined;
  readonly unmounted: Promise<void>;

  private constructor(
    readonly mountpoint: string,
    /** How the mount reaches its files: `file` (mount(2) on the files) or `loop` (loop devices). */
    readonly backing: 'file' | 'loop',
    private readonly logger: Logger,
    pollMs: number,
  ) {
    this.unmounted = this.watch(pollMs);
  }

  static async mount(options: KernelMountOptions): Promise<KernelMount> {
    const mountpoint = await realpath(options.mountpoint);
    const files = [options.bootstrapPath, ...options.devicePaths];
    const wanted = options.backing ?? 'auto';
    let backing: 'file' | 'loop' = 'loop';
    if (wanted !== 'loop') {
      try {
        await mountFileBacked(files, mountpoint);
        backing = 'file';
      } catch (err) {
        if (wanted === 'file') throw err;
        options.logger.info(
          { reason: (err as Error).message },
          'file-backed EROFS mount failed; using loop devices',
        );
      }
    }
    if (backing === 'loop') await mountThroughLoops(files, mountpoint, options.logger);
    options.logger.info({ mountpoint, backing }, 'kernel EROFS mounted');
    return new KernelMount(mountpoint, backing, options.logger, options.pollMs ?? 500);
  }

  /** Unmounts if still mounted (the loop devices then clear themselves). Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.watching.abort();
      if (await erofsMountedAt(this.mountpoint)) await command('umount', [this.mountpoint]);
      await this.unmounted.catch(() => undefined);
    })();
    return this.closing;
  }

  /** Resolves once nothing of ours is mounted at the mountpoint (an external umount, or close). */
  private async watch(pollMs: number): Promise<void> {
    while (await erofsMountedAt(this.mountpoint)) {
      try {
        await sleep(pollMs, undefined, { signal: this.watching.signal });
      } catch {
        // close() stopped the watch; it unmounts and waits for the last look.
      }
    }
    this.logger.info({ mountpoint: this.mountpoint }, 'kernel EROFS mount is gone');
  }
}

/** Whether an erofs filesystem is mounted at `path` (from mountinfo, without touching the mount). */
export async function erofsMountedAt(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((line) => {
    const fields = line.split(' ');
    const fsType = fields[fields.indexOf('-') + 1];
    return unescapeMountinfo(fields[4] ?? '') === path && fsType === 'erofs';
  });
}

/** mountinfo writes space, tab, newline and backslash as \ooo octal. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** mount(2) numbers: the only way to mount a regular file without util-linux adding a loop device. */
const MOUNT_SYSCALL: Partial<Record<NodeJS.Architecture, number>> = { x64: 165, arm64: 40 };
const MS_RDONLY = 1;

async function mountFileBacked(files: readonly string[], mountpoint: string): Promise<void> {
  const syscall = MOUNT_SYSCALL[process.arch];
  if (syscall === undefined) throw new KernelMountError(`no mount(2) number known for ${process.arch}`);
  const [source, ...devices] = files;
  // device= paths are comma-separated options: a comma in a path cannot be passed this way.
  if (devices.some((path) => path.includes(',')))
    throw new KernelMountError('a blob cache path contains a comma');
  const devicesOption = devices.map((path) => `device=${path}`);
  // Strings go to the kernel as pointers and the flags as a number. perl's syscall() may write to
  // its string arguments, so the type is a variable, not a (read-only) literal.
  const script = `my $type = "erofs"; syscall(${syscall}, $ARGV[0], $ARGV[1], $type, ${MS_RDONLY}, $ARGV[2]) == 0 or die "mount(2): $!\\n"`;
  try {
    // directio (Linux ≥ 6.14): read the cache files without a second page-cache copy of them.
    // Buffered, the kernel kept both copies and sequential reads ran at 0.6–0.8 × native.
    await command('perl', ['-e', script, source!, mountpoint, [...devicesOption, 'directio'].join(',')]);
  } catch {
    await command('perl', ['-e', script, source!, mountpoint, devicesOption.join(',')]);
  }
}

async function mountThroughLoops(
  files: readonly string[],
  mountpoint: string,
  logger: Logger,
): Promise<void> {
  const loops: string[] = [];
  try {
    for (const path of files) loops.push(await attachLoop(path));
    const [primary, ...devices] = loops;
    const flags = ['ro', ...devices.map((device) => `device=${device}`)].join(',');
    await command('mount', ['-t', 'erofs', '-o', flags, primary!, mountpoint]);
  } finally {
    // In use now (or failed): detaching marks them autoclear (see above).
    await detachLoops(loops);
  }
  logger.debug({ loops }, 'loop devices attached (autoclear)');
}

async function attachLoop(path: string): Promise<string> {
  // Direct I/O: the loop device reads the cache file without a second page-cache copy of it (the
  // EROFS mount caches the file pages already); tar over the tree went from 0.75 to 1.4–1.8 of native.
  // Where the filesystem cannot do direct I/O the loop driver keeps buffered I/O (setup still succeeds).
  return (await command('losetup', ['-f', '--show', '-r', '--direct-io=on', path])).trim();
}

async function detachLoops(loops: readonly string[]): Promise<void> {
  for (const loop of loops) await command('losetup', ['-d', loop]).catch(() => undefined);
}

async function command(name: string, args: string[]): Promise<string> {
  try {
    return (await run(name, args)).stdout;
  } catch (err) {
    const detail = ((err as { stderr?: string }).stderr ?? '').trim() || (err as Error).message;
    throw new KernelMountError(`${name} ${args.join(' ')}: ${detail}`, { cause: err });
  }
}
