import { createHash } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { SingleBar } from 'cli-progress';
import { Command } from 'commander';
import { defaultApiSocketPath } from '../config/paths.js';
import type { DownloadApiRequest, DownloadEvent } from '../daemon/index.js';
import { parseDigest, stagingPathFor } from '../task/index.js';
import { humanBytes } from './progress.js';
import { intOption, UserError } from './run.js';

const defaultSocket = defaultApiSocketPath;

function parseHeader(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const i = value.indexOf(':');
  if (i <= 0) throw new UserError(`invalid header "${value}": expected 'Name: value'`);
  return { ...previous, [value.slice(0, i).trim()]: value.slice(i + 1).trim() };
}

export function getCommand(): Command {
  return new Command('get')
    .summary('download a URL through the local daemon (dfget)')
    .description(
      'Downloads URL through the local damselfly daemon, which fetches it from other peers when it can and ' +
        'from the origin only when the scheduler says so. FILE appears only once the download is complete ' +
        'and verified: on any failure nothing is left at FILE.',
    )
    .argument('<url>', 'http(s) URL to download')
    .requiredOption('-O, --output <file>', 'where to write the file')
    .option('--digest <algo:hex>', 'expected whole-file digest, e.g. sha256:<64 hex>')
    .option('--tag <tag>', 'tag: different tags make different tasks for the same URL')
    .option('--application <name>', 'application name, part of the task id')
    .option(
      '--priority <0-6>',
      'what may fetch a task no peer has yet (Dragonfly levels): 1 refuses it, 2 takes it from peers only ' +
        '(never the source), 3 fetches the source itself, 0 and 4-6 (default 0) have a seed peer fetch it',
      intOption('--priority'),
    )
    .option(
      '-H, --header <header>',
      "request header sent to the origin, 'Name: value' (repeatable)",
      parseHeader,
    )
    .option('--socket <path>', 'the daemon API socket', defaultSocket())
    .option('--no-progress', 'do not show the progress bar')
    .option(
      '--copy',
      'write FILE as an independent copy; by default the daemon hard-links FILE to its stored copy when ' +
        'both are on one filesystem (no bytes copied; FILE then shares its bytes with the cache, which ' +
        'is re-verified before reuse if FILE is written to)',
    )
    .option('--force-hard-link', 'fail rather than copy when FILE cannot be hard-linked to the stored copy')
    .option(
      '--transfer-from-daemon',
      'stream the content through the socket and write FILE here, instead of letting the daemon copy it ' +
        '(for a daemon that does not see this filesystem, e.g. in another container)',
    )
    .action(async (url: string, opts) => {
      if (!/^https?:\/\//i.test(url) || !URL.canParse(url))
        throw new UserError(`invalid URL "${url}": need http(s)://...`);
      if (opts.digest) {
        try {
          parseDigest(opts.digest);
        } catch (err) {
          throw new UserError((err as Error).message);
        }
      }
      if (opts.priority !== undefined && opts.priority > 6) throw new UserError('--priority must be 0..6');
      if (opts.copy && opts.forceHardLink)
        throw new UserError('--copy and --force-hard-link exclude each other');
      const output = resolve(opts.output);
      const streamed = Boolean(opts.transferFromDaemon);
      const request: DownloadApiRequest = {
        url,
        digest: opts.digest,
        tag: opts.tag,
        application: opts.application,
        priority: opts.priority,
        headers: opts.header ?? {},
        // By default the daemon hard-links (or copies) the finished content to FILE, atomically.
        output: streamed ? undefined : output,
        outputMode: opts.copy ? 'copy' : opts.forceHardLink ? 'hard-link' : 'auto',
      };
      const taskId = await download(request, opts.socket, Boolean(opts.progress) && process.stderr.isTTY);
      if (streamed) await writeAtomically(opts.socket, taskId, output, opts.digest);
    });
}

function call(socketPath: string, method: string, path: string, body?: unknown): Promise<IncomingMessage> {
  return new Promise((resolvePromise, reject) => {
    const req = httpRequest({ socketPath, method, path, headers: { 'content-type': 'application/json' } });
    req.once('response', resolvePromise);
    req.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'EACCES') {
        reject(
          new UserError(
            `no damselfly daemon answers at ${socketPath} (${err.code}); start one with "damselfly daemon" ` +
              '(or "damselfly cluster" on a single machine), or point --socket at its socket',
          ),
        );
      } else reject(err);
    });
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function errorOf(res: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of res) text += chunk;
  try {
    return (JSON.parse(text) as { error: string }).error;
  } catch {
    return text.trim() || `daemon answered ${res.statusCode}`;
  }
}

/** Runs the download in the daemon, showing progress; resolves with the task id once it is done. */
async function download(req: DownloadApiRequest, socket: string, showProgress: boolean): Promise<string> {
  const res = await call(socket, 'POST', '/v1/downloads', req);
  if (res.statusCode !== 200) throw new UserError(await errorOf(res));
  const bar = showProgress ? new ProgressBar() : null;
  let done: Extract<DownloadEvent, { event: 'done' }> | null = null;
  try {
    for await (const line of createInterface({ input: res, crlfDelay: Infinity })) {
      if (!line) continue;
      const event = JSON.parse(line) as DownloadEvent;
      if (event.event === 'progress' && event.contentLength >= 0) {
        bar?.show(event.completedLength, event.contentLength, event.p2pBytes, event.sourceBytes);
      } else if (event.event === 'error') {
        throw new UserError(event.message);
      } else if (event.event === 'done') {
        done = event;
        bar?.show(event.contentLength, event.contentLength, event.p2pBytes, event.sourceBytes);
      }
    }
  } finally {
    bar?.stop();
  }
  if (!done) throw new UserError('the daemon closed the connection before the download finished');
  return done.taskId;
}

/** The terminal progress bar: bytes, rate, ETA and the share that came from peers. */
class ProgressBar {
  private readonly bar = new SingleBar({
    format: ' {bar} {percentage}% | {done}/{size} | {speed} | ETA {eta_formatted} | from peers {peers}',
    hideCursor: true,
    stream: process.stderr,
  });
  private readonly started = Date.now();
  private running = false;

  show(completed: number, total: number, p2pBytes: number, sourceBytes: number): void {
    const rate = completed / Math.max((Date.now() - this.started) / 1000, 0.001);
    const fetched = p2pBytes + sourceBytes;
    const payload = {
      done: humanBytes(completed),
      size: humanBytes(total),
      speed: `${humanBytes(rate)}/s`,
      peers: fetched ? `${Math.round((p2pBytes / fetched) * 100)}%` : '-',
    };
    if (!this.running) {
      // Started once the size is known, so the bar never shows 100% of nothing.
      this.bar.start(total, completed, payload);
      this.running = true;
    } else {
      this.bar.setTotal(total);
      this.bar.update(completed, payload);
    }
  }

  stop(): void {
    if (this.running) this.bar.stop();
  }
}

/** Streams the content into a temp file next to `output`, checks the digest, fsyncs, renames. */
async function writeAtomically(socket: string, taskId: string, output: string, digest?: string) {
  const res = await call(socket, 'GET', `/v1/tasks/${taskId}/content`);
  if (res.statusCode !== 200) throw new UserError(await errorOf(res));
  const temp = stagingPathFor(output);
  const expected = digest ? parseDigest(digest) : null;
  const hash = expected ? createHash(expected.algorithm) : null;
  const cleanup = () => unlink(temp).catch(() => undefined);
  const onSignal = () => {
    void cleanup().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let file: Awaited<ReturnType<typeof open>> | null = null;
  try {
    file = await open(temp, 'wx', 0o644);
    let written = 0;
    for await (const chunk of res as AsyncIterable<Buffer>) {
      hash?.update(chunk);
      await file.write(chunk);
      written += chunk.length;
    }
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && written !== declared) {
      throw new UserError(`the daemon sent ${written} of ${declared} bytes`);
    }
    if (expected && hash) {
      const actual = hash.digest('hex');
      if (actual !== expected.hex)
        throw new UserError(`digest mismatch: expected ${digest}, got ${expected.algorithm}:${actual}`);
    }
    await file.sync();
    await file.close();
    file = null;
    await rename(temp, output);
  } catch (err) {
    await file?.close().catch(() => undefined);
    await cleanup();
    if (
      (err as NodeJS.ErrnoException).code === 'ENOENT' ||
      (err as NodeJS.ErrnoException).code === 'EACCES'
    ) {
      throw new UserError(`cannot write ${output}: ${(err as Error).message}`);
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
