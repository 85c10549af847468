/**
 * Default locations, free of the schemas (zod and YAML take ~150 ms to load): `get` needs only the
 * default socket path, and starts once per download.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const defaultDataDir = (): string =>
  process.getuid?.() === 0
    ? '/var/lib/damselfly'
    : join(tmpdir(), `damselfly-${process.getuid?.() ?? 'user'}`);

/** The daemon's local API socket with the default config (`api.socket` unset, default data dir). */
export const defaultApiSocketPath = (): string => join(defaultDataDir(), 'damselfly.sock');
