import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/**
 * Where a task's output FILE is staged before it is renamed into place: a hidden name beside FILE (same
 * directory, so the rename is atomic), unique per attempt. Both writers of FILE use it — the daemon
 * (hard link or copy) and `get --transfer-from-daemon` — and remove it on any failure.
 */
export function stagingPathFor(output: string): string {
  return join(dirname(output), `.${basename(output)}.damselfly-${randomBytes(4).toString('hex')}.tmp`);
}
