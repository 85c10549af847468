/**
 * Self time by function from the `.cpuprofile` files `node --cpu-prof` writes (one per thread: the
 * main thread and each worker), for benchmark reports.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  /** `function (file:line)`, or V8's `(garbage collector)`, `(program)`, `(idle)`. */
  name: string;
  selfMs: number;
  /** Share of the thread's non-idle samples, percent. */
  pct: number;
}

export interface ThreadProfile {
  file: string;
  /** Node's thread id from the file name (0 = the main thread). */
  thread: number;
  wallMs: number;
  /** Sampled time that was not idle. */
  busyMs: number;
  top: ProfileEntry[];
}

function frameName(node: ProfileNode, root: string): string {
  const { functionName, url, lineNumber } = node.callFrame;
  // WebAssembly has no useful names here; the only wasm the CLI runs is zstd (@bokuweb/zstd-wasm).
  if (url.startsWith('wasm://')) return '(WebAssembly: zstd)';
  if (!url) return functionName || '(anonymous)';
  const path = url.startsWith('file://') ? relative(root, new URL(url).pathname) : url;
  return `${functionName || '(anonymous)'} (${path}:${lineNumber + 1})`;
}

/** One summary per `.cpuprofile` in `dir`, the busiest thread first; paths shown relative to `root`. */
export function summarizeCpuProfiles(dir: string, root: string, topN = 15): ThreadProfile[] {
  const summaries: ThreadProfile[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const selfUs = new Map<string, number>();
    // Sample i lasts until sample i + 1 (timeDeltas[i + 1]); the last one until endTime.
    let t = profile.startTime;
    const times = profile.timeDeltas.map((d) => (t += d));
    for (const [i, id] of profile.samples.entries()) {
      const next = i + 1 < times.length ? times[i + 1]! : profile.endTime;
      const node = byId.get(id);
      if (!node) continue;
      const name = frameName(node, root);
      selfUs.set(name, (selfUs.get(name) ?? 0) + Math.max(0, next - times[i]!));
    }
    const busyUs = [...selfUs.entries()].filter(([n]) => n !== '(idle)').reduce((s, [, us]) => s + us, 0);
    const top = [...selfUs.entries()]
      .filter(([n]) => n !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, topN)
      .map(([name, us]) => ({
        name,
        selfMs: Math.round(us / 1000),
        pct: busyUs ? Math.round((1000 * us) / busyUs) / 10 : 0,
      }));
    const parts = file.split('.');
    summaries.push({
      file,
      thread: Number(parts[parts.length - 3] ?? 0),
      wallMs: Math.round((profile.endTime - profile.startTime) / 1000),
      busyMs: Math.round(busyUs / 1000),
      top,
    });
  }
  return summaries.sort((a, b) => b.busyMs - a.busyMs);
}
