import { constants } from 'node:fs';
import {
  access,
  copyFile,
  link,
  mkdir,
  open,
  readFile,
  realpath,
  rename,
  stat,
  unlink,
} from 'node:fs/promises';
import { dirname } from 'node:path';
import { stagingPathFor } from '../task/index.js';
import { InitError } from './errors.js';
import type { InitPlan } from './plan.js';

/**
 * The file I/O of `damselfly init`: every write goes to a temp file in the same directory, is fsynced and
 * renamed over the target, so the runtime never reads a half-written config; an existing file is first
 * copied to a backup that is never overwritten.
 */

export interface ApplyOutcome {
  path: string;
  /** With `dryRun`, what would happen. */
  action: 'created' | 'updated' | 'unchanged';
  /** Where the old content went (or would go): `<file>.bak`, else `<file>.bak.<n>`. */
  backup?: string;
}

function fsError(err: unknown, verb: string, path: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM')
    return new InitError(`cannot ${verb} ${path}: permission denied`);
  if (code === 'EISDIR') return new InitError(`cannot ${verb} ${path}: it is a directory`);
  if (code === 'ENOTDIR') return new InitError(`cannot ${verb} ${path}: a parent is not a directory`);
  if (code === 'EROFS') return new InitError(`cannot ${verb} ${path}: read-only file system`);
  return err;
}

/** A file's text, or undefined when it does not exist. */
export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fsError(err, 'read', path);
  }
}

function backupCandidate(path: string, n: number): string {
  return n === 0 ? `${path}.bak` : `${path}.bak.${n}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** The backup name the next backup of `path` would get. */
export async function nextBackupPath(path: string): Promise<string> {
  for (let n = 0; ; n++) {
    const candidate = backupCandidate(path, n);
    if (!(await exists(candidate))) return candidate;
  }
}

async function fsyncPath(path: string, flags: string): Promise<void> {
  const fh = await open(path, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Copies `source` to `<path>.bak` (or `.bak.<n>`): copied to a temp name and fsynced first, then hard-linked
 * to the backup name, which fails rather than replaces when that name exists, so no backup is overwritten
 * and none is ever seen half-copied.
 */
export async function backupFile(source: string, path: string): Promise<string> {
  const temp = stagingPathFor(path);
  try {
    await copyFile(source, temp, constants.COPYFILE_EXCL);
    await fsyncPath(temp, 'r+');
    for (let n = 0; ; n++) {
      const candidate = backupCandidate(path, n);
      try {
        await link(temp, candidate);
        return candidate;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
  } catch (err) {
    throw fsError(err, 'back up', path);
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/** Writes `content` to `path` atomically, keeping an existing file's mode (and owner, when root). */
export async function writeFileAtomic(path: string, content: string, newFileMode = 0o644): Promise<void> {
  const dir = dirname(path);
  let mode = newFileMode;
  let owner: { uid: number; gid: number } | undefined;
  try {
    const st = await stat(path);
    mode = st.mode & 0o7777;
    owner = { uid: st.uid, gid: st.gid };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(err, 'write', path);
  }
  const temp = stagingPathFor(path);
  try {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const fh = await open(temp, 'wx', mode);
    try {
      await fh.writeFile(content, 'utf8');
      await fh.chmod(mode); // open's mode went through the umask
      if (owner && process.getuid?.() === 0) await fh.chown(owner.uid, owner.gid);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw fsError(err, 'write', path);
  }
  // The rename is durable once the directory is synced; a filesystem that cannot sync a directory is fine.
  await fsyncPath(dir, 'r').catch(() => undefined);
}

/** Writes the changed files of `plan` in order, each after backing up what it replaces. */
export async function applyPlan(plan: InitPlan, opts: { dryRun?: boolean } = {}): Promise<ApplyOutcome[]> {
  const outcomes: ApplyOutcome[] = [];
  for (const file of plan.files) {
    if (!file.changed) {
      outcomes.push({ path: file.path, action: 'unchanged' });
      continue;
    }
    if (file.before === undefined) {
      if (!opts.dryRun) await writeFileAtomic(file.path, file.after);
      outcomes.push({ path: file.path, action: 'created' });
      continue;
    }
    if (opts.dryRun) {
      outcomes.push({ path: file.path, action: 'updated', backup: await nextBackupPath(file.path) });
      continue;
    }
    // Through a symlink (config managed elsewhere), the file it points at is what gets replaced.
    const target = await realpath(file.path).catch(() => file.path);
    const backup = await backupFile(target, file.path);
    await writeFileAtomic(target, file.after);
    outcomes.push({ path: file.path, action: 'updated', backup });
  }
  return outcomes;
}
