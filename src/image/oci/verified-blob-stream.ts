import { Readable } from 'node:stream';
import { DigestVerifier } from './digest.js';
import { RegistryError } from './errors.js';
import { discardBody } from './response-body.js';
import { backoffDelay, isRetryableNetworkError, type RetryPolicy, waitBeforeRetry } from './retry-policy.js';

/** A response body positioned at `offset` of the blob (the opener decides how: Range, or skipping). */
export type OpenBlobAt = (offset: number) => Promise<AsyncIterable<Buffer> & { destroy(): void }>;

const STREAM_HIGH_WATER_MARK = 256 * 1024;

/**
 * Streams a blob, hashing as it goes, and fails instead of ending when the bytes do not match the
 * digest — so a consumer never sees a successful end of wrong content. A connection that breaks
 * mid-body is resumed from the byte where it stopped (up to `policy.retries` times).
 */
export function verifiedBlobStream(
  open: OpenBlobAt,
  digest: string,
  what: string,
  policy: RetryPolicy,
  signal?: AbortSignal,
): Readable {
  const verifier = new DigestVerifier(digest, what);
  return Readable.from(verifiedChunks(open, verifier, policy, signal), {
    objectMode: false,
    highWaterMark: STREAM_HIGH_WATER_MARK,
  });
}

async function* verifiedChunks(
  open: OpenBlobAt,
  verifier: DigestVerifier,
  policy: RetryPolicy,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  for (let resumes = 0; ; ) {
    const body = await open(verifier.length);
    try {
      for await (const chunk of body) {
        verifier.update(chunk);
        yield chunk;
      }
      break;
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      if (resumes >= policy.retries || !isRetryableNetworkError(err)) throw bodyError(err, verifier);
      resumes++;
      await waitBeforeRetry(backoffDelay(policy, resumes), signal);
    } finally {
      discardBody(body);
    }
  }
  verifier.verify();
}

function bodyError(err: unknown, verifier: DigestVerifier): unknown {
  if (!isRetryableNetworkError(err)) return err;
  return new RegistryError(
    `connection lost while reading blob ${verifier.expected} after ${verifier.length} bytes: ${(err as Error).message}`,
    'NETWORK',
    0,
  );
}

/** Drops the first `count` bytes of a body (a registry that answered a resume with the whole blob). */
async function* skipBytesGenerator(body: AsyncIterable<Buffer>, count: number): AsyncGenerator<Buffer> {
  let left = count;
  for await (const chunk of body) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    yield left > 0 ? chunk.subarray(left) : chunk;
    left = 0;
  }
}

export function skipBytes(body: Readable, count: number): AsyncIterable<Buffer> & { destroy(): void } {
  return Object.assign(skipBytesGenerator(body, count), { destroy: () => discardBody(body) });
}
