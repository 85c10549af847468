import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, open, readdir } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';

/** sha256 of a file's content, hex. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), hash);
  return hash.digest('hex');
}

export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Names in a directory ([] when it does not exist). */
export async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Damages a stored file in place: XORs `length` bytes with 0xff at offset 0, `every`, 2·`every`, …
 * (so every piece of that length differs from the original). Returns how many spots were changed.
 */
export async function corruptEvery(path: string, every: number, length = 16): Promise<number> {
  const file = await open(path, 'r+');
  try {
    const { size } = await file.stat();
    let spots = 0;
    for (let offset = 0; offset < size; offset += every) {
      const n = Math.min(length, size - offset);
      const buf = Buffer.alloc(n);
      await file.read(buf, 0, n, offset);
      for (let i = 0; i < n; i++) buf[i] = buf[i]! ^ 0xff;
      await file.write(buf, 0, n, offset);
      spots++;
    }
    await file.sync();
    return spots;
  } finally {
    await file.close();
  }
}
