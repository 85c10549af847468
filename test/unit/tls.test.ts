import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { connect, createServer } from 'node:tls';
import { integer, oid, time } from '../../src/tls/der.js';
import { createCertificateAuthority, LeafIssuer } from '../../src/tls/index.js';

describe('DER encoding', () => {
  it('encodes integers minimally and non-negative', () => {
    assert.equal(integer(0).toString('hex'), '020100');
    assert.equal(integer(127).toString('hex'), '02017f');
    assert.equal(integer(128).toString('hex'), '02020080');
    assert.equal(integer(Buffer.from([0, 0, 1, 2])).toString('hex'), '02020102');
  });

  it('encodes object identifiers and both time forms', () => {
    assert.equal(oid('1.2.840.10045.4.3.2').toString('hex'), '06082a8648ce3d040302');
    assert.equal(oid('2.5.29.17').toString('hex'), '0603551d11');
    assert.equal(time(new Date('2049-12-31T23:59:59Z')).toString('latin1').slice(2), '491231235959Z');
    assert.equal(time(new Date('2050-01-01T00:00:00Z')).toString('latin1').slice(2), '20500101000000Z');
  });
});

describe('interception certificates', () => {
  const dir = mkdtempSync(join(tmpdir(), 'damselfly-tls-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = createCertificateAuthority('Test CA');
  const issuer = new LeafIssuer(ca);

  it('makes a CA and leaves that verify, for names and IPs', () => {
    const caCert = new X509Certificate(ca.cert);
    assert.equal(caCert.ca, true);
    assert.match(caCert.subject, /CN=Test CA/);
    for (const host of ['registry.example.com', '10.1.2.3', '::1']) {
      const leaf = new X509Certificate(issuer.issue(host));
      assert.equal(leaf.ca, false);
      assert.equal(leaf.verify(caCert.publicKey), true, host);
      assert.equal(leaf.checkIssued(caCert), true, host);
      assert.ok(isIP(host) ? leaf.checkIP(host) : leaf.checkHost(host), host);
    }
  });

  it('passes openssl verify with the CA as the only trust anchor', () => {
    writeFileSync(join(dir, 'ca.pem'), ca.cert);
    writeFileSync(join(dir, 'leaf.pem'), issuer.issue('mirror.local'));
    const out = execFileSync('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')]);
    assert.match(out.toString(), /leaf\.pem: OK/);
  });

  it('completes a TLS handshake that checks the chain and the host name', async () => {
    const server = createServer({ cert: issuer.issue('mirror.local'), key: issuer.leafKeyPem }, (s) =>
      s.end('ok'),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect({ port, host: '127.0.0.1', servername: 'mirror.local', ca: ca.cert }, () => {
          socket.setEncoding('utf8').once('data', resolve);
        });
        socket.once('error', reject);
      });
      assert.equal(reply, 'ok');
      await assert.rejects(
        new Promise<void>((resolve, reject) => {
          const socket = connect({ port, host: '127.0.0.1', servername: 'other.local', ca: ca.cert }, () =>
            resolve(),
          );
          socket.once('error', reject);
        }),
        /altnames|Hostname/i,
      );
    } finally {
      server.close();
    }
  });

  it('refuses a certificate that is not a CA', () => {
    const leafOnly = { cert: issuer.issue('x.local'), key: issuer.leafKeyPem };
    assert.throws(() => new LeafIssuer(leafOnly), /not a CA/);
  });
});
