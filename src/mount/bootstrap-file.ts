/**
 * The bootstrap as a file in the cache dir, for the kernel mode's loop device:
 * `<cacheDir>/<sha256 of the bootstrap>.bootstrap`, written under a temporary name, synced and
 * renamed (never half-written); an existing file of the right size is the same content by name.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

export async function writeBootstrapFile(cacheDir: string, bootstrap: Buffer): Promise<string> {
  const hex = createHash('sha256').update(bootstrap).digest('hex');
  const path = join(cacheDir, `${hex}.bootstrap`);
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isFile() && existing.size === bootstrap.length) return path;
  await mkdir(cacheDir, { recursive: true });
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const file = await open(temp, 'wx', 0o644);
    try {
      await file.writeFile(bootstrap);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  return path;
}
