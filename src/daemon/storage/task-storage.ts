import { EventEmitter } from 'node:events';
import {
  closeSync,
  createReadStream,
  constants as fsConstants,
  mkdirSync,
  openSync,
  type ReadStream,
  readdirSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  truncateSync,
} from 'node:fs';
import { copyFile, type FileHandle, link, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger, type Logger } from '../../observability/index.js';
import { pieceDigest, stagingPathFor } from '../../task/index.js';
import { checkDigest, checkPieceNumber, checkTaskId, isErrno, StorageError } from './errors.js';
import { MetadataStore } from './metadata.js';
import type { PieceRecord, StorageOptions, StorageUsage, TaskMeta, TaskRecord } from './types.js';

/** accessedAt is exact in memory; it is written to SQLite at most this often per task (and on close). */
const ACCESS_PERSIST_INTERVAL_MS = 1000;
const MAX_PIECE_LENGTH = 2 ** 30;
const MAX_URL_LENGTH = 64 * 1024;
const STREAM_CHUNK = 1024 * 1024;
const SHARD = /^[0-9a-f]{3}$/;
const TASK_FILE = /^[0-9a-f]{64}$/;

export interface TaskStorageEvents {
  /** A piece's bytes are durable and its row is committed. */
  piece: [taskId: string, piece: PieceRecord];
  /** Every piece of the task is stored and the task is marked complete. */
  succeeded: [taskId: string];
  /** The task's rows are gone and its content file has been moved out of the content tree. */
  deleted: [taskId: string];
}

interface TaskEntry {
  record: TaskRecord;
  pieces: Map<number, PieceRecord>;
  /** Sum of the lengths of the present pieces. */
  bytes: number;
  pins: number;
  /**
   * Bumped whenever the content file is truncated (the layout changed) or the task is deleted: a write
   * that started under an older epoch wrote into bytes that no longer belong to the task.
   */
  epoch: number;
  deleted: boolean;
  /** Writes in flight, so that concurrent writes of the same piece do the I/O once. */
  writing: Map<number, Promise<void>>;
  persistedAccessedAt: number;
  /** The content file's mtime when checkIntact last found every piece intact. */
  verifiedMtime?: number;
  /** The directory entries leading to the content file have been fsynced in this process. */
  dirSynced: boolean;
  /**
   * The content file, opened once and kept (opening and closing it per piece cost 0.2–0.7 CPU-seconds per
   * GiB). Closed when the task is removed, the storage closes, or it is the least recently used of more
   * than MAX_OPEN_FILES — in each case only once no read, write or sync is using it (fdUsers).
   */
  fd: FileHandle | null;
  fdOpening: Promise<FileHandle> | null;
  fdUsers: number;
  /** The fdatasync in flight, and the one queued behind it (see syncData). */
  syncing: Promise<void> | null;
  nextSync: Promise<void> | null;
}

const NO_FD = { fd: null, fdOpening: null, fdUsers: 0, syncing: null, nextSync: null } as const;
/** How `exportTo` delivers: 'auto' hard-links and falls back to a copy; 'hard-link' never copies. */
export type ExportMode = 'auto' | 'hard-link' | 'copy';
export type Delivery = 'hard-link' | 'copy';
/** link(2) errors that mean "this filesystem or place cannot share the inode": copy instead. */
const LINK_REFUSALS = new Set(['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP', 'EACCES']);

/** Content files kept open at most; beyond that the least recently used idle one is closed. */
const MAX_OPEN_FILES = 64;

function pieceCountOf(contentLength: number, pieceLength: number): number {
  return contentLength < 0 ? -1 : Math.ceil(contentLength / pieceLength);
}

/** Whether a piece sits exactly where the task's layout puts piece `number`. */
function fitsLayout(task: TaskRecord, p: PieceRecord): boolean {
  if (!Number.isSafeInteger(p.number) || p.number < 0) return false;
  if (p.offset !== p.number * task.pieceLength) return false;
  if (!Number.isSafeInteger(p.length) || p.length <= 0) return false;
  if (task.contentLength < 0) return p.length <= task.pieceLength;
  if (p.number >= task.pieceCount) return false;
  return p.length === Math.min(task.pieceLength, task.contentLength - p.offset);
}

function copyTask(r: TaskRecord): TaskRecord {
  return { ...r };
}

function copyPiece(p: PieceRecord): PieceRecord {
  return { number: p.number, offset: p.offset, length: p.length, digest: p.digest };
}

async function writeFully(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

async function readFully(fh: FileHandle, length: number, position: number, into?: Buffer): Promise<Buffer> {
  const buf = into ?? Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new StorageError('ESTORAGE', `short read at ${position + done}`);
    done += bytesRead;
  }
  return buf;
}

async function syncDirectory(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function checkOptions(opts: StorageOptions): void {
  const bad = (what: string) => new StorageError('EINVAL', `invalid storage option ${what}`);
  if (typeof opts.dataDir !== 'string' || opts.dataDir === '') throw bad('dataDir');
  if (!Number.isFinite(opts.taskTtl) || opts.taskTtl < 0) throw bad('taskTtl');
  if (!Number.isFinite(opts.capacity) || opts.capacity < 0) throw bad('capacity');
  const { highWatermarkPercent: high, lowWatermarkPercent: low } = opts;
  if (!(high > 0 && high <= 100)) throw bad('highWatermarkPercent');
  if (!(low >= 0 && low <= high)) throw bad('lowWatermarkPercent (must be ≤ highWatermarkPercent)');
}

/**
 * Pieces of tasks on local disk: one sparse content file per task, metadata in SQLite, an in-memory index
 * for the hot questions (hasPiece, usage). A piece row is committed only after its bytes are fdatasync'ed,
 * so whatever the crash, no piece is ever reported present that is not on disk.
 */
export class TaskStorage extends EventEmitter<TaskStorageEvents> {
  private readonly tasks = new Map<string, TaskEntry>();
  private readonly tasksDir: string;
  private readonly trashDir: string;
  private readonly knownShards = new Set<string>();
  private usedBytes = 0;
  private trashSeq = 0;
  private closed = false;
  private gcRun: Promise<string[]> | undefined;
  /** Entries whose content file is open, least recently used first. */
  private readonly openFiles = new Map<string, TaskEntry>();

  private constructor(
    private readonly opts: StorageOptions,
    private readonly meta: MetadataStore,
    private readonly capacityBytes: number,
    private readonly log: Logger,
  ) {
    super();
    this.tasksDir = join(opts.dataDir, 'content', 'tasks');
    this.trashDir = join(opts.dataDir, 'content', 'trash');
  }

  /** Creates the directories, opens <dataDir>/metadata.db and repairs what a crash may have left. */
  static open(opts: StorageOptions): TaskStorage {
    checkOptions(opts);
    const log = opts.logger ?? createLogger('storage');
    let meta: MetadataStore;
    let capacity: number;
    try {
      mkdirSync(join(opts.dataDir, 'content', 'tasks'), { recursive: true });
      mkdirSync(join(opts.dataDir, 'content', 'trash'), { recursive: true });
      if (opts.capacity > 0) {
        capacity = opts.capacity;
      } else {
        const fs = statfsSync(opts.dataDir);
        capacity = fs.blocks * fs.bsize;
      }
      meta = new MetadataStore(join(opts.dataDir, 'metadata.db'));
    } catch (err) {
      throw new StorageError(
        'ESTORAGE',
        `cannot open storage in ${opts.dataDir}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    const storage = new TaskStorage(opts, meta, capacity, log);
    try {
      storage.repair();
    } catch (err) {
      meta.close();
      throw new StorageError(
        'ESTORAGE',
        `cannot repair storage in ${opts.dataDir}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    return storage;
  }

  // ---- tasks ------------------------------------------------------------------------------------------

  getTask(taskId: string): TaskRecord | undefined {
    const entry = this.tasks.get(checkTaskId(taskId));
    return entry && copyTask(entry.record);
  }

  /** All tasks, oldest first. */
  listTasks(): TaskRecord[] {
    return [...this.tasks.values()].map((e) => copyTask(e.record)).sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * Creates the task (and its empty content file) or updates its url and layout. Pieces of an unchanged
   * layout are kept; when the length becomes known for the first time (it was -1) with the same piece
   * length, the pieces that fit it are kept; any other layout change means the source changed and drops
   * every piece. A failed task becomes running again: putTask starts a new attempt.
   */
  putTask(taskId: string, meta: TaskMeta): TaskRecord {
    this.checkOpen();
    const id = checkTaskId(taskId);
    const { url, contentLength, pieceLength } = meta ?? ({} as TaskMeta);
    if (typeof url !== 'string' || url.length > MAX_URL_LENGTH)
      throw new StorageError('EINVAL', 'invalid url');
    if (!Number.isSafeInteger(contentLength) || contentLength < -1) {
      throw new StorageError('EINVAL', `invalid content length ${String(contentLength)}`);
    }
    if (!Number.isSafeInteger(pieceLength) || pieceLength <= 0 || pieceLength > MAX_PIECE_LENGTH) {
      throw new StorageError('EINVAL', `invalid piece length ${String(pieceLength)}`);
    }
    const now = Date.now();
    const entry = this.tasks.get(id);

    if (!entry) {
      const record: TaskRecord = {
        id,
        url,
        contentLength,
        pieceLength,
        pieceCount: pieceCountOf(contentLength, pieceLength),
        state: 'running',
        createdAt: now,
        updatedAt: now,
        accessedAt: now,
        finishedAt: null,
      };
      this.io(`create content file of ${id}`, () => this.createContentFile(id));
      this.io(`record task ${id}`, () => this.meta.upsertTask(record));
      this.tasks.set(id, {
        record,
        pieces: new Map(),
        bytes: 0,
        pins: 0,
        epoch: 0,
        deleted: false,
        writing: new Map(),
        persistedAccessedAt: now,
        dirSynced: false,
        ...NO_FD,
      });
      this.log.debug({ taskId: id, contentLength, pieceLength }, 'task created');
      return copyTask(record);
    }

    const old = entry.record;
    const next: TaskRecord = {
      ...old,
      url,
      contentLength,
      pieceLength,
      pieceCount: pieceCountOf(contentLength, pieceLength),
      updatedAt: now,
      accessedAt: now,
    };
    if (next.state === 'failed') {
      next.state = 'running';
      next.finishedAt = null;
    }
    const sameLayout = old.contentLength === contentLength && old.pieceLength === pieceLength;
    const lengthLearnt = old.contentLength === -1 && contentLength >= 0 && old.pieceLength === pieceLength;

    if (sameLayout) {
      this.io(`update task ${id}`, () => this.meta.upsertTask(next));
    } else if (lengthLearnt) {
      const misfits = [...entry.pieces.values()].filter((p) => !fitsLayout(next, p)).map((p) => p.number);
      next.state = 'running';
      next.finishedAt = null;
      this.io(`update task ${id}`, () => {
        this.meta.upsertTask(next);
        this.meta.deletePieces(id, misfits);
      });
      for (const n of misfits) this.forgetPiece(entry, n);
    } else {
      // The source changed: every stored byte belongs to the old content.
      next.state = 'running';
      next.finishedAt = null;
      this.io(`replace layout of ${id}`, () => this.meta.replaceLayout(next));
      this.usedBytes -= entry.bytes;
      entry.bytes = 0;
      entry.pieces.clear();
      entry.epoch++;
      this.io(`truncate content file of ${id}`, () => this.createContentFile(id));
      this.log.info(
        { taskId: id, from: [old.contentLength, old.pieceLength], to: [contentLength, pieceLength] },
        'task layout changed, pieces dropped',
      );
    }
    entry.record = next;
    entry.persistedAccessedAt = now;
    return copyTask(next);
  }

  markSucceeded(taskId: string): void {
    this.checkOpen();
    const entry = this.entry(taskId);
    const r = entry.record;
    if (r.state === 'succeeded') return;
    if (r.contentLength < 0) {
      throw new StorageError('EINCOMPLETE', `task ${r.id}: content length unknown (putTask it first)`);
    }
    if (entry.pieces.size < r.pieceCount) {
      throw new StorageError(
        'EINCOMPLETE',
        `task ${r.id}: ${entry.pieces.size} of ${r.pieceCount} pieces stored`,
      );
    }
    // Stray bytes past the end can only come from writes of an abandoned layout; the file is the content.
    this.io(`trim content file of ${r.id}`, () => truncateSync(this.contentPath(r.id), r.contentLength));
    const now = Date.now();
    this.io(`update task ${r.id}`, () => this.meta.setState(r.id, 'succeeded', now, now));
    r.state = 'succeeded';
    r.updatedAt = now;
    r.finishedAt = now;
    this.emitSafely('succeeded', r.id);
  }

  markFailed(taskId: string): void {
    this.checkOpen();
    const r = this.entry(taskId).record;
    if (r.state === 'failed') return;
    const now = Date.now();
    this.io(`update task ${r.id}`, () => this.meta.setState(r.id, 'failed', now, now));
    r.state = 'failed';
    r.updatedAt = now;
    r.finishedAt = now;
  }

  /** The task was used: GC evicts the least recently used first and expires tasks unused for taskTtl. */
  touch(taskId: string): void {
    this.checkOpen();
    this.touchEntry(this.entry(taskId));
  }

  /**
   * Pins the task while it is downloaded, uploaded or exported: GC never removes a pinned task (an explicit
   * deleteTask still does). Pinning and releasing count as an access. The returned release is idempotent.
   */
  acquire(taskId: string): () => void {
    this.checkOpen();
    const entry = this.entry(taskId);
    entry.pins++;
    this.touchEntry(entry);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.pins--;
      if (!entry.deleted && !this.closed) this.touchEntry(entry);
    };
  }

  async deleteTask(taskId: string): Promise<void> {
    this.checkOpen();
    await this.remove(this.entry(taskId), 'deleted');
  }

  // ---- pieces -----------------------------------------------------------------------------------------

  hasPiece(taskId: string, number: number): boolean {
    const id = checkTaskId(taskId);
    const n = checkPieceNumber(number);
    return this.tasks.get(id)?.pieces.has(n) ?? false;
  }

  getPiece(taskId: string, number: number): PieceRecord | undefined {
    const id = checkTaskId(taskId);
    const n = checkPieceNumber(number);
    const piece = this.tasks.get(id)?.pieces.get(n);
    return piece && copyPiece(piece);
  }

  /** The present pieces, sorted by number ([] for an unknown task). */
  listPieces(taskId: string): PieceRecord[] {
    const entry = this.tasks.get(checkTaskId(taskId));
    if (!entry) return [];
    return [...entry.pieces.values()].map(copyPiece).sort((a, b) => a.number - b.number);
  }

  /**
   * Writes the piece at its offset, fdatasyncs, then commits its row and emits 'piece'. The piece must sit
   * where the task's layout puts it and data must be exactly piece.length bytes. Writing a present piece
   * is a no-op; concurrent writes of the same piece do the I/O once. The digest is recorded, not checked:
   * the caller verifies the bytes before storing them.
   */
  async writePiece(taskId: string, piece: PieceRecord, data: Buffer): Promise<void> {
    this.checkOpen();
    const id = checkTaskId(taskId);
    const entry = this.entry(id);
    if (typeof piece !== 'object' || piece === null) throw new StorageError('EINVAL', 'invalid piece');
    const p: PieceRecord = {
      number: checkPieceNumber(piece.number),
      offset: piece.offset,
      length: piece.length,
      digest: checkDigest(piece.digest),
    };
    if (!(data instanceof Uint8Array) || data.length !== p.length) {
      throw new StorageError(
        'EINVAL',
        `piece ${p.number} of ${id}: ${data instanceof Uint8Array ? data.length : 'no'} bytes, expected ${p.length}`,
      );
    }
    for (;;) {
      if (entry.deleted) throw new StorageError('ENOTASK', `task ${id} was deleted`);
      if (!fitsLayout(entry.record, p)) {
        const r = entry.record;
        throw new StorageError(
          'EINVAL',
          `piece ${p.number} (offset ${p.offset}, length ${p.length}) does not fit task ${id} ` +
            `(content length ${r.contentLength}, piece length ${r.pieceLength})`,
        );
      }
      if (entry.pieces.has(p.number)) return;
      const pending = entry.writing.get(p.number);
      if (!pending) break;
      await pending.catch(() => undefined);
    }
    const job = this.writeAndRecord(entry, p, data);
    entry.writing.set(p.number, job);
    try {
      await job;
    } finally {
      if (entry.writing.get(p.number) === job) entry.writing.delete(p.number);
    }
  }

  /** The bytes of a present piece (read into `into`, which must be exactly the piece's length, if given). */
  async readPiece(taskId: string, number: number, into?: Buffer): Promise<Buffer> {
    this.checkOpen();
    const id = checkTaskId(taskId);
    const entry = this.entry(id);
    const piece = entry.pieces.get(checkPieceNumber(number));
    if (!piece) throw new StorageError('ENOPIECE', `task ${id} has no piece ${number}`);
    if (into && into.length !== piece.length) {
      throw new StorageError(
        'EINVAL',
        `piece ${number} of ${id} is ${piece.length} bytes, not ${into.length}`,
      );
    }
    const epoch = entry.epoch;
    try {
      const data = await this.withFile(entry, (fh) => readFully(fh, piece.length, piece.offset, into));
      // A layout change truncates the file: what was read may not be this piece any more.
      if (entry.epoch !== epoch && !entry.deleted) {
        throw new StorageError('ECONFLICT', `task ${id} changed while piece ${number} was read`);
      }
      return data;
    } catch (err) {
      if (err instanceof StorageError) throw err;
      throw new StorageError('ESTORAGE', `cannot read piece ${number} of ${id}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /**
   * Delivers a finished task's content to `output` atomically: a hard link to the content file (no copy:
   * the bytes are already durable) renamed into place, or, when linking is impossible (another
   * filesystem) or `mode` is 'copy', an in-kernel copy (copy_file_range, or a reflink where the filesystem
   * has them) to a temp file beside it, fsynced and renamed. On any failure nothing appears at `output`.
   * A hard-linked output shares its bytes with the task: see `checkIntact` for writes through it.
   */
  async exportTo(taskId: string, output: string, mode: ExportMode = 'auto'): Promise<Delivery> {
    const id = checkTaskId(taskId);
    const entry = this.entry(id);
    if (entry.record.state !== 'succeeded')
      throw new StorageError('EINCOMPLETE', `task ${id} is not complete`);
    const release = this.acquire(id);
    const temp = stagingPathFor(output);
    try {
      if (!(await this.checkIntact(id))) {
        throw new StorageError('ECORRUPT', `task ${id}: the stored content was modified after download`);
      }
      const delivery = mode === 'copy' ? 'copy' : await this.linkOrRefuse(id, temp, mode === 'hard-link');
      if (delivery === 'copy') {
        await copyFile(this.contentPath(id), temp, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE);
        const handle = await open(temp, 'r');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
      }
      await rename(temp, output);
      return delivery;
    } catch (err) {
      await rm(temp, { force: true }).catch(() => undefined);
      if (err instanceof StorageError) throw err;
      throw new StorageError('EEXPORT', `cannot write ${output}: ${(err as Error).message}`, { cause: err });
    } finally {
      release();
    }
  }

  /** 'hard-link' when `temp` now names the content file; 'copy' when the filesystem refuses links. */
  private async linkOrRefuse(id: string, temp: string, force: boolean): Promise<Delivery> {
    try {
      await link(this.contentPath(id), temp);
      return 'hard-link';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (force || !LINK_REFUSALS.has(code)) throw err;
      return 'copy';
    }
  }

  /**
   * Whether a succeeded task's content still matches its piece digests; a changed task is removed (so the
   * next download fetches it again) and false returned. A hard-linked output is the content file under
   * another name, so a write to it (by root: the file belongs to the daemon) changes the task's bytes.
   * Nothing writes a succeeded task's file otherwise, so only an mtime after the task finished costs a
   * check of every piece; otherwise this is one stat. Peers need no such check: they verify every piece
   * they receive.
   */
  async checkIntact(taskId: string): Promise<boolean> {
    const entry = this.entry(checkTaskId(taskId));
    const { id, finishedAt, pieceLength } = entry.record;
    const { mtimeMs } = await stat(this.contentPath(id));
    // +1: finishedAt is whole milliseconds taken after the last write, mtime has nanoseconds.
    if (mtimeMs <= (finishedAt ?? Infinity) + 1 || mtimeMs === entry.verifiedMtime) return true;
    const buffer = Buffer.allocUnsafe(pieceLength);
    for (const piece of entry.pieces.values()) {
      const bytes = await this.withFile(entry, (fh) =>
        readFully(fh, piece.length, piece.offset, buffer.subarray(0, piece.length)),
      );
      if (pieceDigest(bytes) !== piece.digest) {
        this.log.warn({ taskId: id, piece: piece.number }, 'stored content was modified, task removed');
        await this.remove(entry, 'modified');
        return false;
      }
    }
    entry.verifiedMtime = mtimeMs;
    return true;
  }

  /**
   * A stream of bytes [start, end] (inclusive) of the content; defaults to the whole content. A succeeded
   * task serves any range; otherwise every piece the range touches must be present (ENOPIECE).
   * Pin the task (acquire) while streaming.
   */
  createContentStream(taskId: string, start = 0, end?: number): ReadStream {
    this.checkOpen();
    const id = checkTaskId(taskId);
    const r = this.entry(id).record;
    const path = this.contentPath(id);
    if (r.contentLength === 0 && start === 0 && end === undefined) {
      return createReadStream(path, { start: 0, highWaterMark: STREAM_CHUNK }); // the empty file
    }
    const last = end ?? r.contentLength - 1;
    if (end === undefined && r.contentLength < 0) {
      throw new StorageError('EINVAL', `task ${id}: content length unknown, give an end`);
    }
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(last) || start < 0 || last < start) {
      throw new StorageError('EINVAL', `invalid range ${start}-${String(end)}`);
    }
    if (r.contentLength >= 0 && last >= r.contentLength) {
      throw new StorageError('EINVAL', `range ${start}-${last} is past the end (${r.contentLength} bytes)`);
    }
    if (r.state !== 'succeeded') {
      const entry = this.entry(id);
      const first = Math.floor(start / r.pieceLength);
      const lastPiece = Math.floor(last / r.pieceLength);
      for (let n = first; n <= lastPiece; n++) {
        const p = entry.pieces.get(n);
        // With an unknown length the last stored piece may be short: the range must stay inside pieces.
        if (!p || (n === lastPiece && p.offset + p.length <= last)) {
          throw new StorageError(
            'ENOPIECE',
            `task ${id}: piece ${n} of range ${start}-${last} is not stored`,
          );
        }
      }
    }
    return createReadStream(path, { start, end: last, highWaterMark: STREAM_CHUNK });
  }

  /** <dataDir>/content/tasks/<id[0:3]>/<id> */
  contentPath(taskId: string): string {
    const id = checkTaskId(taskId);
    return join(this.tasksDir, id.slice(0, 3), id);
  }

  // ---- space ------------------------------------------------------------------------------------------

  usage(): StorageUsage {
    return { usedBytes: this.usedBytes, capacityBytes: this.capacityBytes };
  }

  /**
   * 1. TTL: every unpinned task not accessed for taskTtl is removed (running ones too: an unpinned running
   *    task is a download nobody resumed). 2. Watermarks: while usedBytes ≥ high% of capacity, unpinned tasks
   *    holding bytes are removed least recently accessed first until usedBytes ≤ low%. Concurrent calls
   *    share one run. Returns the removed task ids.
   */
  gc(now: number = Date.now()): Promise<string[]> {
    this.checkOpen();
    if (!this.gcRun) {
      this.gcRun = this.runGc(now).finally(() => {
        this.gcRun = undefined;
      });
    }
    return this.gcRun;
  }

  /** Flushes access times and closes the database. In-flight writes fail instead of recording. */
  close(): void {
    if (this.closed) return;
    try {
      for (const entry of this.tasks.values()) {
        if (entry.record.accessedAt !== entry.persistedAccessedAt) {
          this.meta.setAccessed(entry.record.id, entry.record.accessedAt);
        }
      }
    } catch (err) {
      this.log.warn({ err }, 'cannot persist access times');
    }
    this.closed = true;
    for (const entry of [...this.openFiles.values()]) this.releaseFile(entry);
    this.meta.close();
  }

  // ---- internals --------------------------------------------------------------------------------------

  private async runGc(now: number): Promise<string[]> {
    const removed: string[] = [];
    const ttl = this.opts.taskTtl;
    if (ttl > 0) {
      for (const entry of [...this.tasks.values()]) {
        if (this.closed) return removed;
        if (entry.deleted || entry.pins > 0 || now - entry.record.accessedAt < ttl) continue;
        if (await this.removeQuietly(entry, 'ttl')) removed.push(entry.record.id);
      }
    }
    const high = (this.capacityBytes * this.opts.highWatermarkPercent) / 100;
    const low = (this.capacityBytes * this.opts.lowWatermarkPercent) / 100;
    if (this.usedBytes >= high && this.usedBytes > 0) {
      const lru = [...this.tasks.values()]
        .filter((e) => e.pins === 0 && e.bytes > 0)
        .sort((a, b) => a.record.accessedAt - b.record.accessedAt);
      for (const entry of lru) {
        if (this.closed || this.usedBytes <= low) break;
        // Re-checked: the awaits above let downloads pin tasks meanwhile.
        if (entry.deleted || entry.pins > 0) continue;
        if (await this.removeQuietly(entry, 'watermark')) removed.push(entry.record.id);
      }
      if (this.usedBytes > low) {
        this.log.warn(
          { usedBytes: this.usedBytes, targetBytes: Math.floor(low) },
          'storage above its low watermark: the rest is pinned',
        );
      }
    }
    return removed;
  }

  private async removeQuietly(entry: TaskEntry, reason: string): Promise<boolean> {
    try {
      await this.remove(entry, reason);
      return true;
    } catch (err) {
      this.log.error({ err, taskId: entry.record.id }, 'gc cannot remove task');
      return false;
    }
  }

  /**
   * Rows first (nothing is reported present any more), then the file is renamed into the trash so that a
   * putTask of the same id right after gets a fresh file, then the trash copy is unlinked. A crash in
   * between leaves a file without rows, or a trash entry: both are removed at the next open.
   */
  private async remove(entry: TaskEntry, reason: string): Promise<void> {
    const id = entry.record.id;
    if (entry.deleted) return;
    this.io(`delete task ${id}`, () => this.meta.deleteTask(id));
    entry.deleted = true;
    entry.epoch++;
    this.tasks.delete(id);
    this.releaseFile(entry);
    this.usedBytes -= entry.bytes;
    const path = this.contentPath(id);
    const trash = join(this.trashDir, `${id}.${process.pid}.${++this.trashSeq}`);
    let doomed: string | undefined = trash;
    try {
      renameSync(path, trash);
    } catch (err) {
      doomed = isErrno(err, 'ENOENT') ? undefined : path;
    }
    this.log.info({ taskId: id, reason, bytes: entry.bytes }, 'task removed');
    this.emitSafely('deleted', id);
    if (doomed) {
      await rm(doomed, { force: true }).catch((err: unknown) => {
        this.log.warn({ err, taskId: id }, 'cannot unlink removed content file');
      });
    }
  }

  private async writeAndRecord(entry: TaskEntry, p: PieceRecord, data: Uint8Array): Promise<void> {
    const id = entry.record.id;
    const epoch = entry.epoch;
    try {
      await this.withFile(entry, async (fh) => {
        await writeFully(fh, data, p.offset);
        await this.syncData(entry, fh);
      });
    } catch (err) {
      if (err instanceof StorageError) throw err;
      throw new StorageError(
        'ESTORAGE',
        `cannot write piece ${p.number} of ${id}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (!entry.dirSynced) {
      // A new file's directory entry must be durable too, or a power loss can take the whole file.
      try {
        await syncDirectory(join(this.tasksDir, id.slice(0, 3)));
        await syncDirectory(this.tasksDir);
        entry.dirSynced = true;
      } catch (err) {
        throw new StorageError('ESTORAGE', `cannot sync directory of ${id}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    if (entry.deleted)
      throw new StorageError('ENOTASK', `task ${id} was deleted while piece ${p.number} was written`);
    if (entry.epoch !== epoch || !fitsLayout(entry.record, p)) {
      throw new StorageError('ECONFLICT', `task ${id} changed layout while piece ${p.number} was written`);
    }
    if (entry.pieces.has(p.number)) return;
    this.checkOpen();
    const now = Date.now();
    this.io(`record piece ${p.number} of ${id}`, () => this.meta.insertPiece(id, p, now));
    entry.pieces.set(p.number, p);
    entry.bytes += p.length;
    this.usedBytes += p.length;
    entry.record.updatedAt = now;
    this.emitSafely('piece', id, copyPiece(p));
  }

  /**
   * Runs `fn` on the task's content file, opened once and cached (no O_CREAT: putTask created the file, and
   * a write racing a delete must not resurrect it). A removal renames the file away; an open after that
   * fails (ENOTASK), and I/O already under way on the old handle lands in the unlinked file, never recorded
   * because the epoch changed. The handle is closed when its last user is done (releaseFile).
   */
  private async withFile<T>(entry: TaskEntry, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    const id = entry.record.id;
    if (entry.deleted) throw new StorageError('ENOTASK', `task ${id} was deleted`);
    entry.fdUsers++;
    try {
      let fh = entry.fd;
      if (!fh) {
        if (!entry.fdOpening) {
          entry.fdOpening = open(this.contentPath(id), 'r+').finally(() => {
            entry.fdOpening = null;
          });
        }
        try {
          fh = await entry.fdOpening;
        } catch (err) {
          if (entry.deleted) throw new StorageError('ENOTASK', `task ${id} was deleted`);
          throw new StorageError('ESTORAGE', `cannot open content of ${id}: ${(err as Error).message}`, {
            cause: err,
          });
        }
        if (entry.fd !== fh) {
          entry.fd = fh;
          this.openFiles.set(id, entry);
          this.closeIdleFiles();
        }
      }
      this.openFiles.delete(id);
      this.openFiles.set(id, entry); // most recently used last
      return await fn(fh);
    } finally {
      entry.fdUsers--;
      if (entry.deleted || this.closed) this.releaseFile(entry);
      else this.closeIdleFiles();
    }
  }

  /** Closes the entry's content file if nobody is using it (else its last user will). */
  private releaseFile(entry: TaskEntry): void {
    if (entry.fdUsers > 0 || !entry.fd) return;
    const fh = entry.fd;
    entry.fd = null;
    if (this.openFiles.get(entry.record.id) === entry) this.openFiles.delete(entry.record.id);
    fh.close().catch((err: unknown) =>
      this.log.warn({ err, taskId: entry.record.id }, 'cannot close content'),
    );
  }

  private closeIdleFiles(): void {
    if (this.openFiles.size <= MAX_OPEN_FILES) return;
    for (const entry of [...this.openFiles.values()]) {
      if (this.openFiles.size <= MAX_OPEN_FILES) break;
      this.releaseFile(entry);
    }
  }

  /**
   * fdatasync shared by the pieces written close together: a write waits for a datasync that *started*
   * after the write completed. If none is running it starts one; if one is running (it may have started
   * before this write), it joins the single datasync queued to start when the running one ends — every
   * write that completed meanwhile is covered by that one call.
   */
  private syncData(entry: TaskEntry, fh: FileHandle): Promise<void> {
    const start = (): Promise<void> => {
      const run: Promise<void> = fh.datasync().finally(() => {
        if (entry.syncing === run) entry.syncing = null;
      });
      entry.syncing = run;
      return run;
    };
    if (entry.nextSync) return entry.nextSync;
    if (!entry.syncing) return start();
    const next = entry.syncing
      .catch(() => undefined)
      .then(() => {
        entry.nextSync = null;
        return start();
      });
    entry.nextSync = next;
    return next;
  }

  /** Builds the index from SQLite and discards what a crash left inconsistent. Runs once, inside open. */
  private repair(): void {
    let dropped = 0;
    let droppedPieces = 0;
    for (const stored of this.meta.loadAll()) {
      const { record: row } = stored;
      const id = row.id;
      if (!TASK_FILE.test(id) || !(row.pieceLength > 0)) {
        this.meta.deleteTask(id);
        dropped++;
        continue;
      }
      let size: number;
      try {
        size = statSync(this.contentPath(id)).size;
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
        this.log.warn({ taskId: id }, 'content file missing, task dropped');
        this.meta.deleteTask(id);
        dropped++;
        continue;
      }
      const record: TaskRecord = { ...row, pieceCount: pieceCountOf(row.contentLength, row.pieceLength) };
      const pieces = new Map<number, PieceRecord>();
      const bad: number[] = [];
      let bytes = 0;
      for (const p of stored.pieces) {
        // A piece past the end of the file lost its bytes (the file shrank or was replaced).
        if (fitsLayout(record, p) && p.offset + p.length <= size) {
          pieces.set(p.number, p);
          bytes += p.length;
        } else {
          bad.push(p.number);
        }
      }
      if (bad.length > 0) {
        this.meta.deletePieces(id, bad);
        droppedPieces += bad.length;
        this.log.warn({ taskId: id, pieces: bad.length }, 'pieces without their bytes dropped');
      }
      if (record.state === 'succeeded' && (record.contentLength < 0 || pieces.size < record.pieceCount)) {
        record.state = 'failed';
        this.meta.setState(id, 'failed', record.updatedAt, record.finishedAt);
        this.log.warn({ taskId: id }, 'succeeded task is missing pieces, marked failed');
      }
      this.tasks.set(id, {
        record,
        pieces,
        bytes,
        pins: 0,
        epoch: 0,
        deleted: false,
        writing: new Map(),
        persistedAccessedAt: record.accessedAt,
        dirSynced: true,
        ...NO_FD,
      });
      this.usedBytes += bytes;
    }

    // Content files without rows: a removal interrupted between its commit and its unlink.
    let orphans = 0;
    for (const shard of readdirSync(this.tasksDir)) {
      if (!SHARD.test(shard)) continue;
      const shardDir = join(this.tasksDir, shard);
      let names: string[];
      try {
        names = readdirSync(shardDir);
      } catch {
        continue;
      }
      for (const name of names) {
        if (TASK_FILE.test(name) && name.startsWith(shard) && !this.tasks.has(name)) {
          rmSync(join(shardDir, name), { force: true });
          orphans++;
        }
      }
      this.knownShards.add(shard);
    }
    for (const name of readdirSync(this.trashDir)) rmSync(join(this.trashDir, name), { force: true });

    this.log.info(
      { tasks: this.tasks.size, usedBytes: this.usedBytes, dropped, droppedPieces, orphans },
      'storage opened',
    );
  }

  /** Creates (or empties) the task's content file. Sync, but once per task and a few microseconds. */
  private createContentFile(id: string): void {
    const shard = id.slice(0, 3);
    if (!this.knownShards.has(shard)) {
      mkdirSync(join(this.tasksDir, shard), { recursive: true });
      this.knownShards.add(shard);
    }
    closeSync(openSync(this.contentPath(id), 'w'));
  }

  private forgetPiece(entry: TaskEntry, number: number): void {
    const p = entry.pieces.get(number);
    if (!p) return;
    entry.pieces.delete(number);
    entry.bytes -= p.length;
    this.usedBytes -= p.length;
  }

  private touchEntry(entry: TaskEntry): void {
    const now = Date.now();
    if (now <= entry.record.accessedAt) return;
    entry.record.accessedAt = now;
    if (now - entry.persistedAccessedAt >= ACCESS_PERSIST_INTERVAL_MS) {
      this.io(`update task ${entry.record.id}`, () => this.meta.setAccessed(entry.record.id, now));
      entry.persistedAccessedAt = now;
    }
  }

  private entry(taskId: string): TaskEntry {
    const id = checkTaskId(taskId);
    const entry = this.tasks.get(id);
    if (!entry) throw new StorageError('ENOTASK', `no task ${id}`);
    return entry;
  }

  private checkOpen(): void {
    if (this.closed) throw new StorageError('ESTORAGE', 'storage is closed');
  }

  /** Runs a sync file-system or SQLite step, turning its failure into a StorageError. */
  private io<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof StorageError) throw err;
      throw new StorageError('ESTORAGE', `cannot ${what}: ${(err as Error).message}`, { cause: err });
    }
  }

  private emitSafely<K extends keyof TaskStorageEvents>(event: K, ...args: TaskStorageEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: TaskStorageEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ err, event }, 'storage event listener threw');
    }
  }
}
