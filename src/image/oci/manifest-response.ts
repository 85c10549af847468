import { digestLike, sha256Digest } from './digest.js';
import { DigestMismatchError, ManifestInvalidError } from './errors.js';
import { MAX_MANIFEST_BYTES } from './manifest.js';
import type { ImageReference } from './reference.js';
import type { RegistryResponse } from './registry-transport.js';
import { discardBody } from './response-body.js';
import { contentLength, headerValue } from './response-headers.js';

/** A manifest body, refused as soon as it is known to exceed MAX_MANIFEST_BYTES. */
export async function readManifestBody(res: RegistryResponse, subject: string): Promise<Buffer> {
  const declared = contentLength(res.headers);
  const tooLarge = () =>
    new ManifestInvalidError(`manifest ${subject} is larger than ${MAX_MANIFEST_BYTES} bytes`);
  if (declared !== undefined && declared > MAX_MANIFEST_BYTES) {
    discardBody(res.body);
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MAX_MANIFEST_BYTES) {
      discardBody(res.body);
      throw tooLarge();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/**
 * The digest of fetched manifest bytes. Fetched by digest: they must hash to it. Fetched by tag: we
 * compute it ourselves, and a registry claiming a different Docker-Content-Digest is not believed.
 */
export function verifiedManifestDigest(
  ref: ImageReference,
  bytes: Buffer,
  res: RegistryResponse,
  subject: string,
) {
  const what = `manifest ${subject}`;
  if (ref.digest) {
    const actual = digestLike(ref.digest, bytes);
    if (actual !== ref.digest) throw new DigestMismatchError(ref.digest, actual, what);
    return ref.digest;
  }
  const claimed = headerValue(res.headers['docker-content-digest']);
  if (claimed) {
    let actual: string | undefined;
    try {
      actual = digestLike(claimed, bytes);
    } catch {
      actual = undefined; // an unparseable header is not evidence of anything
    }
    if (actual !== undefined && actual !== claimed) throw new DigestMismatchError(claimed, actual, what);
  }
  return sha256Digest(bytes);
}
