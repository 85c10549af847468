import { join } from 'node:path';
import { createCertificateAuthority } from '../tls/index.js';
import { readIfExists, writeFileAtomic } from './apply.js';
import { InitError } from './errors.js';

export const DEFAULT_CA_DIR = '/etc/damselfly';

/**
 * `damselfly init ca`: a CA for the proxy's TLS interception, as `<dir>/ca.crt` (0644) and `<dir>/ca.key`
 * (0600). An existing CA is never replaced: clients already trust it. Returns what to tell the user.
 */
export async function initCa(dir: string, opts: { dryRun?: boolean } = {}): Promise<string> {
  const certPath = join(dir, 'ca.crt');
  const keyPath = join(dir, 'ca.key');
  const [cert, key] = await Promise.all([readIfExists(certPath), readIfExists(keyPath)]);
  if ((cert === undefined) !== (key === undefined)) {
    const missing = cert === undefined ? certPath : keyPath;
    throw new InitError(`${missing} is missing but its pair exists: move the other away to make a new CA`);
  }
  const lines: string[] = [];
  if (cert !== undefined)
    lines.push(`unchanged ${certPath}`, `unchanged ${keyPath}`, 'already configured: nothing written');
  else if (opts.dryRun) lines.push(`would create ${certPath}`, `would create ${keyPath} (mode 0600)`);
  else {
    const ca = createCertificateAuthority();
    // The key first: a crash between the two leaves no certificate without its key.
    await writeFileAtomic(keyPath, ca.key, 0o600);
    await writeFileAtomic(certPath, ca.cert, 0o644);
    lines.push(`created ${certPath}`, `created ${keyPath} (mode 0600)`);
  }
  lines.push(
    'note: enable interception in the daemon config (docs/registry-mirror.md):',
    '  proxy:',
    '    interception:',
    '      enable: true',
    `      caCert: ${certPath}`,
    `      caKey: ${keyPath}`,
    `note: clients must trust ${certPath}; on Debian/Ubuntu:`,
    `  cp ${certPath} /usr/local/share/ca-certificates/damselfly-proxy.crt && update-ca-certificates`,
    `  (Node.js clients: NODE_EXTRA_CA_CERTS=${certPath})`,
    opts.dryRun ? 'dry run, nothing written; after a real run: restart the daemon' : 'restart the daemon',
  );
  return `${lines.join('\n')}\n`;
}
