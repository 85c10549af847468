import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  apiSocketPath,
  ConfigError,
  daemonConfigSchema,
  defaultApiSocketPath,
  loadConfig,
  schedulerConfigSchema,
} from '../../src/config/index.js';
import { parseDuration, parseHostPort, parseSize } from '../../src/config/units.js';

const dir = mkdtempSync(join(tmpdir(), 'damselfly-config-'));
function yamlFile(text: string): string {
  const path = join(dir, `${Math.random()}.yaml`);
  writeFileSync(path, text);
  return path;
}

describe('config loading', () => {
  it('fills defaults, then the file, then flags win', () => {
    const file = yamlFile('upload:\n  port: 5000\n  rateLimit: 10MiB\nstorage:\n  taskTtl: 2h\n');
    const c = loadConfig(daemonConfigSchema, { file, flags: { upload: { port: 6000 } } });
    assert.equal(c.upload.port, 6000);
    assert.equal(c.upload.rateLimit, 10 * 1024 * 1024);
    assert.equal(c.storage.taskTtl, 2 * 3600_000);
    assert.equal(c.download.concurrentPieceCount, 8);
    assert.equal(loadConfig(schedulerConfigSchema, {}).scheduling.retryInterval, 500);
  });

  it('ignores flags that were not given', () => {
    const file = yamlFile('metrics:\n  port: 9100\n');
    assert.equal(
      loadConfig(daemonConfigSchema, { file, flags: { metrics: { port: undefined } } }).metrics.port,
      9100,
    );
  });

  it('names the bad key', () => {
    assert.throws(
      () => loadConfig(daemonConfigSchema, { file: yamlFile('storage:\n  capacty: 1\n') }),
      (e: Error) => e instanceof ConfigError && /storage\.capacty/.test(e.message),
    );
    assert.throws(
      () => loadConfig(daemonConfigSchema, { flags: { download: { pieceTimeout: 'soon' } } }),
      /download\.pieceTimeout.*invalid duration/,
    );
    assert.throws(() => loadConfig(schedulerConfigSchema, { flags: { listen: 'nope' } }), /"listen"/);
  });

  it('reports unreadable and malformed files', () => {
    assert.throws(() => loadConfig(daemonConfigSchema, { file: join(dir, 'missing.yaml') }), /cannot read/);
    assert.throws(() => loadConfig(daemonConfigSchema, { file: yamlFile('a: [\n') }), /not valid YAML/);
    assert.throws(() => loadConfig(daemonConfigSchema, { file: yamlFile('- 1\n') }), /mapping/);
  });
});

describe('default paths', () => {
  it("get's default socket is the one a daemon with the default config listens on", () => {
    assert.equal(defaultApiSocketPath(), apiSocketPath(daemonConfigSchema.parse({})));
  });
});

describe('units', () => {
  it('parses durations, sizes and addresses', () => {
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration(20), 20);
    assert.equal(parseSize('4MiB'), 4 * 1024 * 1024);
    assert.equal(parseSize('1GB'), 1e9);
    assert.throws(() => parseSize('4 parsecs'));
    assert.deepEqual(parseHostPort('[::1]:8002'), { host: '::1', port: 8002 });
    assert.deepEqual(parseHostPort(':8002'), { host: '0.0.0.0', port: 8002 });
    assert.throws(() => parseHostPort('host:99999'));
  });
});
