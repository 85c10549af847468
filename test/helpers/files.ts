import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, link, open, readdir } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
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

/** Deterministic pseudo-random bytes (a sha256 chain of `seed`): equal seeds give equal content. */
export function seededBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let at = 0; at < size; at += block.length) {
    block.copy(out, at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** Inverts one byte of a file in place (corruption tests; calling it twice restores the file). */
export async function flipByte(path: string, offset: number): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const one = Buffer.alloc(1);
    await file.read(one, 0, 1, offset);
    one[0] = (one[0] ?? 0) ^ 0xff;
    await file.write(one, 0, 1, offset);
  } finally {
    await file.close();
  }
}

/** Writes `data` at `offset` of a file (created if missing) without truncating it: sparse files. */
export async function writeAt(path: string, data: Buffer, offset: number): Promise<void> {
  const handle = await open(path, 'a+').then(async (h) => {
    await h.close();
    return open(path, 'r+');
  });
  try {
    await handle.write(data, 0, data.length, offset);
  } finally {
    await handle.close();
  }
}

/** A unix socket file that outlives its server: Node unlinks the path on close, a hard link stays. */
export async function socketFile(path: string): Promise<void> {
  const temp = `${path}.listening`;
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(temp, resolve));
  await link(temp, path);
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
