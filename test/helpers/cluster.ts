import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { taskId } from '../../src/task/index.js';
import { type CommandResult, describeCommand, runCommand } from './command.js';
import { type MetricsSnapshot, scrapeMetrics } from './metrics.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
/** The built CLI; DAMSELFLY_CLI points the harness at another build (or a stand-in). */
export const cliPath = process.env.DAMSELFLY_CLI ?? join(repoRoot, 'dist', 'cli', 'main.js');

const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
const LOG_TAIL_LINES = 80;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const handedOut = new Set<number>();

/** A loopback TCP port nothing listens on right now (and not handed out before by this process). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        const p = address && typeof address !== 'string' ? address.port : 0;
        server.close(() => resolve(p));
      });
    });
    if (port && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

function tcpConnects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function env(): NodeJS.ProcessEnv {
  return { ...process.env, DAMSELFLY_LOG_LEVEL: process.env.DAMSELFLY_LOG_LEVEL ?? 'info', NO_COLOR: '1' };
}

/** A long-running child (`damselfly scheduler|daemon`) with its output captured to files. */
export class ManagedProcess {
  exitInfo: ExitInfo | undefined;
  readonly exited: Promise<ExitInfo>;
  /** The signal it did not exit on within the grace period (it was then killed). */
  ignoredSignal: NodeJS.Signals | undefined;

  constructor(
    readonly name: string,
    readonly args: string[],
    readonly child: ChildProcess,
    readonly stdoutPath: string,
    readonly stderrPath: string,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  static spawn(
    name: string,
    args: string[],
    logDir: string,
    extraEnv: Record<string, string> = {},
  ): ManagedProcess {
    const stdoutPath = join(logDir, `${name}.stdout.log`);
    const stderrPath = join(logDir, `${name}.stderr.log`);
    const out = openSync(stdoutPath, 'a');
    const err = openSync(stderrPath, 'a');
    try {
      const child = spawn(process.execPath, [cliPath, ...args], {
        stdio: ['ignore', out, err],
        env: { ...env(), ...extraEnv },
      });
      return new ManagedProcess(name, args, child, stdoutPath, stderrPath);
    } finally {
      closeSync(out);
      closeSync(err);
    }
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Sends `signal` to this process's PID and waits for it to exit (SIGKILL after `graceMs`). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = STOP_GRACE_MS): Promise<ExitInfo> {
    if (!this.running) return this.exitInfo!;
    this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const result = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (result !== 'timeout') return result;
    process.stderr.write(
      `[cluster] ${this.name} (pid ${this.pid}) ignored ${signal} for ${graceMs} ms; SIGKILL\n`,
    );
    this.ignoredSignal = signal;
    this.child.kill('SIGKILL');
    return this.exited;
  }

  kill(): Promise<ExitInfo> {
    return this.stop('SIGKILL');
  }

  async logTail(lines = LOG_TAIL_LINES): Promise<string> {
    const parts: string[] = [];
    for (const [stream, path] of [
      ['stdout', this.stdoutPath],
      ['stderr', this.stderrPath],
    ] as const) {
      const text = await readFile(path, 'utf8').catch(() => '');
      const all = text.split('\n');
      if (all.at(-1) === '') all.pop();
      if (all.length === 0) continue;
      const shown = all.slice(-lines);
      const skipped = all.length - shown.length;
      parts.push(
        `--- ${this.name} ${stream} (${path}${skipped ? `, last ${shown.length} of ${all.length} lines` : ''}) ---`,
        ...shown,
      );
    }
    const state = this.exitInfo
      ? `exited code=${this.exitInfo.code} signal=${this.exitInfo.signal}`
      : `running (pid ${this.pid})`;
    return [`=== ${this.name}: damselfly ${this.args.join(' ')} — ${state}`, ...parts].join('\n');
  }
}

export interface Scheduler {
  name: string;
  port: number;
  address: string;
  process: ManagedProcess;
}

export interface DaemonOptions {
  name?: string;
  seedPeer?: boolean;
  /** YAML written to a file and passed with --config (schema: daemonConfigSchema). */
  configYaml?: string;
  /** Defaults to the cluster's most recently started scheduler. */
  schedulerPort?: number;
  /** Extra environment (e.g. NODE_EXTRA_CA_CERTS). */
  env?: Record<string, string>;
}

export type GetResult = CommandResult;

/** Runs `damselfly get ARGS…` to completion (SIGKILL after `timeoutMs`). */
export function runGet(args: string[], opts: { timeoutMs?: number } = {}): Promise<GetResult> {
  return runCommand(process.execPath, [cliPath, 'get', ...args], {
    timeoutMs: opts.timeoutMs ?? 240_000,
    env: env(),
  });
}

/** Formats a get result for an assertion message. */
export function describeGet(r: GetResult): string {
  return describeCommand('get', r);
}

export class Daemon {
  constructor(
    readonly cluster: Cluster,
    readonly name: string,
    readonly process: ManagedProcess,
    readonly options: Required<Omit<DaemonOptions, 'configYaml' | 'env'>> &
      Pick<DaemonOptions, 'configYaml' | 'env'>,
    readonly dataDir: string,
    readonly socket: string,
    readonly uploadPort: number,
    readonly proxyPort: number,
    readonly metricsPort: number,
  ) {}

  get metricsUrl(): string {
    return `http://127.0.0.1:${this.metricsPort}/metrics`;
  }

  metrics(): Promise<MetricsSnapshot> {
    return scrapeMetrics(this.metricsUrl);
  }

  /** Where this daemon keeps a task's content: <data-dir>/content/tasks/<id[0:3]>/<id>. */
  contentPath(url: string): string {
    const id = taskId({ url });
    return join(this.dataDir, 'content', 'tasks', id.slice(0, 3), id);
  }

  /** `damselfly get URL -O OUT --socket <this daemon> --no-progress …extra`. */
  get(url: string, out: string, extra: string[] = [], opts: { timeoutMs?: number } = {}): Promise<GetResult> {
    return runGet([url, '-O', out, '--socket', this.socket, '--no-progress', ...extra], opts);
  }

  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<ExitInfo> {
    return this.process.stop(signal);
  }

  kill(): Promise<ExitInfo> {
    return this.process.kill();
  }
}

/**
 * Real `damselfly` processes for one test file, under one temp dir. Call `stop()` in `after()`:
 * every process is stopped by PID (SIGTERM, then SIGKILL) and the temp dir removed
 * (kept when DAMSELFLY_TEST_KEEP=1).
 */
export class Cluster {
  readonly processes: ManagedProcess[] = [];
  readonly schedulers: Scheduler[] = [];
  readonly daemons: Daemon[] = [];
  private readonly names = new Map<string, number>();

  private constructor(readonly root: string) {}

  static async create(label = 'cluster'): Promise<Cluster> {
    if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run \`npm run build\` first`);
    const root = await mkdtemp(join(tmpdir(), `damselfly-it-${label}-`));
    await mkdir(join(root, 'logs'));
    return new Cluster(root);
  }

  get logDir(): string {
    return join(this.root, 'logs');
  }

  /** A fresh directory under the cluster root (for output files). */
  async dir(name: string): Promise<string> {
    const path = join(this.root, this.unique(name));
    await mkdir(path, { recursive: true });
    return path;
  }

  private unique(name: string): string {
    const n = this.names.get(name) ?? 0;
    this.names.set(name, n + 1);
    return n === 0 ? name : `${name}-${n}`;
  }

  private spawn(name: string, args: string[], extraEnv?: Record<string, string>): ManagedProcess {
    const proc = ManagedProcess.spawn(name, args, this.logDir, extraEnv);
    this.processes.push(proc);
    return proc;
  }

  private async waitReady(proc: ManagedProcess, what: string, probe: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (!proc.running) {
        throw new Error(`${proc.name} exited before it was ready (${what})\n${await proc.logTail()}`);
      }
      if (await probe()) return;
      if (Date.now() > deadline) {
        throw new Error(
          `${proc.name} not ready after ${READY_TIMEOUT_MS} ms (${what})\n${await proc.logTail()}`,
        );
      }
      await sleep(100);
    }
  }

  async startScheduler(opts: { name?: string; configYaml?: string } = {}): Promise<Scheduler> {
    const name = this.unique(opts.name ?? 'scheduler');
    const port = await freePort();
    const args = ['scheduler', '--listen', `127.0.0.1:${port}`];
    if (opts.configYaml !== undefined) {
      const file = join(this.root, `${name}.yaml`);
      await writeFile(file, opts.configYaml);
      args.push('--config', file);
    }
    const proc = this.spawn(name, args);
    await this.waitReady(proc, `TCP connect to 127.0.0.1:${port}`, () => tcpConnects(port));
    const scheduler = { name, port, address: `127.0.0.1:${port}`, process: proc };
    this.schedulers.push(scheduler);
    return scheduler;
  }

  async startDaemon(opts: DaemonOptions = {}): Promise<Daemon> {
    const schedulerPort = opts.schedulerPort ?? this.schedulers.at(-1)?.port;
    if (schedulerPort === undefined)
      throw new Error('startDaemon: no scheduler started and no schedulerPort');
    const name = this.unique(opts.name ?? (opts.seedPeer ? 'seed' : 'daemon'));
    const home = join(this.root, name);
    const dataDir = join(home, 'data');
    await mkdir(dataDir, { recursive: true });
    const [uploadPort, proxyPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    return this.launchDaemon(
      name,
      { name, seedPeer: opts.seedPeer ?? false, schedulerPort, configYaml: opts.configYaml, env: opts.env },
      dataDir,
      join(home, 'daemon.sock'),
      uploadPort,
      proxyPort,
      metricsPort,
    );
  }

  /** A new daemon process on a stopped daemon's data dir, socket and ports. */
  async restartDaemon(old: Daemon): Promise<Daemon> {
    if (old.process.running) throw new Error(`restartDaemon: ${old.name} is still running`);
    return this.launchDaemon(
      this.unique(old.name),
      old.options,
      old.dataDir,
      old.socket,
      old.uploadPort,
      old.proxyPort,
      old.metricsPort,
    );
  }

  private async launchDaemon(
    name: string,
    options: Daemon['options'],
    dataDir: string,
    socket: string,
    uploadPort: number,
    proxyPort: number,
    metricsPort: number,
  ): Promise<Daemon> {
    const args = [
      'daemon',
      '--data-dir',
      dataDir,
      '--scheduler',
      `127.0.0.1:${options.schedulerPort}`,
      ...(options.seedPeer ? ['--seed-peer'] : []),
      '--ip',
      '127.0.0.1',
      '--upload-port',
      String(uploadPort),
      '--proxy-port',
      String(proxyPort),
      '--metrics-port',
      String(metricsPort),
      '--socket',
      socket,
    ];
    if (options.configYaml !== undefined) {
      const file = join(this.root, `${name}.yaml`);
      await writeFile(file, options.configYaml);
      args.push('--config', file);
    }
    const proc = this.spawn(name, args, options.env);
    const healthy = `http://127.0.0.1:${metricsPort}/healthy`;
    await this.waitReady(proc, `GET ${healthy} → 200`, () => httpOk(healthy));
    const daemon = new Daemon(this, name, proc, options, dataDir, socket, uploadPort, proxyPort, metricsPort);
    this.daemons.push(daemon);
    return daemon;
  }

  /** Any other long-running `damselfly ARGS…` (e.g. a mount), stopped with the rest by stop(). */
  startProcess(name: string, args: string[]): ManagedProcess {
    return this.spawn(this.unique(name), args);
  }

  /** Waits until the process has printed `text` on stdout; fails with its log if it exits or times out. */
  async waitForOutput(proc: ManagedProcess, text: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await readFile(proc.stdoutPath, 'utf8').catch(() => '')).includes(text)) return;
      if (!proc.running) break;
      await sleep(50);
    }
    throw new Error(`${proc.name} did not print "${text}"\n${await proc.logTail()}`);
  }

  /** The tail of every process's output, for a failure report. */
  async logs(): Promise<string> {
    const tails = await Promise.all(this.processes.map((p) => p.logTail()));
    return tails.join('\n\n');
  }

  /** Runs a test body; when it throws, every process's log tail is printed before the error propagates. */
  async withLogs<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (err) {
      process.stderr.write(
        `\n[cluster] test failed; process logs under ${this.root}:\n${await this.logs()}\n\n`,
      );
      throw err;
    }
  }

  /** Stops every process; fails if one had to be killed: a daemon must exit on SIGTERM. */
  async stop(): Promise<void> {
    const running = this.processes.filter((p) => p.running);
    await Promise.all(running.map((p) => p.stop()));
    const stuck = running.filter((p) => p.ignoredSignal === 'SIGTERM');
    if (process.env.DAMSELFLY_TEST_KEEP === '1') {
      process.stderr.write(`[cluster] kept ${this.root}\n`);
    } else await rm(this.root, { recursive: true, force: true });
    if (stuck.length > 0) {
      throw new Error(`ignored SIGTERM and had to be killed: ${stuck.map((p) => p.name).join(', ')}`);
    }
  }
}

/** Scrapes a daemon's /metrics. */
export function metrics(daemon: Daemon): Promise<MetricsSnapshot> {
  return daemon.metrics();
}
