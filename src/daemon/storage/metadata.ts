import Database from 'better-sqlite3';
import type { PieceRecord, TaskRecord, TaskState } from './types.js';

const SCHEMA_VERSION = 1;

// WITHOUT ROWID: both tables are looked up by their natural key only.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY NOT NULL,
  url TEXT NOT NULL,
  content_length INTEGER NOT NULL,
  piece_length INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  accessed_at INTEGER NOT NULL,
  finished_at INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pieces (
  task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
  number INTEGER NOT NULL,
  byte_offset INTEGER NOT NULL,
  byte_length INTEGER NOT NULL,
  digest TEXT NOT NULL,
  PRIMARY KEY (task_id, number)
) WITHOUT ROWID;
`;

interface TaskRow {
  id: string;
  url: string;
  content_length: number;
  piece_length: number;
  state: TaskState;
  created_at: number;
  updated_at: number;
  accessed_at: number;
  finished_at: number | null;
}

interface PieceRow {
  task_id: string;
  number: number;
  byte_offset: number;
  byte_length: number;
  digest: string;
}

export interface StoredTask {
  record: Omit<TaskRecord, 'pieceCount'>;
  pieces: PieceRecord[];
}

/**
 * The SQLite side of the storage: every statement prepared once, every change one small transaction.
 * better-sqlite3 is synchronous; these statements touch a handful of rows in a WAL database and take
 * microseconds, which is cheaper than bouncing through the thread pool.
 */
export class MetadataStore {
  private readonly db: Database.Database;
  private readonly stmts;
  readonly insertPiece: (taskId: string, piece: PieceRecord, updatedAt: number) => void;
  readonly deleteTask: (taskId: string) => void;
  readonly replaceLayout: (task: TaskRecord) => void;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode can lose the last commits on power loss but never corrupts, and a lost row only
    // means a piece is fetched again: a row still never exists before its bytes are durable.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      this.db.close();
      throw new Error(
        `metadata schema version ${version} is newer than this build supports (${SCHEMA_VERSION})`,
      );
    }
    this.db.exec(SCHEMA);
    if (version < SCHEMA_VERSION) this.db.pragma(`user_version = ${SCHEMA_VERSION}`);

    const db = this.db;
    this.stmts = {
      allTasks: db.prepare<[], TaskRow>('SELECT * FROM tasks'),
      allPieces: db.prepare<[], PieceRow>('SELECT * FROM pieces ORDER BY task_id, number'),
      upsertTask: db.prepare(
        `INSERT INTO tasks (id, url, content_length, piece_length, state, created_at, updated_at, accessed_at, finished_at)
         VALUES (@id, @url, @contentLength, @pieceLength, @state, @createdAt, @updatedAt, @accessedAt, @finishedAt)
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, content_length = excluded.content_length,
           piece_length = excluded.piece_length, state = excluded.state, updated_at = excluded.updated_at,
           accessed_at = excluded.accessed_at, finished_at = excluded.finished_at`,
      ),
      setState: db.prepare('UPDATE tasks SET state = ?, updated_at = ?, finished_at = ? WHERE id = ?'),
      setAccessed: db.prepare('UPDATE tasks SET accessed_at = ? WHERE id = ?'),
      setUpdated: db.prepare('UPDATE tasks SET updated_at = ? WHERE id = ?'),
      insertPiece: db.prepare(
        'INSERT OR IGNORE INTO pieces (task_id, number, byte_offset, byte_length, digest) VALUES (?, ?, ?, ?, ?)',
      ),
      deletePiece: db.prepare('DELETE FROM pieces WHERE task_id = ? AND number = ?'),
      deletePieces: db.prepare('DELETE FROM pieces WHERE task_id = ?'),
      deleteTask: db.prepare('DELETE FROM tasks WHERE id = ?'),
    };
    const s = this.stmts;
    this.insertPiece = db.transaction((taskId: string, p: PieceRecord, updatedAt: number) => {
      s.insertPiece.run(taskId, p.number, p.offset, p.length, p.digest);
      s.setUpdated.run(updatedAt, taskId);
    });
    this.deleteTask = db.transaction((taskId: string) => {
      s.deletePieces.run(taskId);
      s.deleteTask.run(taskId);
    });
    this.replaceLayout = db.transaction((task: TaskRecord) => {
      s.deletePieces.run(task.id);
      s.upsertTask.run(task);
    });
  }

  /** Everything, for the in-memory index built at open. */
  loadAll(): StoredTask[] {
    const byId = new Map<string, StoredTask>();
    for (const r of this.stmts.allTasks.iterate()) {
      byId.set(r.id, {
        record: {
          id: r.id,
          url: r.url,
          contentLength: r.content_length,
          pieceLength: r.piece_length,
          state: r.state,
          createdAt: r.created_at,
          updatedAt: r.updated_at,
          accessedAt: r.accessed_at,
          finishedAt: r.finished_at,
        },
        pieces: [],
      });
    }
    for (const p of this.stmts.allPieces.iterate()) {
      byId.get(p.task_id)?.pieces.push({
        number: p.number,
        offset: p.byte_offset,
        length: p.byte_length,
        digest: p.digest,
      });
    }
    return [...byId.values()];
  }

  upsertTask(task: TaskRecord): void {
    this.stmts.upsertTask.run(task);
  }

  setState(taskId: string, state: TaskState, updatedAt: number, finishedAt: number | null): void {
    this.stmts.setState.run(state, updatedAt, finishedAt, taskId);
  }

  setAccessed(taskId: string, accessedAt: number): void {
    this.stmts.setAccessed.run(accessedAt, taskId);
  }

  deletePieces(taskId: string, numbers: number[]): void {
    this.db.transaction(() => {
      for (const n of numbers) this.stmts.deletePiece.run(taskId, n);
    })();
  }

  close(): void {
    this.db.close();
  }
}
