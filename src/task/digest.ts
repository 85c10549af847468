import { createHash } from 'node:crypto';

export type DigestAlgorithm = 'sha256' | 'sha512';
const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

export class DigestError extends Error {
  readonly code = 'EDIGEST';
}

export interface Digest {
  algorithm: DigestAlgorithm;
  hex: string;
}

/** Parses "sha256:<64 hex>" or "sha512:<128 hex>". */
export function parseDigest(value: string): Digest {
  const m = /^(sha256|sha512):([0-9a-fA-F]+)$/.exec(value.trim());
  if (!m) throw new DigestError(`invalid digest "${value}": expected sha256:<hex> or sha512:<hex>`);
  const algorithm = m[1] as DigestAlgorithm;
  const hex = m[2]!.toLowerCase();
  if (hex.length !== HEX_LENGTH[algorithm]) {
    throw new DigestError(
      `invalid digest "${value}": ${algorithm} needs ${HEX_LENGTH[algorithm]} hex digits`,
    );
  }
  return { algorithm, hex };
}

export function formatDigest(d: Digest): string {
  return `${d.algorithm}:${d.hex}`;
}

/** The digest of one piece, as recorded by the peer that fetched it from the source. */
export function pieceDigest(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
