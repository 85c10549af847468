export type StorageErrorCode =
  /** I/O or database failure, or the storage was closed. */
  | 'ESTORAGE'
  /** The task exists but the piece (or a byte of the requested range) is not stored. */
  | 'ENOPIECE'
  /** No such task (or it was deleted while the operation ran). */
  | 'ENOTASK'
  /** An argument is malformed: task id, piece number, piece layout, range, options. */
  | 'EINVAL'
  /** The task's layout changed (putTask with another length) while a piece was being written. */
  | 'ECONFLICT'
  /** markSucceeded on a task whose pieces are not all present or whose length is unknown. */
  | 'EINCOMPLETE'
  /** Writing a finished task's content out to a path failed. */
  | 'EEXPORT'
  /** A finished task's bytes no longer match its piece digests (written through a hard-linked output). */
  | 'ECORRUPT';

export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    readonly code: StorageErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const TASK_ID = /^[0-9a-f]{64}$/;

/** Task ids arrive from the network and become file names: only 64 lowercase hex digits pass. */
export function checkTaskId(taskId: unknown): string {
  if (typeof taskId !== 'string' || !TASK_ID.test(taskId)) {
    const shown = typeof taskId === 'string' ? JSON.stringify(taskId.slice(0, 80)) : typeof taskId;
    throw new StorageError('EINVAL', `invalid task id ${shown}: expected 64 lowercase hex digits`);
  }
  return taskId;
}

export function checkPieceNumber(number: unknown): number {
  if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < 0) {
    throw new StorageError('EINVAL', `invalid piece number ${String(number)}`);
  }
  return number;
}

/** "<algorithm>:<hex or decimal>", e.g. sha256:<64 hex> or crc32:<u32>. */
const DIGEST = /^[a-z0-9]{1,16}:[0-9a-zA-Z]{1,128}$/;

export function checkDigest(digest: unknown): string {
  if (typeof digest !== 'string' || !DIGEST.test(digest)) {
    throw new StorageError('EINVAL', `invalid piece digest ${JSON.stringify(String(digest).slice(0, 80))}`);
  }
  return digest;
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}
