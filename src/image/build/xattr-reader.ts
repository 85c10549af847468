/**
 * Reads extended attributes of many paths with `getfattr` (package `attr`): Node has no xattr API,
 * and one process per file would cost more than the rest of a build. Paths are batched — one
 * process per `batchSize` paths, a few processes at a time — and never dereferenced (`-h`).
 *
 * getfattr prints `# file: <path>` then `name=0s<base64>` lines and a blank line, only for paths
 * that have attributes; in paths and names it escapes `\`, `=`, control characters (and, in some
 * versions, bytes ≥ 0x7f) as `\ooo` octal.
 */
import { spawn } from 'node:child_process';
import { ImageBuildError } from './errors.js';

export interface XattrReaderOptions {
  /** Paths per getfattr process. */
  batchSize?: number;
  /** getfattr processes at a time. */
  concurrency?: number;
  signal?: AbortSignal;
}

type Xattrs = Map<string, Buffer>;
interface Request {
  path: string;
  done: (xattrs: Xattrs) => void;
}

/** Keeps each argument list well under the kernel's limit (ARG_MAX, usually 2 MiB). */
const MAX_BATCH_ARG_BYTES = 512 * 1024;

export class XattrReader {
  private pending: Request[] = [];
  private pendingBytes = 0;
  private readonly batches: Promise<void>[] = [];
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly batchSize: number;
  private readonly concurrency: number;

  constructor(private readonly options: XattrReaderOptions = {}) {
    this.batchSize = options.batchSize ?? 1000;
    this.concurrency = options.concurrency ?? 2;
  }

  /** Queues an absolute path; `done` gets its attributes (an empty map for none) once its batch ran. */
  request(path: string, done: (xattrs: Xattrs) => void): void {
    this.pending.push({ path, done });
    this.pendingBytes += Buffer.byteLength(path) + 1;
    if (this.pending.length >= this.batchSize || this.pendingBytes >= MAX_BATCH_ARG_BYTES) this.flush();
  }

  /** Runs what is queued and waits for every batch; rejects with the first failure. */
  async finish(): Promise<void> {
    this.flush();
    await Promise.all(this.batches);
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    const run = this.runLimited(() => this.runBatch(batch));
    run.catch(() => undefined); // reported by finish()
    this.batches.push(run);
  }

  private async runLimited(work: () => Promise<void>): Promise<void> {
    if (this.running >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      await work();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }

  private async runBatch(batch: Request[]): Promise<void> {
    this.options.signal?.throwIfAborted();
    const output = await runGetfattr(
      batch.map((r) => r.path),
      this.options.signal,
    );
    const found = parseGetfattrOutput(output);
    for (const { path, done } of batch) done(found.get(path) ?? new Map());
  }
}

function runGetfattr(paths: string[], signal?: AbortSignal): Promise<Buffer> {
  const args = ['-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '--', ...paths];
  return new Promise((resolve, reject) => {
    const child = spawn('getfattr', args, { stdio: ['ignore', 'pipe', 'pipe'], signal });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => stdout.push(data));
    child.stderr.on('data', (data: Buffer) => {
      stderr += data.toString();
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        reject(
          new ImageBuildError('EXATTR', 'getfattr not found: install the "attr" package to read xattrs'),
        );
      } else reject(err);
    });
    child.once('close', (code) => {
      if (code === 0) resolve(Buffer.concat(stdout));
      else {
        const first = stderr.trim().split('\n')[0] ?? '';
        reject(new ImageBuildError('EXATTR', `reading xattrs failed (getfattr exit ${code}): ${first}`));
      }
    });
  });
}

/** Parses getfattr's dump into path → (name → value). */
export function parseGetfattrOutput(output: Buffer): Map<string, Xattrs> {
  const result = new Map<string, Xattrs>();
  let current: Xattrs | null = null;
  let start = 0;
  while (start < output.length) {
    let end = output.indexOf(0x0a, start);
    if (end < 0) end = output.length;
    const line = output.subarray(start, end);
    start = end + 1;
    if (line.length === 0) {
      current = null;
    } else if (line.subarray(0, 8).toString('latin1') === '# file: ') {
      current = new Map();
      result.set(unescapeOctal(line.subarray(8)), current);
    } else if (current) {
      const [name, value] = parseAttributeLine(line);
      current.set(name, value);
    } else {
      throw new ImageBuildError('EXATTR', `unexpected getfattr output: ${JSON.stringify(line.toString())}`);
    }
  }
  return result;
}

function parseAttributeLine(line: Buffer): [string, Buffer] {
  const eq = line.indexOf(0x3d); // '=' inside names is escaped, so the first one separates
  const name = unescapeOctal(eq < 0 ? line : line.subarray(0, eq));
  const raw = eq < 0 ? '' : line.subarray(eq + 1).toString('latin1');
  if (raw !== '' && !raw.startsWith('0s')) {
    throw new ImageBuildError(
      'EXATTR',
      `unexpected getfattr value encoding for ${name}: ${raw.slice(0, 20)}`,
    );
  }
  return [name, Buffer.from(raw.slice(2), 'base64')];
}

/** Turns `\ooo` escapes back into bytes and decodes the result as UTF-8. */
function unescapeOctal(escaped: Buffer): string {
  if (!escaped.includes(0x5c)) return escaped.toString('utf8');
  const bytes: number[] = [];
  for (let i = 0; i < escaped.length; i++) {
    const b = escaped[i]!;
    const octal = b === 0x5c ? escaped.subarray(i + 1, i + 4).toString('latin1') : '';
    if (/^[0-7]{3}$/.test(octal)) {
      bytes.push(Number.parseInt(octal, 8));
      i += 3;
    } else bytes.push(b);
  }
  return Buffer.from(bytes).toString('utf8');
}
