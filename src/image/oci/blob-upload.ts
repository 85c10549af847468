import type { Readable } from 'node:stream';
import { DigestVerifier } from './digest.js';
import { RegistryError } from './errors.js';
import { type ImageReference, repositoryPath } from './reference.js';
import type { RegistryResponse, RegistryTransport } from './registry-transport.js';
import { drainBody } from './response-body.js';
import { backoffDelay, isRetryableStatus, type RetryPolicy, waitBeforeRetry } from './retry-policy.js';

export const DEFAULT_UPLOAD_CHUNK = 16 * 1024 * 1024;
/** Cancelling a failed upload is best effort: never hold the caller up longer than this. */
const CANCEL_TIMEOUT_MS = 5_000;

export interface BlobUpload {
  ref: ImageReference;
  digest: string;
  size: number;
  open: () => Readable;
  signal?: AbortSignal;
}

export interface BlobUploaderOptions {
  chunkSize: number;
  policy: RetryPolicy;
  /** Throws the right error for an unexpected answer (the client's shared error mapping). */
  fail: (res: RegistryResponse, subject: string, registry: string) => Promise<never>;
}

function asBuffer(chunk: unknown): Buffer | undefined {
  if (chunk === undefined || chunk === null) return undefined;
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array || typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError('blob sources must stream bytes');
}

/** Reads a stream in pieces of at most `max` bytes (the last may be shorter). */
class PieceReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private pending: Buffer | undefined;

  constructor(stream: Readable) {
    this.chunks = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  async next(max: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let length = 0;
    while (length < max) {
      const chunk = this.pending ?? asBuffer((await this.chunks.next()).value);
      this.pending = undefined;
      if (!chunk) break;
      const take = Math.min(chunk.length, max - length);
      parts.push(chunk.subarray(0, take));
      length += take;
      if (take < chunk.length) this.pending = chunk.subarray(take);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
  }

  async close(): Promise<void> {
    await this.chunks.return?.();
  }
}

/**
 * The distribution upload protocol: POST opens a session; a blob that fits in one chunk goes in the
 * closing PUT, a bigger one in PATCHes of `chunkSize` bytes with Content-Range, each to the Location
 * the previous answer gave (it carries the session state), then an empty PUT `?digest=`.
 * A PATCH is not safe to repeat, so a failure restarts the whole upload (fresh session, `open()` again).
 */
export class BlobUploader {
  constructor(
    private readonly transport: RegistryTransport,
    private readonly options: BlobUploaderOptions,
  ) {}

  async upload(job: BlobUpload): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.uploadOnce(job);
      } catch (err) {
        const retryable = isRetryableUploadError(err) && attempt <= this.options.policy.retries;
        if (job.signal?.aborted || !retryable) throw err;
        await waitBeforeRetry(backoffDelay(this.options.policy, attempt), job.signal);
      }
    }
  }

  private async uploadOnce(job: BlobUpload): Promise<void> {
    let location = await this.startSession(job);
    const reader = new PieceReader(job.open());
    const verifier = new DigestVerifier(job.digest, `upload of ${job.digest}`);
    try {
      if (job.size <= this.options.chunkSize) {
        const bytes = await reader.next(job.size + 1);
        checkSourceLength(job, bytes.length, false);
        verifier.update(bytes);
        verifier.verify();
        return await this.finish(job, location, bytes);
      }
      for (let offset = 0; offset < job.size; ) {
        const piece = await reader.next(Math.min(this.options.chunkSize, job.size - offset));
        if (piece.length === 0) break;
        verifier.update(piece);
        location = await this.patch(job, location, offset, piece);
        offset += piece.length;
      }
      checkSourceLength(job, verifier.length, (await reader.next(1)).length > 0);
      verifier.verify();
      await this.finish(job, location, undefined);
    } catch (err) {
      await this.cancel(job, location);
      throw err;
    } finally {
      await reader.close();
    }
  }

  private async startSession(job: BlobUpload): Promise<string> {
    const res = await this.transport.send({
      registry: job.ref.registry,
      method: 'POST',
      target: `${repositoryPath(job.ref.repository)}/blobs/uploads/`,
      scopes: pushScopes(job.ref),
      headers: { 'content-length': '0' },
      ...signalOf(job),
    });
    if (res.statusCode !== 202) await this.options.fail(res, uploadSubject(job), job.ref.registry);
    drainBody(res.body);
    return nextLocation(res, uploadSubject(job));
  }

  private async patch(job: BlobUpload, location: string, offset: number, piece: Buffer): Promise<string> {
    const end = offset + piece.length - 1;
    const res = await this.transport.send({
      registry: job.ref.registry,
      method: 'PATCH',
      target: location,
      scopes: pushScopes(job.ref),
      headers: {
        'content-type': 'application/octet-stream',
        'content-range': `${offset}-${end}`,
        'content-length': String(piece.length),
      },
      body: piece,
      retry: false,
      ...signalOf(job),
    });
    if (res.statusCode !== 202) await this.options.fail(res, uploadSubject(job), job.ref.registry);
    drainBody(res.body);
    checkUploadedRange(res, end, uploadSubject(job));
    return nextLocation(res, uploadSubject(job));
  }

  private async finish(job: BlobUpload, location: string, body: Buffer | undefined): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', job.digest);
    const res = await this.transport.send({
      registry: job.ref.registry,
      method: 'PUT',
      target: url.href,
      scopes: pushScopes(job.ref),
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(body?.length ?? 0),
      },
      ...(body ? { body } : {}),
      retry: false,
      ...signalOf(job),
    });
    if (res.statusCode !== 201) await this.options.fail(res, uploadSubject(job), job.ref.registry);
    drainBody(res.body);
  }

  /** Best effort: free the registry's half-written upload session at `location`. */
  async cancel(job: Pick<BlobUpload, 'ref'>, location: string): Promise<void> {
    try {
      const res = await this.transport.send({
        registry: job.ref.registry,
        method: 'DELETE',
        target: location,
        scopes: pushScopes(job.ref),
        retry: false,
        signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS),
      });
      drainBody(res.body);
    } catch {
      // The session expires on its own.
    }
  }
}

export function pushScopes(ref: ImageReference) {
  return [{ repository: ref.repository, actions: ['pull', 'push'] as const }];
}

function signalOf(job: BlobUpload): { signal?: AbortSignal } {
  return job.signal ? { signal: job.signal } : {};
}

function uploadSubject(job: BlobUpload): string {
  return `upload of ${job.digest} to ${job.ref.registry}/${job.ref.repository}`;
}

/** The source must give exactly `size` bytes (and they must hash to `digest`): never upload a wrong blob. */
function checkSourceLength(job: BlobUpload, length: number, hasMore: boolean): void {
  if (length === job.size && !hasMore) return;
  const found = length > job.size || hasMore ? 'more than' : `${length} bytes instead of`;
  throw new RegistryError(
    `${uploadSubject(job)}: the source has ${found} ${job.size} bytes`,
    'SIZE_MISMATCH',
    0,
  );
}

function nextLocation(res: RegistryResponse, subject: string): string {
  const location = res.headers.location;
  if (typeof location !== 'string' || location === '') {
    throw new RegistryError(
      `${subject}: registry gave no upload Location`,
      'BLOB_UPLOAD_INVALID',
      res.statusCode,
    );
  }
  try {
    return new URL(location, res.url).href;
  } catch {
    throw new RegistryError(
      `${subject}: registry gave an invalid upload Location`,
      'BLOB_UPLOAD_INVALID',
      res.statusCode,
    );
  }
}

/** A PATCH answer's `Range: 0-<end>` says what the registry holds; anything else means lost bytes. */
function checkUploadedRange(res: RegistryResponse, end: number, subject: string): void {
  const range = res.headers.range;
  if (typeof range !== 'string') return;
  const m = /^(?:bytes=)?0-(\d+)$/.exec(range.trim());
  if (m && Number(m[1]) !== end) {
    throw new RegistryError(
      `${subject}: registry holds bytes 0-${m[1]}, expected 0-${end}`,
      'BLOB_UPLOAD_INVALID',
      202,
    );
  }
}

function isRetryableUploadError(err: unknown): boolean {
  return (
    err instanceof RegistryError &&
    (err.status === 0 ? err.code === 'NETWORK' : isRetryableStatus(err.status))
  );
}
