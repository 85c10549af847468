/**
 * Reads extended attributes of many paths with `getfattr` (package `attr`): Node has no xattr API,
 * and one process per file would cost more than the rest of a build. One `xargs -0 getfattr …` runs
 * for the whole walk: paths are written to its stdin as they are found, xargs packs them into
 * full command lines, and the dump is parsed at the end. (Spawning getfattr batches from Node cost
 * ~25 ms per spawn — a fork of a large process — which dominated builds of many small files.)
 * Paths are never dereferenced (`-h`).
 *
 * getfattr prints `# file: <path>` then `name=0s<base64>` lines and a blank line, only for paths
 * that have attributes; in paths and names it escapes `\`, `=`, control characters (and, in some
 * versions, bytes ≥ 0x7f) as `\ooo` octal.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { ImageBuildError } from './errors.js';

type Xattrs = Map<string, Buffer>;

const GETFATTR = ['getfattr', '-h', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '--'];

export class XattrReader {
  private child: ChildProcessByStdio<Writable, Readable, Readable> | null = null;
  private result: Promise<Buffer> | null = null;
  private pending = '';

  constructor(private readonly signal?: AbortSignal) {}

  /** Queues an absolute path (its attributes come with `finish()`). */
  request(path: string): void {
    this.pending += `${path}\0`;
    // One pipe write per 64 KiB of paths, not one per path.
    if (this.pending.length >= 64 * 1024) this.send();
  }

  private send(): void {
    this.child ??= this.start();
    this.child.stdin.write(this.pending);
    this.pending = '';
  }

  /** Path → attributes, for the requested paths that have any. */
  async finish(): Promise<Map<string, Xattrs>> {
    if (this.pending) this.send();
    if (!this.child || !this.result) return new Map();
    this.child.stdin.end();
    return parseGetfattrOutput(await this.result);
  }

  /** Stops getfattr (after a failed walk). */
  stop(): void {
    this.child?.kill();
  }

  private start(): ChildProcessByStdio<Writable, Readable, Readable> {
    const child = spawn('xargs', ['-0', '-r', ...GETFATTR], {
      stdio: ['pipe', 'pipe', 'pipe'],
      signal: this.signal,
    });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => stdout.push(data));
    child.stderr.on('data', (data: Buffer) => {
      stderr += data.toString();
    });
    // A write after getfattr died (EPIPE) is reported by the exit status below.
    child.stdin.on('error', () => undefined);
    this.result = new Promise((resolve, reject) => {
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') {
          reject(
            new ImageBuildError('EXATTR', 'xargs not found: install "findutils" and "attr" to read xattrs'),
          );
        } else reject(err);
      });
      child.once('close', (code) => {
        if (code === 0) return resolve(Buffer.concat(stdout));
        const first = stderr.trim().split('\n')[0] ?? '';
        const hint = code === 127 ? ' (is the "attr" package installed?)' : '';
        reject(
          new ImageBuildError('EXATTR', `reading xattrs failed (getfattr exit ${code})${hint}: ${first}`),
        );
      });
    });
    this.result.catch(() => undefined); // reported by finish()
    return child;
  }
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
