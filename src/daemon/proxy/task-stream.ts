import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { TaskStorage } from '../storage/index.js';

export class TaskStreamError extends Error {
  readonly code = 'ETASKSTREAM';
}

/**
 * The last byte of [pos, end] that is stored contiguously from pos (pos - 1 when pos itself is not):
 * a finished task has them all, a running one those of the present pieces in a row.
 */
export function storedThrough(storage: TaskStorage, taskId: string, pos: number, end: number): number {
  const r = storage.getTask(taskId);
  if (!r || r.pieceLength <= 0) return pos - 1;
  if (r.state === 'succeeded') return end;
  let through = pos - 1;
  for (let n = Math.floor(pos / r.pieceLength); through < end && storage.hasPiece(taskId, n); n++) {
    through = (n + 1) * r.pieceLength - 1;
  }
  return Math.min(through, end);
}

/** Resolves at the task's next stored piece or completion; rejects if the download fails or is aborted. */
function nextChange(
  storage: TaskStorage,
  taskId: string,
  done: Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      storage.off('piece', onStored);
      storage.off('succeeded', onStored);
      storage.off('deleted', onDeleted);
      signal.removeEventListener('abort', onAbort);
    };
    const settle = (err?: Error) => {
      cleanup();
      if (err) reject(err);
      else resolve();
    };
    const onStored = (id: string) => id === taskId && settle();
    const onDeleted = (id: string) =>
      id === taskId && settle(new TaskStreamError(`task ${taskId} was deleted`));
    const onAbort = () => settle(new TaskStreamError('client went away'));
    storage.on('piece', onStored);
    storage.on('succeeded', onStored);
    storage.on('deleted', onDeleted);
    signal.addEventListener('abort', onAbort, { once: true });
    done.then(
      () => settle(),
      (err: Error) => settle(err),
    );
  });
}

/**
 * Waits until the byte at `offset` is stored (so a caller can still choose another way before answering).
 * Rejects with the download's error if it fails first.
 */
export async function waitForByte(
  storage: TaskStorage,
  taskId: string,
  offset: number,
  done: Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  let finished = false;
  done.then(
    () => {
      finished = true;
    },
    () => undefined,
  );
  while (storedThrough(storage, taskId, offset, offset) < offset) {
    if (finished) throw new TaskStreamError(`task ${taskId} finished without byte ${offset}`);
    await nextChange(storage, taskId, done, signal);
  }
}

/**
 * Writes bytes [start, end] of the task to `out` in order, each run of stored pieces as soon as it is
 * stored, with backpressure. Returns the bytes written. The task stays pinned against GC meanwhile.
 */
export async function pipeTaskRange(
  storage: TaskStorage,
  taskId: string,
  range: { start: number; end: number },
  done: Promise<void>,
  out: Writable,
  signal: AbortSignal,
): Promise<number> {
  let pos = range.start;
  let release: (() => void) | null = null;
  let finished = false;
  done.then(
    () => {
      finished = true;
    },
    () => undefined,
  );
  try {
    while (pos <= range.end) {
      const through = storedThrough(storage, taskId, pos, range.end);
      if (through < pos) {
        if (finished) throw new TaskStreamError(`task ${taskId} finished without byte ${pos}`);
        await nextChange(storage, taskId, done, signal);
        continue;
      }
      release ??= storage.acquire(taskId);
      for await (const chunk of storage.createContentStream(taskId, pos, through)) {
        if (!out.write(chunk)) await once(out, 'drain', { signal });
      }
      pos = through + 1;
    }
    return pos - range.start;
  } finally {
    release?.();
  }
}
