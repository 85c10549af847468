import { z } from 'zod';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** "500ms", "30s", "5m", "24h", "7d" or a number of milliseconds → milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value);
  if (!m) throw new Error(`invalid duration "${value}" (use e.g. 500ms, 30s, 5m, 24h)`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}

/** "4MiB", "100MB", "1g" or a number of bytes → bytes. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new Error(`invalid size "${value}" (use e.g. 4MiB, 100MB, 1GiB)`);
  return Math.round(Number(m[1]) * unit);
}

function unit(parse: (v: string | number) => number) {
  return z.union([z.number().nonnegative(), z.string()]).transform((v, ctx) => {
    try {
      return parse(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });
}

export const duration = () => unit(parseDuration);
export const size = () => unit(parseSize);

/** "host:port" → { host, port }. IPv6 hosts in brackets. */
export function parseHostPort(value: string, defaultHost = '0.0.0.0'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value.trim());
  if (!m) throw new Error(`invalid address "${value}" (expected host:port)`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`invalid port in "${value}"`);
  return { host: m[1] ?? (m[2] || defaultHost), port };
}

export const hostPort = () =>
  z.string().refine(
    (v) => {
      try {
        parseHostPort(v);
        return true;
      } catch {
        return false;
      }
    },
    { message: 'expected host:port' },
  );
