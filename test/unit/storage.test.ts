import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import {
  type PieceRecord,
  StorageError,
  type StorageOptions,
  TaskStorage,
} from '../../src/daemon/storage/index.js';
import { createLogger } from '../../src/observability/index.js';

const logger = createLogger('storage-test', 'silent');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'damselfly-storage-'));
  dirs.push(d);
  return d;
}

function options(dataDir: string, extra: Partial<StorageOptions> = {}): StorageOptions {
  return {
    dataDir,
    taskTtl: 0,
    capacity: 0,
    highWatermarkPercent: 80,
    lowWatermarkPercent: 60,
    logger,
    ...extra,
  };
}

function taskId(name: string): string {
  return createHash('sha256').update(name).digest('hex');
}

function digest(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A content of `length` bytes cut into pieces of `pieceLength`. */
function content(length: number, pieceLength: number) {
  const bytes = randomBytes(length);
  const pieces: { piece: PieceRecord; data: Buffer }[] = [];
  for (let offset = 0, number = 0; offset < length; offset += pieceLength, number++) {
    const data = bytes.subarray(offset, Math.min(offset + pieceLength, length));
    pieces.push({ piece: { number, offset, length: data.length, digest: digest(data) }, data });
  }
  return { bytes, pieces };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function storageCode(code: string) {
  return (err: unknown) => err instanceof StorageError && err.code === code;
}

/** A task with all its pieces written. */
async function fullTask(s: TaskStorage, name: string, length: number, pieceLength: number) {
  const id = taskId(name);
  const c = content(length, pieceLength);
  s.putTask(id, { url: `https://example.com/${name}`, contentLength: length, pieceLength });
  await Promise.all(c.pieces.map(({ piece, data }) => s.writePiece(id, piece, data)));
  return { id, ...c };
}

describe('TaskStorage', () => {
  it('writes concurrent pieces and reads them back', async () => {
    const s = TaskStorage.open(options(tempDir()));
    const id = taskId('round-trip');
    const pieceLength = 64 * 1024;
    const length = 5 * pieceLength + 1234; // a short last piece
    const c = content(length, pieceLength);
    const task = s.putTask(id, { url: 'https://example.com/a', contentLength: length, pieceLength });
    assert.equal(task.pieceCount, 6);
    assert.equal(task.state, 'running');
    for (const { piece } of c.pieces) assert.equal(s.hasPiece(id, piece.number), false);

    await Promise.all(c.pieces.map(({ piece, data }) => s.writePiece(id, piece, data)));

    for (const { piece, data } of c.pieces) {
      assert.equal(s.hasPiece(id, piece.number), true);
      assert.deepEqual(s.getPiece(id, piece.number), piece);
      assert.ok((await s.readPiece(id, piece.number)).equals(data), `piece ${piece.number}`);
    }
    assert.equal(s.hasPiece(id, 6), false);
    assert.deepEqual(
      s.listPieces(id).map((p) => p.number),
      [0, 1, 2, 3, 4, 5],
    );
    assert.equal(s.usage().usedBytes, length);
    assert.ok(s.usage().capacityBytes > 0, 'capacity 0 means the size of the filesystem');
    await assert.rejects(s.readPiece(id, 6), storageCode('ENOPIECE'));

    // A range inside present pieces can be streamed before the task is finished.
    const range = await readAll(s.createContentStream(id, 100, 3 * pieceLength + 7));
    assert.ok(range.equals(c.bytes.subarray(100, 3 * pieceLength + 8)));

    s.markSucceeded(id);
    assert.equal(s.getTask(id)?.state, 'succeeded');
    assert.ok(s.getTask(id)?.finishedAt);
    assert.ok((await readAll(s.createContentStream(id))).equals(c.bytes));
    assert.equal(statSync(s.contentPath(id)).size, length);
    s.close();
  });

  it('streams only present pieces of an unfinished task and refuses to finish an incomplete one', async () => {
    const s = TaskStorage.open(options(tempDir()));
    const id = taskId('partial');
    const c = content(4000, 1000);
    s.putTask(id, { url: 'u', contentLength: 4000, pieceLength: 1000 });
    await s.writePiece(id, c.pieces[0]!.piece, c.pieces[0]!.data);
    await s.writePiece(id, c.pieces[2]!.piece, c.pieces[2]!.data);
    assert.ok((await readAll(s.createContentStream(id, 0, 999))).equals(c.bytes.subarray(0, 1000)));
    assert.throws(() => s.createContentStream(id, 500, 2500), storageCode('ENOPIECE'));
    assert.throws(() => s.createContentStream(id, 0, 4000), storageCode('EINVAL'));
    assert.throws(() => s.markSucceeded(id), storageCode('EINCOMPLETE'));
    s.close();
  });

  it("emits 'piece' once, after the row is committed, and writes are idempotent", async () => {
    const dir = tempDir();
    const s = TaskStorage.open(options(dir));
    const reader = new Database(join(dir, 'metadata.db'), { readonly: true });
    const id = taskId('events');
    const c = content(3000, 1000);
    s.putTask(id, { url: 'u', contentLength: 3000, pieceLength: 1000 });
    const seen: { number: number; present: boolean; rows: number }[] = [];
    s.on('piece', (tid, piece) => {
      assert.equal(tid, id);
      const row = reader.prepare('SELECT count(*) AS n FROM pieces WHERE task_id = ? AND number = ?');
      const { n } = row.get(tid, piece.number) as { n: number };
      seen.push({ number: piece.number, present: s.hasPiece(tid, piece.number), rows: n });
    });
    const first = c.pieces[1]!;
    // The same piece written three times at once and once more afterwards: one write, one event.
    await Promise.all([1, 2, 3].map(() => s.writePiece(id, first.piece, first.data)));
    await s.writePiece(id, first.piece, first.data);
    assert.deepEqual(seen, [{ number: 1, present: true, rows: 1 }]);
    assert.equal(s.usage().usedBytes, 1000);
    reader.close();
    s.close();
  });

  it('rejects pieces that do not fit the task layout', async () => {
    const s = TaskStorage.open(options(tempDir()));
    const id = taskId('layout');
    s.putTask(id, { url: 'u', contentLength: 2500, pieceLength: 1000 });
    const d = (n: number) => Buffer.alloc(n, 1);
    const p = (number: number, offset: number, length: number) => ({
      number,
      offset,
      length,
      digest: digest(d(length)),
    });
    await assert.rejects(s.writePiece(id, p(0, 0, 1000), d(999)), storageCode('EINVAL')); // data ≠ length
    await assert.rejects(s.writePiece(id, p(1, 999, 1000), d(1000)), storageCode('EINVAL')); // wrong offset
    await assert.rejects(s.writePiece(id, p(2, 2000, 1000), d(1000)), storageCode('EINVAL')); // last is 500
    await assert.rejects(s.writePiece(id, p(3, 3000, 1000), d(1000)), storageCode('EINVAL')); // past the end
    await assert.rejects(
      s.writePiece(id, { ...p(0, 0, 1000), digest: '../etc' }, d(1000)),
      storageCode('EINVAL'),
    );
    await assert.rejects(s.writePiece(taskId('missing'), p(0, 0, 1000), d(1000)), storageCode('ENOTASK'));
    await s.writePiece(id, p(2, 2000, 500), d(500));
    assert.deepEqual(s.listPieces(id), [p(2, 2000, 500)]);
    s.close();
  });

  it('rejects invalid task ids everywhere, without touching the file system', async () => {
    const dir = tempDir();
    const s = TaskStorage.open(options(dir));
    const bad = ['../x', 'ABC', '', taskId('x').toUpperCase(), taskId('x').slice(1), `${taskId('x')}/..`];
    const piece = { number: 0, offset: 0, length: 1, digest: digest(Buffer.alloc(1)) };
    for (const id of bad) {
      const inval = storageCode('EINVAL');
      assert.throws(() => s.putTask(id, { url: 'u', contentLength: 1, pieceLength: 1 }), inval, id);
      assert.throws(() => s.getTask(id), inval, id);
      assert.throws(() => s.hasPiece(id, 0), inval, id);
      assert.throws(() => s.getPiece(id, 0), inval, id);
      assert.throws(() => s.listPieces(id), inval, id);
      assert.throws(() => s.contentPath(id), inval, id);
      assert.throws(() => s.createContentStream(id), inval, id);
      assert.throws(() => s.touch(id), inval, id);
      assert.throws(() => s.acquire(id), inval, id);
      assert.throws(() => s.markSucceeded(id), inval, id);
      assert.throws(() => s.markFailed(id), inval, id);
      await assert.rejects(s.writePiece(id, piece, Buffer.alloc(1)), inval, id);
      await assert.rejects(s.readPiece(id, 0), inval, id);
      await assert.rejects(s.deleteTask(id), inval, id);
    }
    assert.throws(() => s.hasPiece(taskId('x'), -1), storageCode('EINVAL'));
    assert.throws(() => s.hasPiece(taskId('x'), 1.5), storageCode('EINVAL'));
    assert.equal(s.listTasks().length, 0);
    assert.deepEqual(readdirSync(join(dir, 'content', 'tasks')), []);
    assert.deepEqual(readdirSync(dir).sort(), [
      'content',
      'metadata.db',
      'metadata.db-shm',
      'metadata.db-wal',
    ]);
    s.close();
  });

  it('keeps succeeded tasks and the pieces of running tasks across a restart', async () => {
    const dir = tempDir();
    let s = TaskStorage.open(options(dir));
    const done = await fullTask(s, 'done', 10_000, 4096);
    s.markSucceeded(done.id);
    const running = taskId('running');
    const r = content(8192, 4096);
    s.putTask(running, { url: 'u', contentLength: 8192, pieceLength: 4096 });
    await s.writePiece(running, r.pieces[1]!.piece, r.pieces[1]!.data);
    const empty = taskId('empty');
    s.putTask(empty, { url: 'u', contentLength: 0, pieceLength: 4096 });
    s.markSucceeded(empty);
    s.close();

    s = TaskStorage.open(options(dir));
    const task = s.getTask(done.id);
    assert.equal(task?.state, 'succeeded');
    assert.equal(task?.pieceCount, 3);
    assert.deepEqual(
      s.listPieces(done.id),
      done.pieces.map((p) => p.piece),
    );
    assert.ok((await readAll(s.createContentStream(done.id))).equals(done.bytes));
    assert.equal(s.getTask(running)?.state, 'running');
    assert.equal(s.hasPiece(running, 0), false);
    assert.equal(s.hasPiece(running, 1), true);
    assert.ok((await s.readPiece(running, 1)).equals(r.pieces[1]!.data));
    assert.equal((await readAll(s.createContentStream(empty))).length, 0);
    assert.equal(s.usage().usedBytes, 10_000 + 4096);
    s.close();
  });

  it('repairs on open: drops tasks without content, pieces past the end and files without rows', async () => {
    const dir = tempDir();
    let s = TaskStorage.open(options(dir));
    const gone = await fullTask(s, 'gone', 3000, 1000);
    s.markSucceeded(gone.id);
    const cut = await fullTask(s, 'cut', 3000, 1000);
    s.markSucceeded(cut.id);
    const kept = await fullTask(s, 'kept', 3000, 1000);
    s.close();

    rmSync(s.contentPath(gone.id));
    truncateSync(s.contentPath(cut.id), 1500); // as if the last pieces never reached the disk
    const orphan = taskId('orphan');
    mkdirSync(join(dir, 'content', 'tasks', orphan.slice(0, 3)), { recursive: true });
    writeFileSync(join(dir, 'content', 'tasks', orphan.slice(0, 3), orphan), 'left by a crash');
    writeFileSync(join(dir, 'content', 'trash', `${orphan}.1.1`), 'left by a crash');

    s = TaskStorage.open(options(dir));
    assert.equal(s.getTask(gone.id), undefined);
    assert.equal(s.hasPiece(gone.id, 0), false);
    assert.deepEqual(
      s.listPieces(cut.id).map((p) => p.number),
      [0],
    );
    assert.equal(s.getTask(cut.id)?.state, 'failed', 'an incomplete task is not served as succeeded');
    assert.equal(s.listPieces(kept.id).length, 3);
    assert.equal(existsSync(join(dir, 'content', 'tasks', orphan.slice(0, 3), orphan)), false);
    assert.deepEqual(readdirSync(join(dir, 'content', 'trash')), []);
    assert.equal(s.usage().usedBytes, 1000 + 3000);
    s.close();

    // The repair is durable: a third open sees the same state.
    s = TaskStorage.open(options(dir));
    assert.equal(s.getTask(gone.id), undefined);
    assert.equal(s.listPieces(cut.id).length, 1);
    s.close();
  });

  it('putTask keeps pieces of the same layout and drops them when the source changed', async () => {
    const s = TaskStorage.open(options(tempDir()));
    const t = await fullTask(s, 'layout-change', 3000, 1000);
    s.markSucceeded(t.id);

    const same = s.putTask(t.id, {
      url: 'https://mirror.example.com/x',
      contentLength: 3000,
      pieceLength: 1000,
    });
    assert.equal(same.url, 'https://mirror.example.com/x');
    assert.equal(same.state, 'succeeded');
    assert.equal(s.listPieces(t.id).length, 3);

    const changed = s.putTask(t.id, { url: 'u', contentLength: 3500, pieceLength: 1000 });
    assert.equal(changed.pieceCount, 4);
    assert.equal(changed.state, 'running');
    assert.equal(changed.finishedAt, null);
    assert.deepEqual(s.listPieces(t.id), []);
    assert.equal(s.hasPiece(t.id, 0), false);
    assert.equal(s.usage().usedBytes, 0);
    assert.equal(statSync(s.contentPath(t.id)).size, 0);

    const other = await fullTask(s, 'piece-length-change', 2000, 1000);
    s.putTask(other.id, { url: 'u', contentLength: 2000, pieceLength: 500 });
    assert.deepEqual(s.listPieces(other.id), []);
    s.close();
  });

  it('putTask keeps the fitting pieces when an unknown length becomes known', async () => {
    const s = TaskStorage.open(options(tempDir()));
    const id = taskId('unknown-length');
    const c = content(2500, 1000);
    assert.equal(s.putTask(id, { url: 'u', contentLength: -1, pieceLength: 1000 }).pieceCount, -1);
    for (const { piece, data } of c.pieces) await s.writePiece(id, piece, data);
    assert.throws(() => s.markSucceeded(id), storageCode('EINCOMPLETE'));
    s.putTask(id, { url: 'u', contentLength: 2500, pieceLength: 1000 });
    assert.equal(s.listPieces(id).length, 3);
    s.markSucceeded(id);
    assert.ok((await readAll(s.createContentStream(id))).equals(c.bytes));
    s.close();
  });

  it('deleteTask removes rows and the content file, and emits deleted', async () => {
    const dir = tempDir();
    const s = TaskStorage.open(options(dir));
    const t = await fullTask(s, 'delete-me', 3000, 1000);
    const path = s.contentPath(t.id);
    assert.equal(path, join(dir, 'content', 'tasks', t.id.slice(0, 3), t.id));
    assert.ok(existsSync(path));
    const deleted: string[] = [];
    s.on('deleted', (id) => deleted.push(id));

    await s.deleteTask(t.id);
    assert.deepEqual(deleted, [t.id]);
    assert.equal(existsSync(path), false);
    assert.deepEqual(readdirSync(join(dir, 'content', 'trash')), []);
    assert.equal(s.getTask(t.id), undefined);
    assert.equal(s.hasPiece(t.id, 0), false);
    assert.equal(s.usage().usedBytes, 0);
    await assert.rejects(s.readPiece(t.id, 0), storageCode('ENOTASK'));
    await assert.rejects(s.deleteTask(t.id), storageCode('ENOTASK'));

    // The same id can come back at once, with a fresh file.
    s.putTask(t.id, { url: 'u', contentLength: 3000, pieceLength: 1000 });
    assert.equal(statSync(path).size, 0);
    assert.deepEqual(s.listPieces(t.id), []);
    s.close();

    const reopened = TaskStorage.open(options(dir));
    assert.deepEqual(reopened.listPieces(t.id), []);
    reopened.close();
  });

  it('a write racing a delete is not recorded and does not resurrect the file', async () => {
    const s = TaskStorage.open(options(tempDir()));
    const id = taskId('race');
    const c = content(1000, 1000);
    s.putTask(id, { url: 'u', contentLength: 1000, pieceLength: 1000 });
    // Attach the rejection check before awaiting anything, so the rejection is never unhandled.
    const rejected = assert.rejects(
      s.writePiece(id, c.pieces[0]!.piece, c.pieces[0]!.data),
      storageCode('ENOTASK'),
    );
    await s.deleteTask(id);
    await rejected;
    assert.equal(existsSync(s.contentPath(id)), false);
    assert.equal(s.usage().usedBytes, 0);
    s.close();
  });

  it('the cached content file follows delete, re-creation and layout changes, and is closed', async () => {
    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    const s = TaskStorage.open(options(tempDir()));
    const id = taskId('fd-cache');
    const first = content(3000, 1000);
    s.putTask(id, { url: 'u', contentLength: 3000, pieceLength: 1000 });
    await Promise.all(first.pieces.map(({ piece, data }) => s.writePiece(id, piece, data)));
    assert.deepEqual(await s.readPiece(id, 1), first.pieces[1]!.data);
    // Deleted and created again: the new file, not the handle of the old (unlinked) one.
    await s.deleteTask(id);
    const second = content(3000, 1000);
    s.putTask(id, { url: 'u', contentLength: 3000, pieceLength: 1000 });
    await Promise.all(second.pieces.map(({ piece, data }) => s.writePiece(id, piece, data)));
    assert.deepEqual(await s.readPiece(id, 2), second.pieces[2]!.data);
    s.markSucceeded(id);
    assert.deepEqual(readFileSync(s.contentPath(id)), second.bytes);
    // A layout change truncates the same file: the cached handle keeps working.
    const third = content(2000, 500);
    s.putTask(id, { url: 'u', contentLength: 2000, pieceLength: 500 });
    await Promise.all(third.pieces.map(({ piece, data }) => s.writePiece(id, piece, data)));
    s.markSucceeded(id);
    assert.deepEqual(readFileSync(s.contentPath(id)), third.bytes);
    // More tasks than files kept open: idle handles are closed and reopened on demand.
    const many = await Promise.all(
      Array.from({ length: 80 }, (_, i) => fullTask(s, `fd-many-${i}`, 1500, 1000)),
    );
    assert.ok(fds() - before <= 70, `${fds() - before} files open`);
    for (const t of many) assert.deepEqual(await s.readPiece(t.id, 1), t.pieces[1]!.data);
    s.close();
    await sleep(50);
    assert.ok(fds() - before <= 1, `${fds() - before} files still open after close`);
  });

  it('pieces written together share fdatasyncs, and each row follows a sync started after its write', async () => {
    const s = TaskStorage.open(options(tempDir()));
    const id = taskId('group-sync');
    const c = content(16 * 1000, 1000);
    s.putTask(id, { url: 'u', contentLength: c.bytes.length, pieceLength: 1000 });
    // Instrument FileHandle: a logical clock for write ends and datasync starts and ends.
    const probe = await open(s.contentPath(id), 'r');
    const proto = Object.getPrototypeOf(probe) as {
      write: (...a: unknown[]) => Promise<{ bytesWritten: number }>;
      datasync: () => Promise<void>;
    };
    await probe.close();
    const { write, datasync } = proto;
    let clock = 0;
    const writeEnd = new Map<number, number>(); // offset → tick
    const syncs: { start: number; end: number }[] = [];
    proto.write = async function (this: unknown, ...a: unknown[]) {
      const r = await write.apply(this, a);
      writeEnd.set(a[3] as number, ++clock);
      return r;
    };
    proto.datasync = async function (this: unknown) {
      const sync = { start: ++clock, end: Number.POSITIVE_INFINITY };
      syncs.push(sync);
      await sleep(20);
      await datasync.apply(this);
      sync.end = ++clock;
    };
    const recorded: { offset: number; at: number }[] = [];
    s.on('piece', (_id, p) => recorded.push({ offset: p.offset, at: ++clock }));
    try {
      await Promise.all(c.pieces.map(({ piece, data }) => s.writePiece(id, piece, data)));
    } finally {
      proto.write = write;
      proto.datasync = datasync;
    }
    assert.equal(recorded.length, 16);
    assert.ok(syncs.length < 16, `${syncs.length} datasyncs for 16 pieces written together`);
    for (const r of recorded) {
      const written = writeEnd.get(r.offset)!;
      assert.ok(
        syncs.some((x) => x.start > written && x.end < r.at),
        `piece at ${r.offset} recorded without a datasync after its write`,
      );
    }
    s.markSucceeded(id);
    assert.deepEqual(readFileSync(s.contentPath(id)), c.bytes);
    s.close();
  });

  it('gc removes tasks not accessed for the TTL, but never pinned ones', async () => {
    const s = TaskStorage.open(options(tempDir(), { taskTtl: 60 * 60 * 1000 }));
    const a = await fullTask(s, 'ttl-a', 1000, 1000);
    s.markSucceeded(a.id);
    const b = await fullTask(s, 'ttl-b', 1000, 1000);
    s.markFailed(b.id);
    const pinned = await fullTask(s, 'ttl-pinned', 1000, 1000);
    s.markSucceeded(pinned.id);
    const release = s.acquire(pinned.id);

    assert.deepEqual(await s.gc(Date.now() + 30 * 60 * 1000), []);
    const removed = await s.gc(Date.now() + 2 * 60 * 60 * 1000);
    assert.deepEqual(removed.sort(), [a.id, b.id].sort());
    assert.equal(s.getTask(a.id), undefined);
    assert.equal(existsSync(s.contentPath(a.id)), false);
    assert.equal(s.getTask(pinned.id)?.state, 'succeeded');

    release();
    release(); // idempotent
    assert.deepEqual(await s.gc(Date.now() + 2 * 60 * 60 * 1000), [pinned.id]);
    assert.equal(s.usage().usedBytes, 0);
    s.close();
  });

  it('gc evicts least recently accessed unpinned tasks above the high watermark down to the low one', async () => {
    // 4 tasks × 250 bytes = 1000 of 1000: above 80 %, evict down to ≤ 50 %.
    const s = TaskStorage.open(
      options(tempDir(), { capacity: 1000, highWatermarkPercent: 80, lowWatermarkPercent: 50 }),
    );
    const t1 = await fullTask(s, 'lru-1', 250, 100);
    const t2 = await fullTask(s, 'lru-2', 250, 100);
    const t3 = await fullTask(s, 'lru-3', 250, 100);
    const t4 = await fullTask(s, 'lru-4', 250, 100);
    for (const t of [t1, t2, t3, t4]) s.markSucceeded(t.id);
    // Access order, oldest first: t2 (pinned), t4, t1, t3.
    for (const t of [t2, t4, t1, t3]) {
      await sleep(5);
      s.touch(t.id);
    }
    const release = s.acquire(t2.id);
    await sleep(5);
    s.touch(t3.id);
    assert.deepEqual(s.usage(), { usedBytes: 1000, capacityBytes: 1000 });

    // acquire() counts as an access, so t2 is now the most recent; it is pinned anyway.
    const removed = await s.gc();
    assert.deepEqual(removed, [t4.id, t1.id]);
    assert.equal(s.usage().usedBytes, 500);
    assert.ok(s.getTask(t2.id) && s.getTask(t3.id));
    assert.deepEqual(await s.gc(), [], 'below the high watermark nothing is evicted');
    release();
    s.close();
  });

  it('gc under pressure skips pinned tasks even when they are the least recently used', async () => {
    const s = TaskStorage.open(
      options(tempDir(), { capacity: 1000, highWatermarkPercent: 80, lowWatermarkPercent: 10 }),
    );
    const old = await fullTask(s, 'pinned-old', 500, 100);
    await sleep(5);
    const young = await fullTask(s, 'young', 400, 100);
    const release = s.acquire(old.id);
    // Make the pinned task the least recent again after acquire touched it.
    await sleep(5);
    s.touch(young.id);
    assert.deepEqual(await s.gc(), [young.id]);
    assert.equal(s.usage().usedBytes, 500);
    release();
    s.close();
  });

  it('exportTo writes a finished task atomically and leaves nothing behind on failure', async () => {
    const dir = tempDir();
    const s = TaskStorage.open(options(dir));
    const t = await fullTask(s, 'export', 3 * 1024 + 5, 1024);
    const outDir = tempDir();
    await assert.rejects(s.exportTo(t.id, join(outDir, 'early.bin')), storageCode('EINCOMPLETE'));
    s.markSucceeded(t.id);
    await s.exportTo(t.id, join(outDir, 'out.bin'));
    assert.deepEqual(readFileSync(join(outDir, 'out.bin')), t.bytes);
    await assert.rejects(s.exportTo(t.id, join(outDir, 'missing-dir', 'out.bin')), storageCode('EEXPORT'));
    assert.deepEqual(readdirSync(outDir), ['out.bin']);
    s.close();
  });

  it('exportTo hard-links by default, copies on request and falls back to a copy across filesystems', async (t) => {
    const dir = tempDir();
    const s = TaskStorage.open(options(dir));
    const task = await fullTask(s, 'deliver', 2 * 1024 + 7, 1024);
    s.markSucceeded(task.id);
    const outDir = tempDir();
    const linked = join(outDir, 'linked.bin');
    assert.equal(await s.exportTo(task.id, linked), 'hard-link');
    assert.equal(statSync(linked).ino, statSync(s.contentPath(task.id)).ino);
    const copied = join(outDir, 'copied.bin');
    assert.equal(await s.exportTo(task.id, copied, 'copy'), 'copy');
    assert.notEqual(statSync(copied).ino, statSync(s.contentPath(task.id)).ino);
    assert.deepEqual(readFileSync(copied), task.bytes);
    // Another filesystem: a tmpfs mounted for the test (CI runs as root).
    if (process.getuid?.() !== 0) return t.skip('needs root to mount a tmpfs');
    const other = tempDir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'damselfly-test', other]);
    try {
      assert.equal(await s.exportTo(task.id, join(other, 'auto.bin')), 'copy');
      assert.deepEqual(readFileSync(join(other, 'auto.bin')), task.bytes);
      await assert.rejects(
        s.exportTo(task.id, join(other, 'forced.bin'), 'hard-link'),
        storageCode('EEXPORT'),
      );
      assert.deepEqual(readdirSync(other), ['auto.bin']);
    } finally {
      execFileSync('umount', [other]);
    }
    s.close();
  });

  it('a write through a hard-linked output is caught before the content is handed out again', async () => {
    const dir = tempDir();
    const s = TaskStorage.open(options(dir));
    const task = await fullTask(s, 'modified', 3 * 1024, 1024);
    s.markSucceeded(task.id);
    const outDir = tempDir();
    const first = join(outDir, 'first.bin');
    await s.exportTo(task.id, first);
    // Touching without changing bytes is harmless: every piece is checked and the export goes on.
    const later = new Date(Date.now() + 5000);
    utimesSync(first, later, later);
    assert.equal(await s.exportTo(task.id, join(outDir, 'touched.bin')), 'hard-link');
    const fd = openSync(first, 'r+');
    writeSync(fd, Buffer.from('tampered'), 0, 8, 1500);
    closeSync(fd);
    await assert.rejects(s.exportTo(task.id, join(outDir, 'second.bin')), storageCode('ECORRUPT'));
    assert.equal(
      s.getTask(task.id),
      undefined,
      'the changed task is removed, so the next get fetches it again',
    );
    assert.ok(!existsSync(join(outDir, 'second.bin')));
    s.close();
  });

  it('validates options and refuses use after close', async () => {
    const dir = tempDir();
    assert.throws(
      () => TaskStorage.open(options(dir, { highWatermarkPercent: 50, lowWatermarkPercent: 60 })),
      storageCode('EINVAL'),
    );
    const s = TaskStorage.open(options(dir));
    s.close();
    assert.throws(
      () => s.putTask(taskId('x'), { url: 'u', contentLength: 1, pieceLength: 1 }),
      storageCode('ESTORAGE'),
    );
    await assert.rejects(s.readPiece(taskId('x'), 0), storageCode('ESTORAGE'));
  });
});
