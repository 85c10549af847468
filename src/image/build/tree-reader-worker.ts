/**
 * Worker thread: reads a directory tree — entries and file contents — with synchronous syscalls and
 * sends it to the walker in image order (see tree-reader-protocol.ts). Synchronous calls are the
 * point: on the main thread every async lstat/open/read/close cost ~10–30 µs of JavaScript and
 * promise bookkeeping, which dominated builds of trees of small files; here they cost the syscall.
 *
 * Never follows symlinks (lstat, O_NOFOLLOW) and does not descend into other filesystems.
 */

import { createHash } from 'node:crypto';
import {
  type BigIntStats,
  closeSync,
  constants,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
} from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { ImageBuildError } from './errors.js';
import { attributesOf, decodeRdev, kindOf } from './stat-attributes.js';
import type { EntryRecord, TreeReaderInput, TreeRecord } from './tree-reader-protocol.js';
import { utf8Name, utf8Target } from './utf8-names.js';

/** A message is sent once it holds this many file bytes or records. */
const BATCH_BYTES = 1024 * 1024;
const BATCH_RECORDS = 1024;
/**
 * Reads up to this size share one ArrayBuffer per message (a "pack"): one buffer per small file
 * made the main thread's garbage collector the build's bottleneck.
 */
const SMALL_READ_BYTES = 64 * 1024;

class TreeSender {
  private records: TreeRecord[] = [];
  private readonly transfer = new Set<ArrayBuffer>();
  private batchBytes = 0;
  private pack: Buffer | null = null;
  private packUsed = 0;
  /** File bytes sent (or queued to send) so far. */
  private produced = 0n;
  private readonly consumed: BigInt64Array;

  constructor(
    private readonly input: TreeReaderInput,
    private readonly port: NonNullable<typeof parentPort>,
  ) {
    this.consumed = new BigInt64Array(input.consumed);
  }

  add(record: TreeRecord): void {
    this.records.push(record);
    if (record.type === 'data') {
      this.transfer.add(record.bytes.buffer as ArrayBuffer);
      this.batchBytes += record.bytes.length;
      this.produced += BigInt(record.bytes.length);
    }
    if (this.batchBytes >= BATCH_BYTES || this.records.length >= BATCH_RECORDS) this.flush();
  }

  flush(): void {
    if (this.records.length === 0) return;
    // A pack that goes with the message is gone from this thread (even if only an empty view used it).
    if (this.pack && this.transfer.has(this.pack.buffer as ArrayBuffer)) this.pack = null;
    this.port.postMessage(this.records, [...this.transfer]);
    this.records = [];
    this.transfer.clear();
    this.batchBytes = 0;
  }

  /** A buffer to read `want` bytes into: a view of the current pack for small reads, else its own. */
  readBuffer(want: number): Buffer {
    // Its own ArrayBuffer (not Node's pool), so it can be moved to the main thread.
    if (want > SMALL_READ_BYTES) return Buffer.allocUnsafeSlow(want);
    if (!this.pack || this.packUsed + want > BATCH_BYTES) {
      this.flush();
      this.pack = Buffer.allocUnsafeSlow(BATCH_BYTES);
      this.packUsed = 0;
    }
    return this.pack.subarray(this.packUsed, this.packUsed + want);
  }

  /** Keeps the first `length` bytes of the last small read buffer (the rest is reused). */
  claim(buffer: Buffer, length: number): void {
    if (buffer.buffer === this.pack?.buffer) this.packUsed += length;
  }

  /** Blocks while the walker is `budgetBytes` behind (after sending what is queued, so it can catch up). */
  waitForRoom(): void {
    const budget = BigInt(this.input.budgetBytes);
    if (this.produced - Atomics.load(this.consumed, 0) <= budget) return;
    this.flush();
    for (;;) {
      const consumed = Atomics.load(this.consumed, 0);
      if (this.produced - consumed <= budget) return;
      Atomics.wait(this.consumed, 0, consumed, 1000);
    }
  }
}

class TreeReader {
  private nextId = 0;
  private readonly inodes = new Map<string, number>();
  private rootDev = 0n;

  constructor(
    private readonly input: TreeReaderInput,
    private readonly sender: TreeSender,
  ) {}

  run(): void {
    const stats = lstatSync(this.input.root, { bigint: true });
    if (!stats.isDirectory()) throw new ImageBuildError('EINVAL', `${this.input.root} is not a directory`);
    this.rootDev = stats.dev;
    this.sender.add(this.entry(this.input.root, -1, '', stats));
    this.readDirectory(this.input.root, 0);
    this.sender.add({ type: 'done' });
    this.sender.flush();
  }

  private readDirectory(path: string, id: number): void {
    const names = readdirSync(path, { encoding: 'buffer' }).sort(Buffer.compare);
    for (const raw of names) {
      const name = utf8Name(raw, path);
      const childPath = join(path, name);
      const stats = lstatSync(childPath, { bigint: true });
      const hardLinked = !stats.isDirectory() && stats.nlink > 1n;
      const key = `${stats.dev}:${stats.ino}`;
      const known = hardLinked ? this.inodes.get(key) : undefined;
      if (known !== undefined) {
        this.sender.add({ type: 'link', parent: id, name, target: known });
        continue;
      }
      const entry = this.entry(childPath, id, name, stats);
      if (hardLinked) this.inodes.set(key, entry.id);
      this.sender.add(entry);
      if (entry.kind === 'file' && entry.size > 0) this.readFile(childPath, entry.id, entry.size);
      if (entry.kind === 'directory' && !entry.mountPoint) this.readDirectory(childPath, entry.id);
    }
  }

  private entry(path: string, parent: number, name: string, stats: BigIntStats): EntryRecord {
    const kind = kindOf(stats);
    if (!kind)
      throw new ImageBuildError('EINVAL', `${path}: unsupported file type (mode ${stats.mode.toString(8)})`);
    const record: EntryRecord = {
      type: 'entry',
      id: this.nextId++,
      parent,
      name,
      kind,
      ...attributesOf(stats),
      size: kind === 'file' ? Number(stats.size) : 0,
      ...(kind === 'char' || kind === 'block' ? decodeRdev(stats.rdev) : { rdevMajor: 0, rdevMinor: 0 }),
    };
    if (kind === 'symlink') record.target = utf8Target(readlinkSync(path, { encoding: 'buffer' }), path);
    if (kind === 'directory' && stats.dev !== this.rootDev) record.mountPoint = true;
    return record;
  }

  /** Sends the content in pieces, one byte past `size` at most (so growth since lstat shows). */
  private readFile(path: string, id: number, size: number): void {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      let position = 0;
      for (;;) {
        this.sender.waitForRoom();
        const want = Math.min(this.input.readSize, size - position + 1);
        const buffer = this.sender.readBuffer(want);
        const got = readSync(fd, buffer, 0, want, position);
        this.sender.claim(buffer, got);
        position += got;
        // A short read of a regular file means end of file.
        const end = got < want || position > size;
        const bytes = got === want ? buffer : buffer.subarray(0, got);
        const digests = this.input.digestSize ? sliceDigests(bytes, this.input.digestSize) : undefined;
        this.sender.add({ type: 'data', id, bytes, end, digests });
        if (end) return;
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** sha256 of each `sliceSize` slice of `bytes`, 32 bytes each (hashed here, off the main thread). */
function sliceDigests(bytes: Buffer, sliceSize: number): Uint8Array {
  const digests = Buffer.allocUnsafeSlow(Math.ceil(bytes.length / sliceSize) * 32);
  for (let at = 0, i = 0; at < bytes.length; at += sliceSize, i += 32) {
    createHash('sha256')
      .update(bytes.subarray(at, at + sliceSize))
      .digest()
      .copy(digests, i);
  }
  return digests;
}

function main(): void {
  const port = parentPort;
  if (!port) throw new Error('tree-reader-worker must run as a worker thread');
  const input = workerData as TreeReaderInput;
  const sender = new TreeSender(input, port);
  try {
    new TreeReader(input, sender).run();
  } catch (err) {
    sender.flush();
    const e = err as NodeJS.ErrnoException;
    port.postMessage([{ type: 'error', code: e.code ?? 'EIO', message: e.message } satisfies TreeRecord]);
  }
}

main();
