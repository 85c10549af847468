import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Kernel clock ticks per second (the unit of /proc CPU times). */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/<pid>/stat after the command name, which may itself contain spaces and parens. */
function statFields(pid: number | 'self'): string[] | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** User + system CPU seconds a live process has used so far; null once it is gone. */
export function processCpuSeconds(pid: number): number | null {
  const f = statFields(pid);
  if (!f) return null;
  // f[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** User and system CPU seconds of a live process so far; null once it is gone. */
export function processCpuSplit(pid: number): { user: number; system: number } | null {
  const f = statFields(pid);
  return f ? { user: Number(f[11]) / CLK_TCK, system: Number(f[12]) / CLK_TCK } : null;
}

/**
 * CPU seconds of this process's children that have exited and been waited for (cutime + cstime):
 * covers short-lived `get` and `curl` processes without sampling them.
 */
export function reapedChildrenCpuSeconds(): number {
  const s = reapedChildrenCpuSplit();
  return s.user + s.system;
}

export function reapedChildrenCpuSplit(): { user: number; system: number } {
  const f = statFields('self');
  return f ? { user: Number(f[13]) / CLK_TCK, system: Number(f[14]) / CLK_TCK } : { user: 0, system: 0 };
}

export interface MachineCpu {
  /** Seconds summed over all CPUs, by state. */
  user: number;
  system: number;
  iowait: number;
  idle: number;
  other: number;
}

export function machineCpu(): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const s = (n: number | undefined) => (n ?? 0) / CLK_TCK;
  return {
    user: s(user) + s(nice),
    system: s(system),
    iowait: s(iowait),
    idle: s(idle),
    other: s(irq) + s(softirq) + s(steal),
  };
}

export function cpuDelta(a: MachineCpu, b: MachineCpu): MachineCpu {
  return {
    user: b.user - a.user,
    system: b.system - a.system,
    iowait: b.iowait - a.iowait,
    idle: b.idle - a.idle,
    other: b.other - a.other,
  };
}

export interface DiskCounters {
  bytesWritten: number;
  /** Milliseconds the busiest disk had I/O in flight (io_ticks): busy time / wall time = utilisation. */
  busyMs: number;
}

/** Block-device counters so far (/sys/block/<dev>/stat, whole disks only, no loop/ram). */
export function diskCounters(): DiskCounters {
  let sectors = 0;
  let busyMs = 0;
  try {
    for (const dev of readdirSync('/sys/block')) {
      if (/^(loop|ram|zram)/.test(dev)) continue;
      const f = readFileSync(`/sys/block/${dev}/stat`, 'utf8').trim().split(/\s+/);
      sectors += Number(f[6] ?? 0);
      busyMs = Math.max(busyMs, Number(f[9] ?? 0));
    }
  } catch {
    return { bytesWritten: 0, busyMs: 0 };
  }
  return { bytesWritten: sectors * 512, busyMs };
}

export interface Quiet {
  /** Seconds spent waiting for other work on the machine to calm down before the phase. */
  waitedS: number;
  /** Share of both CPUs busy in the last 3 s before the phase (none of it ours), percent. */
  busyPct: number;
}

/**
 * Other people's work on a shared 2-core machine skews every figure, so each phase starts only once
 * the CPUs have been below `quietPct` busy for 3 s (giving up after `quietWaitS`; the level is recorded).
 */
export async function waitQuiet(
  label: string,
  opts: { quietPct: number; quietWaitS: number; log: (msg: string) => void },
): Promise<Quiet> {
  const started = performance.now();
  let lastLog = 0;
  for (;;) {
    const a = machineCpu();
    await new Promise((r) => setTimeout(r, 3000));
    const d = cpuDelta(a, machineCpu());
    const busy = d.user + d.system + d.other;
    const busyPct = Math.round((1000 * busy) / (busy + d.idle + d.iowait)) / 10;
    const waitedS = Math.round(((performance.now() - started) / 1000 - 3) * 10) / 10;
    if (busyPct < opts.quietPct || waitedS >= opts.quietWaitS) {
      if (busyPct >= opts.quietPct)
        opts.log(`${label}: machine still ${busyPct} % busy after ${waitedS} s; going ahead`);
      return { waitedS, busyPct };
    }
    if (performance.now() - lastLog > 30_000) {
      opts.log(`${label}: machine ${busyPct} % busy with other work; waiting (up to ${opts.quietWaitS} s)`);
      lastLog = performance.now();
    }
  }
}
