/**
 * Real containerd (Debian's 1.6 + runc) and skopeo for tests. `startContainerd()` runs a private
 * containerd — root, state, sockets and log all under one fresh temp dir, CRI disabled — that `ctr`
 * talks to over its own socket; `stop()` ends it by PID (and any shim it left), unmounts whatever is
 * still mounted under its dirs and removes the temp dir (kept when DAMSELFLY_TEST_KEEP=1).
 *
 * `ctr --hosts-dir` is a client flag: the mirror configuration (`<hostsDir>/<registry host>/hosts.toml`)
 * is read by ctr, not by the daemon, so each `pull` says which dir to use.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { type CommandResult, describeCommand, runCommand } from './command.js';

export { type CommandResult, describeCommand, runCommand };

const START_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 10_000;
const CTR_TIMEOUT_MS = 120_000;
const LOG_TAIL_CHARS = 4000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/** PATH with the sbin dirs added (runc lives in /usr/sbin; containerd finds it and the shim via PATH). */
function toolPath(): string {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const d of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (!dirs.includes(d)) dirs.push(d);
  }
  return dirs.join(delimiter);
}

function toolEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, PATH: toolPath(), ...extra };
}

/** runCommand with the sbin dirs on PATH and ctr's default timeout. */
function runTool(
  command: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  return runCommand(command, args, { timeoutMs: opts.timeoutMs ?? CTR_TIMEOUT_MS, env: toolEnv(opts.env) });
}

async function findExecutable(name: string): Promise<string | undefined> {
  for (const dir of toolPath().split(delimiter)) {
    const path = join(dir, name);
    try {
      await access(path, fsConstants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Why the real containerd / skopeo tests cannot run here (missing tools, not root, no busybox for the
 * runnable image), or undefined when they can. For `it(..., { skip: await containerdAvailability() })`.
 * CI installs the tools (`.ci/run`).
 */
export async function containerdAvailability(
  tools: string[] = ['containerd', 'ctr', 'runc', 'containerd-shim-runc-v2', 'skopeo'],
): Promise<string | undefined> {
  const missing: string[] = [];
  for (const tool of tools) if (!(await findExecutable(tool))) missing.push(tool);
  const reasons: string[] = [];
  if (missing.length > 0) {
    reasons.push(
      `missing ${missing.join(', ')} (apt-get install --no-install-recommends containerd runc skopeo busybox-static)`,
    );
  }
  if (process.getuid?.() !== 0) reasons.push('containerd needs root');
  try {
    await access('/bin/busybox', fsConstants.X_OK);
  } catch {
    reasons.push('no /bin/busybox for the runnable test image (apt-get install busybox-static)');
  }
  return reasons.length > 0 ? reasons.join('; ') : undefined;
}

/** Alias of containerdAvailability(). */
export const availability = containerdAvailability;

export interface StartContainerdOptions {
  /**
   * containerd's `root` (content store, snapshots, metadata). Default `<dir>/root`. A root outside the
   * temp dir survives stop() (so a later containerd can start on the same content); it is still unmounted.
   */
  root?: string;
  /** Where the temp dir is made (default os.tmpdir()). */
  parentDir?: string;
  /** containerd's log level (default info). */
  logLevel?: string;
}

export interface PullOptions {
  /** `--hosts-dir`: a dir of `<host>/hosts.toml` mirror configurations (e.g. this containerd's hostsDir). */
  hostsDir?: string;
  /** `--plain-http` (not needed with a hosts.toml: the scheme comes from there). */
  plainHttp?: boolean;
  /** `--user user:password`. */
  user?: string;
  snapshotter?: string;
  /** `--platform`. */
  platform?: string;
  timeoutMs?: number;
  /** Anything else for `ctr image pull`, before the reference. */
  extraArgs?: string[];
}

export interface RunOptions {
  snapshotter?: string;
  /** Default: a unique `dt-<pid>-<n>-<random>`. */
  containerId?: string;
  timeoutMs?: number;
  /** Anything else for `ctr run` (e.g. `--env K=V`), before the reference. */
  extraArgs?: string[];
}

export interface TestContainerd {
  /** The grpc socket (`ctr --address`). */
  address: string;
  /** The temp dir holding everything (config, root, state, sockets, log). */
  dir: string;
  /** containerd's root dir. */
  root: string;
  /** An empty `<dir>/certs.d` for tests to fill (see writeHostsToml) and pass to pull({ hostsDir }). */
  hostsDir: string;
  logPath: string;
  pid: number;
  /** `ctr --address <address> ARGS…`; never throws on a non-zero exit. */
  ctr(args: string[], opts?: { timeoutMs?: number }): Promise<CommandResult>;
  /** `ctr image pull`; throws with ctr's output when it fails. */
  pull(ref: string, opts?: PullOptions): Promise<CommandResult>;
  /** `ctr run --rm REF <unique id> ARGS…`; the container's stdout. Throws with the output when it fails. */
  run(ref: string, args: string[], opts?: RunOptions): Promise<string>;
  /** `ctr image rm --sync REF` (waits for the garbage collection); throws when it fails. */
  removeImage(ref: string): Promise<void>;
  /** Removes every image (`--sync`); content and snapshots go with them. */
  removeAllImages(): Promise<void>;
  /** Image names (`ctr image ls -q`). */
  images(): Promise<string[]>;
  /** Digests in the content store (`ctr content ls -q`). */
  contentDigests(): Promise<string[]>;
  /** The whole containerd log. */
  logs(): Promise<string>;
  /** Stops containerd by PID (SIGTERM, SIGKILL after a grace), then its shims, unmounts, removes the dir. */
  stop(): Promise<void>;
}

async function logTail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.slice(-LOG_TAIL_CHARS);
}

/** Mount points (from /proc/self/mountinfo) at or under any of `dirs`, deepest first. */
export async function mountsUnder(dirs: string[]): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const prefixes = dirs.map((d) => resolve(d));
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    // mountinfo escapes space, tab, newline and backslash as octal.
    const point = field.replace(/\\([0-7]{3})/g, (_, oct: string) =>
      String.fromCharCode(Number.parseInt(oct, 8)),
    );
    if (prefixes.some((p) => point === p || point.startsWith(`${p}/`))) found.push(point);
  }
  return found.sort((a, b) => b.length - a.length);
}

/** PIDs of the processes whose command line holds `needle` as one argument (shims name our socket). */
async function pidsWithArgument(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(needle)) pids.push(Number(name));
  }
  return pids;
}

/** The shim's runc keeps container state here (shared by every containerd of the machine). */
const RUNC_ROOT = '/run/containerd/runc';

/**
 * Containers still in `<state>/io.containerd.runtime.v2.task/<namespace>/<id>`: only when containerd
 * died before it could delete its tasks. `runc delete --force` kills each (its init is PID 1 of the
 * container's pid namespace) and removes runc's state and cgroups; the shim's socket is unlinked.
 */
async function forceDeleteContainers(state: string): Promise<void> {
  const tasks = join(state, 'io.containerd.runtime.v2.task');
  for (const ns of await readdir(tasks).catch(() => [] as string[])) {
    for (const id of await readdir(join(tasks, ns)).catch(() => [] as string[])) {
      const bundle = join(tasks, ns, id);
      await runTool('runc', ['--root', join(RUNC_ROOT, ns), 'delete', '--force', id], {
        timeoutMs: 10_000,
      }).catch(() => {});
      const pid = Number.parseInt(await readFile(join(bundle, 'init.pid'), 'utf8').catch(() => ''), 10);
      if (pid > 1 && alive(pid)) process.kill(pid, 'SIGKILL');
      const shimAddress = await readFile(join(bundle, 'address'), 'utf8').catch(() => '');
      if (shimAddress.startsWith('unix://'))
        await rm(shimAddress.slice('unix://'.length).trim(), { force: true });
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopChild(child: ChildProcess, graceMs = STOP_GRACE_MS): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  process.kill(child.pid!, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) {
      process.stderr.write(`[containerd helper] containerd (pid ${child.pid}) ignored SIGTERM; SIGKILL\n`);
      process.kill(child.pid!, 'SIGKILL');
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

function configToml(dir: string, root: string, logLevel: string): string {
  const q = (s: string) => JSON.stringify(s);
  return [
    'version = 2',
    `root = ${q(root)}`,
    `state = ${q(join(dir, 'state'))}`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '',
    '[grpc]',
    `  address = ${q(join(dir, 'containerd.sock'))}`,
    '',
    '[ttrpc]',
    '  address = ""',
    '',
    '[debug]',
    `  address = ${q(join(dir, 'debug.sock'))}`,
    `  level = ${q(logLevel)}`,
    '',
    '[metrics]',
    '  address = ""',
    '',
  ].join('\n');
}

let containerCounter = 0;

export async function startContainerd(options: StartContainerdOptions = {}): Promise<TestContainerd> {
  const dir = await mkdtemp(join(options.parentDir ?? tmpdir(), 'damselfly-containerd-'));
  const root = options.root ? resolve(options.root) : join(dir, 'root');
  const address = join(dir, 'containerd.sock');
  const hostsDir = join(dir, 'certs.d');
  const logPath = join(dir, 'containerd.log');
  const configPath = join(dir, 'config.toml');
  await mkdir(hostsDir);
  await mkdir(root, { recursive: true });
  await writeFile(configPath, configToml(dir, root, options.logLevel ?? 'info'));

  const log = await open(logPath, 'w');
  let child: ChildProcess;
  try {
    child = spawn('containerd', ['--config', configPath], {
      stdio: ['ignore', log.fd, log.fd],
      env: toolEnv(),
    });
  } finally {
    await log.close();
  }
  const spawnError = new Promise<Error>((r) => child.once('error', r));

  const ctr = (args: string[], opts: { timeoutMs?: number } = {}) =>
    runTool('ctr', ['--address', address, ...args], opts);

  const cleanup = async () => {
    if (child.pid !== undefined) await stopChild(child);
    // Left only when containerd could not delete its tasks (it died first): the containers, then the
    // shims (they name our socket on their command line).
    await forceDeleteContainers(join(dir, 'state'));
    for (const pid of await pidsWithArgument(address)) if (alive(pid)) process.kill(pid, 'SIGKILL');
    for (const point of await mountsUnder([dir, root])) await runTool('umount', ['-l', point]);
    if (process.env.DAMSELFLY_TEST_KEEP === '1') {
      process.stderr.write(`[containerd helper] kept ${dir}\n`);
    } else await rm(dir, { recursive: true, force: true });
  };

  // Ready when `ctr version` reaches the daemon.
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last: CommandResult | undefined;
  for (;;) {
    const failure = await Promise.race([spawnError, sleep(0).then(() => undefined)]);
    if (failure || child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      const why = failure
        ? `could not be started: ${failure.message}`
        : child.exitCode !== null || child.signalCode !== null
          ? `exited (code ${child.exitCode}, signal ${child.signalCode})`
          : `did not answer on ${address} within ${START_TIMEOUT_MS} ms`;
      const tail = await logTail(logPath);
      await cleanup().catch(() => {});
      throw new Error(
        `containerd ${why}${last ? `\nlast ${describeCommand('ctr version', last)}` : ''}\n--- containerd log (${logPath}) ---\n${tail}`,
      );
    }
    // Until the socket exists, ctr would only sit in its gRPC dial.
    if (await exists(address)) {
      last = await ctr(['version'], { timeoutMs: 5000 }).catch(() => undefined);
      if (last?.code === 0) break;
    }
    await sleep(50);
  }

  const removeImages = async (refs: string[]) => {
    if (refs.length === 0) return;
    const r = await ctr(['image', 'rm', '--sync', ...refs]);
    if (r.code !== 0) throw new Error(describeCommand(`ctr image rm ${refs.join(' ')}`, r));
  };
  const lines = (text: string) =>
    text
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  const images = async () => {
    const r = await ctr(['image', 'ls', '-q']);
    if (r.code !== 0) throw new Error(describeCommand('ctr image ls', r));
    return lines(r.stdout);
  };

  let stopped: Promise<void> | undefined;
  return {
    address,
    dir,
    root,
    hostsDir,
    logPath,
    pid: child.pid!,
    ctr,
    async pull(ref, opts = {}) {
      const args = ['image', 'pull'];
      if (opts.plainHttp) args.push('--plain-http');
      if (opts.hostsDir) args.push('--hosts-dir', opts.hostsDir);
      if (opts.user) args.push('--user', opts.user);
      if (opts.snapshotter) args.push('--snapshotter', opts.snapshotter);
      if (opts.platform) args.push('--platform', opts.platform);
      args.push(...(opts.extraArgs ?? []), ref);
      const r = await ctr(args, { timeoutMs: opts.timeoutMs ?? CTR_TIMEOUT_MS });
      if (r.code !== 0) {
        // Never echo a password into a test log.
        const shown = opts.user
          ? args.join(' ').replace(opts.user, `${opts.user.split(':')[0]}:***`)
          : args.join(' ');
        throw new Error(describeCommand(`ctr ${shown}`, r));
      }
      return r;
    },
    async run(ref, args, opts = {}) {
      const id =
        opts.containerId ?? `dt-${process.pid}-${++containerCounter}-${randomBytes(3).toString('hex')}`;
      const ctrArgs = ['run', '--rm'];
      if (opts.snapshotter) ctrArgs.push('--snapshotter', opts.snapshotter);
      ctrArgs.push(...(opts.extraArgs ?? []), ref, id, ...args);
      const r = await ctr(ctrArgs, { timeoutMs: opts.timeoutMs ?? CTR_TIMEOUT_MS });
      if (r.code !== 0) throw new Error(describeCommand(`ctr ${ctrArgs.join(' ')}`, r));
      return r.stdout;
    },
    removeImage: (ref) => removeImages([ref]),
    async removeAllImages() {
      await removeImages(await images());
    },
    images,
    async contentDigests() {
      const r = await ctr(['content', 'ls', '-q']);
      if (r.code !== 0) throw new Error(describeCommand('ctr content ls', r));
      return lines(r.stdout);
    },
    logs: () => readFile(logPath, 'utf8'),
    stop() {
      stopped ??= (async () => {
        // Containers a test left behind: kill their tasks while containerd can still do it cleanly.
        if (child.exitCode === null && child.signalCode === null) {
          const tasks = await ctr(['task', 'ls', '-q'], { timeoutMs: 10_000 }).catch(() => undefined);
          for (const id of lines(tasks?.stdout ?? '')) {
            await ctr(['task', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 10_000 }).catch(() => {});
            await ctr(['task', 'rm', '-f', id], { timeoutMs: 10_000 }).catch(() => {});
          }
          const containers = await ctr(['container', 'ls', '-q'], { timeoutMs: 10_000 }).catch(
            () => undefined,
          );
          const ids = lines(containers?.stdout ?? '');
          if (ids.length > 0) await ctr(['container', 'rm', ...ids], { timeoutMs: 10_000 }).catch(() => {});
        }
        await cleanup();
      })();
      return stopped;
    },
  };
}

/** Mirror entry of a hosts.toml. */
export interface HostsTomlMirror {
  /** `http://127.0.0.1:PORT` (or with a path, for override_path). */
  url: string;
  /** Default ["pull", "resolve"]. */
  capabilities?: string[];
  skipVerify?: boolean;
  overridePath?: boolean;
  header?: Record<string, string | string[]>;
}

/**
 * Writes `<hostsDir>/<registryHost>/hosts.toml` (the dir is literally named `127.0.0.1:5000`):
 * `server` (default `http://<registryHost>`) plus one `[host."…"]` section per mirror, tried in order
 * before the server. Returns the file's path.
 */
export async function writeHostsToml(
  hostsDir: string,
  registryHost: string,
  opts: { server?: string; mirrors?: HostsTomlMirror[] } = {},
): Promise<string> {
  const q = (s: string) => JSON.stringify(s);
  const out = [`server = ${q(opts.server ?? `http://${registryHost}`)}`, ''];
  for (const m of opts.mirrors ?? []) {
    out.push(`[host.${q(m.url)}]`);
    out.push(`  capabilities = [${(m.capabilities ?? ['pull', 'resolve']).map(q).join(', ')}]`);
    if (m.skipVerify !== undefined) out.push(`  skip_verify = ${m.skipVerify}`);
    if (m.overridePath !== undefined) out.push(`  override_path = ${m.overridePath}`);
    if (m.header && Object.keys(m.header).length > 0) {
      out.push(`  [host.${q(m.url)}.header]`);
      for (const [k, v] of Object.entries(m.header)) {
        out.push(`    ${q(k)} = ${Array.isArray(v) ? `[${v.map(q).join(', ')}]` : q(v)}`);
      }
    }
    out.push('');
  }
  const dir = join(hostsDir, registryHost);
  await mkdir(dir, { recursive: true });
  const path = join(dir, 'hosts.toml');
  await writeFile(path, out.join('\n'));
  return path;
}

/**
 * Writes a containers-registries.conf(5) for skopeo: `registry` (a `host:port`) marked insecure
 * (plain http) unless told otherwise, with optional mirrors (`host:port`, insecure too).
 */
export async function writeRegistriesConf(
  path: string,
  registry: string,
  opts: { insecure?: boolean; mirrors?: Array<string | { location: string; insecure?: boolean }> } = {},
): Promise<string> {
  const q = (s: string) => JSON.stringify(s);
  const insecure = opts.insecure ?? true;
  const out = [
    'unqualified-search-registries = []',
    '',
    '[[registry]]',
    `location = ${q(registry)}`,
    `insecure = ${insecure}`,
  ];
  for (const m of opts.mirrors ?? []) {
    const mirror = typeof m === 'string' ? { location: m } : m;
    out.push('', '[[registry.mirror]]', `location = ${q(mirror.location)}`);
    out.push(`insecure = ${mirror.insecure ?? true}`);
  }
  await writeFile(path, `${out.join('\n')}\n`);
  return path;
}

export interface SkopeoCopyOptions {
  /** `--registries-conf` (a global option; see writeRegistriesConf). */
  registriesConf?: string;
  /** `--src-tls-verify`; false lets skopeo speak plain http to the source. */
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  /** `--src-creds user:password`. */
  creds?: string;
  timeoutMs?: number;
  /** Anything else for `skopeo copy`, before the source. */
  extraArgs?: string[];
}

/**
 * `skopeo [--registries-conf F] --insecure-policy copy [--src-tls-verify=…] [--src-creds …] SRC DEST`
 * (e.g. `docker://127.0.0.1:PORT/repo:tag` → `dir:/tmp/out`). Never throws on a non-zero exit.
 */
export function skopeoCopy(src: string, dest: string, opts: SkopeoCopyOptions = {}): Promise<CommandResult> {
  const args: string[] = [];
  if (opts.registriesConf) args.push('--registries-conf', opts.registriesConf);
  // Signature policy is not what these tests are about (and /etc/containers/policy.json may be absent).
  args.push('--insecure-policy', 'copy');
  if (opts.srcTlsVerify !== undefined) args.push(`--src-tls-verify=${opts.srcTlsVerify}`);
  if (opts.destTlsVerify !== undefined) args.push(`--dest-tls-verify=${opts.destTlsVerify}`);
  if (opts.creds) args.push('--src-creds', opts.creds);
  args.push(...(opts.extraArgs ?? []), src, dest);
  return runTool('skopeo', args, { timeoutMs: opts.timeoutMs ?? CTR_TIMEOUT_MS });
}
