import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, link, mkdir, open, readdir, writeFile } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

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

/**
 * The attribute-heavy part of an "every kind of file" test tree, added to `root`, which must already
 * hold `empty`, `small.txt`, `big.bin`, `names/` and `links/short`: devices, a fifo and a socket under
 * `specials/` (diff -r cannot compare those), odd owners and modes under `owners/`, xattrs, and
 * nanosecond / pre-1970 / symlink mtimes (set last: creating entries moves directory mtimes).
 */
export async function addSpecialsOwnersXattrsAndTimes(root: string, specials: string): Promise<void> {
  const sh = (command: string, ...args: string[]) => run(command, args);
  await mkdir(specials);
  await sh('mknod', join(specials, 'null'), 'c', '1', '3');
  await sh('mknod', join(specials, 'odd-char'), 'c', '300', '1234');
  await sh('mknod', join(specials, 'loop'), 'b', '7', '200');
  await sh('mkfifo', join(specials, 'fifo'));
  await socketFile(join(specials, 'socket'));

  await mkdir(join(root, 'owners'));
  const owned = join(root, 'owners', 'uid70000');
  await writeFile(owned, 'owned\n');
  await sh('chown', '70000:80000', owned);
  await sh('chown', '-h', '4242:4343', join(root, 'links', 'short'));
  await writeFile(join(root, 'owners', 'setuid'), '#!/bin/sh\n', { mode: 0o755 });
  await sh('chmod', '4755', join(root, 'owners', 'setuid'));
  await writeFile(join(root, 'owners', 'no-access'), 'secret\n');
  await sh('chmod', '000', join(root, 'owners', 'no-access'));
  await mkdir(join(root, 'owners', 'sticky'));
  await sh('chmod', '1777', join(root, 'owners', 'sticky'));
  await mkdir(join(root, 'owners', 'setgid'));
  await sh('chmod', '2775', join(root, 'owners', 'setgid'));

  await sh('setfattr', '-n', 'user.note', '-v', 'hello', join(root, 'small.txt'));
  await sh('setfattr', '-n', 'user.empty', join(root, 'small.txt'));
  await sh(
    'setfattr',
    '-n',
    'user.binary',
    '-v',
    `0x${randomBytes(200).toString('hex')}`,
    join(root, 'big.bin'),
  );
  await sh('setfattr', '-n', 'trusted.overlay.opaque', '-v', 'y', join(root, 'owners', 'sticky'));
  await sh('setfattr', '-n', 'trusted.secret', '-v', '0x00ff00', join(root, 'owners', 'uid70000'));
  await sh('setfattr', '-h', '-n', 'trusted.on-symlink', '-v', 'yes', join(root, 'links', 'short'));
  await sh('setfattr', '-n', 'user.dir', '-v', 'on a directory', join(root, 'names'));

  await sh('touch', '-h', '-d', '@1600000000.123456789', join(root, 'links', 'short'));
  await sh('touch', '-d', '@1234567890.987654321', join(root, 'small.txt'));
  await sh('touch', '-d', '@-86400.5', join(root, 'empty'));
  await sh('touch', '-d', '@1700000000.000000001', join(root, 'names'));
}
