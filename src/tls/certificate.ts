import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto';
import { isIP } from 'node:net';
import {
  bitString,
  boolean,
  explicit,
  implicit,
  integer,
  octetString,
  oid,
  sequence,
  set,
  time,
  utf8String,
} from './der.js';

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const COMMON_NAME = '2.5.4.3';
const ORGANIZATION = '2.5.4.10';
const SUBJECT_KEY_ID = '2.5.29.14';
const KEY_USAGE = '2.5.29.15';
const SUBJECT_ALT_NAME = '2.5.29.17';
const BASIC_CONSTRAINTS = '2.5.29.19';
const AUTHORITY_KEY_ID = '2.5.29.35';
const EXT_KEY_USAGE = '2.5.29.37';
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

const DAY = 86_400_000;

/** A certificate with its private key, both PEM. */
export interface CertifiedKey {
  cert: string;
  key: string;
}

function name(commonName: string): Buffer {
  return sequence(
    set(sequence(oid(ORGANIZATION), utf8String('Damselfly'))),
    set(sequence(oid(COMMON_NAME), utf8String(commonName))),
  );
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return sequence(oid(id), ...(critical ? [boolean(true)] : []), octetString(value));
}

function keyId(spki: Buffer): Buffer {
  return createHash('sha1').update(spki).digest();
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  const [head, tail = ''] = ip.split('::') as [string, string?];
  const groups = (s: string) => (s ? s.split(':') : []);
  const h = groups(head);
  const t = groups(tail);
  const all = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return Buffer.concat(all.map((g) => Buffer.from(g.padStart(4, '0'), 'hex')));
}

function subjectAltName(host: string): Buffer {
  const entry = isIP(host) ? implicit(7, ipBytes(host)) : implicit(2, Buffer.from(host, 'ascii'));
  return sequence(entry);
}

interface Signing {
  subject: string;
  subjectKey: KeyObject;
  issuer: string;
  issuerKey: KeyObject;
  issuerPublic: KeyObject;
  days: number;
  extensions: Buffer[];
}

function certificate(s: Signing): string {
  const spki = s.subjectKey.export({ type: 'spki', format: 'der' });
  const issuerSpki = s.issuerPublic.export({ type: 'spki', format: 'der' });
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const now = Date.now();
  const algorithm = sequence(oid(ECDSA_WITH_SHA256));
  const tbs = sequence(
    explicit(0, integer(2)),
    integer(serial),
    algorithm,
    name(s.issuer),
    sequence(time(new Date(now - DAY)), time(new Date(now + s.days * DAY))),
    name(s.subject),
    spki,
    explicit(
      3,
      sequence(
        ...s.extensions,
        extension(SUBJECT_KEY_ID, false, octetString(keyId(spki))),
        extension(AUTHORITY_KEY_ID, false, sequence(implicit(0, keyId(issuerSpki)))),
      ),
    ),
  );
  const signature = sign('sha256', tbs, s.issuerKey);
  const der = sequence(tbs, algorithm, bitString(signature));
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

function ecKeyPair() {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

/** A new certificate authority (EC P-256, 10 years) for TLS interception. */
export function createCertificateAuthority(commonName = 'Damselfly proxy CA'): CertifiedKey {
  const { privateKey, publicKey } = ecKeyPair();
  const cert = certificate({
    subject: commonName,
    subjectKey: publicKey,
    issuer: commonName,
    issuerKey: privateKey,
    issuerPublic: publicKey,
    days: 3650,
    extensions: [
      extension(BASIC_CONSTRAINTS, true, sequence(boolean(true), integer(0))),
      // keyCertSign (bit 5) and cRLSign (bit 6): 0b0000_0110, one unused bit.
      extension(KEY_USAGE, true, bitString(Buffer.from([0x06]), 1)),
    ],
  });
  return { cert, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/**
 * Mints server certificates for host names (or IPs) under one CA. Leaves share one key pair made at
 * construction (minting is then one signature) and live 30 days.
 */
export class LeafIssuer {
  private readonly caKey: KeyObject;
  private readonly caPublic: KeyObject;
  private readonly caName: string;
  private readonly leafKeys = ecKeyPair();
  readonly leafKeyPem: string;

  constructor(ca: CertifiedKey) {
    const caCert = new X509Certificate(ca.cert);
    if (!caCert.ca)
      throw new Error('the interception certificate is not a CA (basicConstraints cA is false)');
    this.caPublic = caCert.publicKey;
    this.caName = /CN=([^\n]+)/.exec(caCert.subject)?.[1] ?? 'Damselfly proxy CA';
    this.caKey = createPrivateKey(ca.key);
    this.leafKeyPem = this.leafKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  }

  /** A certificate for `host`, signed by the CA. */
  issue(host: string): string {
    return certificate({
      subject: host,
      subjectKey: this.leafKeys.publicKey,
      issuer: this.caName,
      issuerKey: this.caKey,
      issuerPublic: this.caPublic,
      days: 30,
      extensions: [
        extension(BASIC_CONSTRAINTS, true, sequence()),
        // digitalSignature (bit 0): 0b1000_0000, seven unused bits.
        extension(KEY_USAGE, true, bitString(Buffer.from([0x80]), 7)),
        extension(EXT_KEY_USAGE, false, sequence(oid(SERVER_AUTH))),
        extension(SUBJECT_ALT_NAME, false, subjectAltName(host)),
      ],
    });
  }
}
