/**
 * A private network of Linux network namespaces for benchmarks: one bridge in the root namespace and one
 * namespace per host, each joined to the bridge by a veth pair, with `tc tbf` on either end of the veth to
 * limit what the host sends (namespace side) and receives (bridge side). No default route, no NAT, no
 * forwarding: traffic stays on the bridge. Every name starts with a prefix (`dfb-`) so that leftovers of a
 * crashed run can be recognised and removed (`removeLeftovers`), processes in them included.
 *
 * Needs root, iproute2 and a kernel with veth, bridge and sch_tbf (netem is not available here).
 */
import { type ExecFileException, execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';

export class NetnsError extends Error {
  readonly code = 'NETNS';
}

/** Runs a command to completion; throws with its stderr when it exits non-zero. */
export function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: 'utf8' }, (err: ExecFileException | null, stdout, stderr) => {
      if (err) reject(new NetnsError(`${command} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** A rate in bits per second from tc-style text: `100mbit`, `1gbit`, `500kbit`, `12.5MiB` (bytes/s), `800000`. */
export function parseRate(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z/]*)\s*$/.exec(text);
  const units: Record<string, number> = {
    '': 1,
    bit: 1,
    kbit: 1e3,
    mbit: 1e6,
    gbit: 1e9,
    bps: 8,
    kib: 8 * 1024,
    mib: 8 * 1024 ** 2,
    gib: 8 * 1024 ** 3,
    'kib/s': 8 * 1024,
    'mib/s': 8 * 1024 ** 2,
  };
  const unit = m ? units[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new NetnsError(`invalid rate "${text}" (use e.g. 100mbit, 12MiB)`);
  return Math.round(Number(m[1]) * unit);
}

/**
 * tbf's bucket: at least 64 KiB (bigger than any GSO packet the stack hands it, and than the 1500-byte MTU
 * it must never be below) and at least 10 ms at the rate, so the timer granularity does not cut the rate.
 */
function tbfArgs(bitsPerS: number): string[] {
  const burst = Math.max(64 * 1024, Math.ceil(bitsPerS / 8 / 100));
  return ['tbf', 'rate', `${bitsPerS}bit`, 'burst', String(burst), 'latency', '100ms'];
}

export interface HostOptions {
  /** Namespace name; must start with the network's prefix. */
  ns: string;
  /** Address on the bridge's /24. */
  ip: string;
  /** Limit on what the host sends, bits/s (tbf on the namespace side); undefined = none. */
  egressBps?: number;
  /** Limit on what the host receives, bits/s (tbf on the bridge side); undefined = none. */
  ingressBps?: number;
}

export interface NetnsHost extends HostOptions {
  /** The veth end on the bridge (root namespace): its rx counters are what the host sent. */
  bridgeIf: string;
  /** The veth end inside the namespace. */
  nsIf: string;
}

export interface NetworkOptions {
  /** Prefix of every namespace and link created, e.g. `dfb-`. */
  prefix: string;
  /** First three octets of the /24, e.g. `10.77.0`; the bridge takes `.1`. */
  subnet: string;
}

export class BenchNetwork {
  readonly hosts = new Map<string, NetnsHost>();
  readonly bridge: string;
  readonly bridgeIp: string;
  private destroyed = false;

  private constructor(readonly options: NetworkOptions) {
    this.bridge = `${options.prefix}br0`;
    this.bridgeIp = `${options.subnet}.1`;
  }

  /** Creates the bridge (no route beyond the /24, IP forwarding untouched). */
  static async create(options: NetworkOptions): Promise<BenchNetwork> {
    const net = new BenchNetwork(options);
    await run('ip', ['link', 'add', net.bridge, 'type', 'bridge']);
    try {
      await run('ip', ['addr', 'add', `${net.bridgeIp}/24`, 'dev', net.bridge]);
      await run('ip', ['link', 'set', net.bridge, 'up']);
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  /** A namespace joined to the bridge, `lo` up, shaped with tbf as asked. */
  async addHost(opts: HostOptions): Promise<NetnsHost> {
    const { prefix } = this.options;
    if (!opts.ns.startsWith(prefix)) throw new NetnsError(`namespace ${opts.ns} lacks the prefix ${prefix}`);
    // Interface names are limited to 15 characters.
    const base = opts.ns.slice(0, 11);
    const host: NetnsHost = { ...opts, bridgeIf: `${base}-h`, nsIf: `${base}-i` };
    if (host.bridgeIf.length > 15) throw new NetnsError(`name too long: ${host.bridgeIf}`);
    await run('ip', ['netns', 'add', opts.ns]);
    this.hosts.set(opts.ns, host);
    await run('ip', [
      'link',
      'add',
      host.bridgeIf,
      'type',
      'veth',
      'peer',
      'name',
      host.nsIf,
      'netns',
      opts.ns,
    ]);
    await run('ip', ['link', 'set', host.bridgeIf, 'master', this.bridge]);
    await run('ip', ['link', 'set', host.bridgeIf, 'up']);
    await run('ip', ['-n', opts.ns, 'link', 'set', 'lo', 'up']);
    await run('ip', ['-n', opts.ns, 'addr', 'add', `${opts.ip}/24`, 'dev', host.nsIf]);
    await run('ip', ['-n', opts.ns, 'link', 'set', host.nsIf, 'up']);
    if (opts.egressBps)
      await run('tc', ['-n', opts.ns, 'qdisc', 'add', 'dev', host.nsIf, 'root', ...tbfArgs(opts.egressBps)]);
    if (opts.ingressBps)
      await run('tc', ['qdisc', 'add', 'dev', host.bridgeIf, 'root', ...tbfArgs(opts.ingressBps)]);
    return host;
  }

  host(ns: string): NetnsHost {
    const h = this.hosts.get(ns);
    if (!h) throw new NetnsError(`no namespace ${ns}`);
    return h;
  }

  /** `ip netns exec <ns> <argv…>`: iproute2 execs the command, so the child's PID is the command's. */
  static execArgs(ns: string, argv: string[]): string[] {
    return ['netns', 'exec', ns, ...argv];
  }

  /** Bytes the host has sent onto the bridge so far (rx of the bridge-side veth, frames with headers). */
  async sentBytes(ns: string): Promise<number> {
    const text = await readFile(`/sys/class/net/${this.host(ns).bridgeIf}/statistics/rx_bytes`, 'utf8');
    return Number(text.trim());
  }

  /** The tc statistics of both shaped ends (sent/dropped/overlimits), for the record. */
  async qdiscStats(ns: string): Promise<{ egress: string; ingress: string }> {
    const h = this.host(ns);
    const [egress, ingress] = await Promise.all([
      run('tc', ['-n', ns, '-s', 'qdisc', 'show', 'dev', h.nsIf]).catch((e: Error) => e.message),
      run('tc', ['-s', 'qdisc', 'show', 'dev', h.bridgeIf]).catch((e: Error) => e.message),
    ]);
    return { egress: egress.trim(), ingress: ingress.trim() };
  }

  /** Kills what still runs in the namespaces (by PID), deletes them (and so their veths) and the bridge. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const ns of [...this.hosts.keys()].reverse()) await removeNamespace(ns);
    this.hosts.clear();
    await run('ip', ['link', 'del', this.bridge]).catch(() => undefined);
  }
}

/** PIDs of processes in a namespace (`ip netns pids`). */
export async function namespacePids(ns: string): Promise<number[]> {
  const out = await run('ip', ['netns', 'pids', ns]).catch(() => '');
  return out
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

async function removeNamespace(ns: string): Promise<void> {
  for (const pid of await namespacePids(ns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await run('ip', ['netns', 'del', ns]).catch(() => undefined);
}

/**
 * Removes every namespace and root-namespace link whose name starts with `prefix` (what a killed run left
 * behind), killing the processes still running in those namespaces by PID. Returns what it removed.
 */
export async function removeLeftovers(prefix: string): Promise<string[]> {
  const removed: string[] = [];
  const list = await run('ip', ['netns', 'list']).catch(() => '');
  for (const line of list.split('\n')) {
    const ns = line.trim().split(/\s+/)[0];
    if (!ns?.startsWith(prefix)) continue;
    await removeNamespace(ns);
    removed.push(`netns ${ns}`);
  }
  const links = await run('ip', ['-o', 'link', 'show']).catch(() => '');
  for (const line of links.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (!name?.startsWith(prefix)) continue;
    await run('ip', ['link', 'del', name]).catch(() => undefined);
    removed.push(`link ${name}`);
  }
  return removed;
}

/** What `ip netns list` and `ip link` still show with the prefix (should be nothing after a run). */
export async function leftovers(prefix: string): Promise<string[]> {
  const found: string[] = [];
  const list = await run('ip', ['netns', 'list']).catch(() => '');
  for (const line of list.split('\n')) {
    const ns = line.trim().split(/\s+/)[0];
    if (ns?.startsWith(prefix)) found.push(`netns ${ns}`);
  }
  const links = await run('ip', ['-o', 'link', 'show']).catch(() => '');
  for (const line of links.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (name?.startsWith(prefix)) found.push(`link ${name}`);
  }
  return found;
}
