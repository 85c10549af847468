/**
 * The first access of each file while mounted (open or read), in order, with the time since the
 * trace started: what `--trace FILE` writes (paths only, the `--prefetch-files` format) and what the
 * API's `/api/v1/trace` lists. A file counts once, whatever name (hard link) it was reached by.
 */
import type { TreeNode } from '../image/format/index.js';

export interface AccessRecord {
  path: string;
  /** Milliseconds since the trace started (the mount). */
  afterMs: number;
}

export class AccessTrace {
  private readonly seen = new Set<TreeNode>();
  private readonly records: AccessRecord[] = [];
  private readonly started: number;

  constructor(
    /** Called once per newly accessed file, in order (the trace file writer). */
    private readonly onFirstAccess?: (record: AccessRecord) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.started = now();
  }

  /** Records `node` if it was not accessed before; `pathOf` is only called then. */
  record(node: TreeNode, pathOf: (node: TreeNode) => string | undefined): void {
    if (this.seen.has(node)) return;
    this.seen.add(node);
    const path = pathOf(node);
    if (path === undefined) return;
    const record = { path, afterMs: Math.round((this.now() - this.started) * 1000) / 1000 };
    this.records.push(record);
    this.onFirstAccess?.(record);
  }

  get entries(): readonly AccessRecord[] {
    return this.records;
  }
}
