import { createHash, type Hash } from 'node:crypto';
import { type Digest, DigestError, formatDigest, parseDigest } from '../../task/index.js';
import { DigestMismatchError } from './errors.js';

/**
 * Parses an OCI content digest. Only sha256 and sha512 are accepted (we must be able to verify what we
 * fetch), and only in canonical form (lowercase hex): the digest goes into URLs and file names as is.
 */
export function parseContentDigest(value: string): Digest {
  const digest = parseDigest(value);
  if (formatDigest(digest) !== value) {
    throw new DigestError(`invalid digest "${value}": hex digits must be lowercase`);
  }
  return digest;
}

export function isContentDigest(value: string): boolean {
  try {
    parseContentDigest(value);
    return true;
  } catch {
    return false;
  }
}

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The digest of `data` computed with the algorithm of `like` (sha256 or sha512). */
export function digestLike(like: string, data: Uint8Array): string {
  const { algorithm } = parseContentDigest(like);
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/** Hashes bytes as they stream past and checks them against the expected digest at the end. */
export class DigestVerifier {
  private readonly hash: Hash;
  private readonly algorithm: string;
  private bytes = 0;

  constructor(
    readonly expected: string,
    private readonly what: string,
  ) {
    this.algorithm = parseContentDigest(expected).algorithm;
    this.hash = createHash(this.algorithm);
  }

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }

  get length(): number {
    return this.bytes;
  }

  /** Throws DigestMismatchError unless the bytes seen hash to the expected digest. */
  verify(): void {
    const actual = `${this.algorithm}:${this.hash.digest('hex')}`;
    if (actual !== this.expected) throw new DigestMismatchError(this.expected, actual, this.what);
  }
}
