import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { initCa } from '../../src/init/index.js';

describe('damselfly init ca', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const temp = () => {
    const d = mkdtempSync(join(tmpdir(), 'damselfly-init-ca-'));
    dirs.push(d);
    return join(d, 'etc');
  };

  it('writes a CA certificate and a 0600 key once, and never replaces them', async () => {
    const dir = temp();
    const dry = await initCa(dir, { dryRun: true });
    assert.match(dry, /would create .*ca\.crt/);
    assert.throws(() => readdirSync(dir), /ENOENT/, 'a dry run wrote something');

    const said = await initCa(dir);
    assert.match(said, /created .*ca\.crt/);
    assert.match(said, /interception:\n\s+enable: true/);
    const cert = readFileSync(join(dir, 'ca.crt'), 'utf8');
    assert.equal(new X509Certificate(cert).ca, true);
    assert.equal(statSync(join(dir, 'ca.key')).mode & 0o777, 0o600);

    assert.match(await initCa(dir), /already configured/);
    assert.equal(readFileSync(join(dir, 'ca.crt'), 'utf8'), cert);
  });

  it('refuses a half pair rather than make a CA nobody trusts', async () => {
    const dir = temp();
    await initCa(dir);
    unlinkSync(join(dir, 'ca.crt'));
    await assert.rejects(initCa(dir), /ca\.crt is missing but its pair exists/);
  });
});
