export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseValue(text: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/gy;
  let m: RegExpExecArray | null;
  let consumed = 0;
  // biome-ignore lint/suspicious/noAssignInExpressions: the usual exec loop
  while ((m = re.exec(text)) !== null) {
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    consumed = re.lastIndex;
  }
  if (text.slice(consumed).trim() !== '') throw new Error(`metrics: cannot parse labels in: ${line}`);
  return labels;
}

/** Parses Prometheus text exposition format (what prom-client serves). */
export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
    if (!m) throw new Error(`metrics: cannot parse line: ${line}`);
    samples.push({ name: m[1]!, labels: m[2] ? parseLabels(m[2], line) : {}, value: parseValue(m[3]!) });
  }
  return samples;
}

/** A scrape of one process's /metrics, with lookups by name and label subset. */
export class MetricsSnapshot {
  readonly samples: Sample[];

  constructor(readonly text: string) {
    this.samples = parsePrometheus(text);
  }

  /** Series of `name` whose labels include every given label. */
  series(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter(
      (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
  }

  has(name: string): boolean {
    return this.samples.some((s) => s.name === name);
  }

  /**
   * Sum over the matching series; 0 when there is none (prom-client emits a labelled counter only once
   * it has been incremented).
   */
  value(name: string, labels: Record<string, string> = {}): number {
    return this.series(name, labels).reduce((sum, s) => sum + s.value, 0);
  }
}

export async function scrapeMetrics(url: string): Promise<MetricsSnapshot> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`metrics: GET ${url} answered ${res.status}`);
  return new MetricsSnapshot(await res.text());
}
