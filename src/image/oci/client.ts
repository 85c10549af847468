import type { Readable } from 'node:stream';
import type { Logger } from '../../observability/index.js';
import { readExactly, ShortBodyError } from '../../source/index.js';
import type { AccessScope } from './auth.js';
import { BlobUploader, DEFAULT_UPLOAD_CHUNK, pushScopes } from './blob-upload.js';
import type { CredentialStore } from './credentials.js';
import { digestLike, parseContentDigest, sha256Digest } from './digest.js';
import { DigestMismatchError, ManifestInvalidError, RegistryError } from './errors.js';
import { pickIndexEntry } from './index-entry.js';
import { type ImageIndex, type ImageManifest, MAX_MANIFEST_BYTES, parseManifest } from './manifest.js';
import { readManifestBody, verifiedManifestDigest } from './manifest-response.js';
import { type ImageIndexMediaType, type ImageManifestMediaType, MANIFEST_ACCEPT } from './media-types.js';
import { hostPlatform, type Platform, parsePlatform } from './platform.js';
import {
  checkTagOrDigest,
  formatReference,
  type ImageReference,
  manifestReference,
  repositoryPath,
  withDigest,
} from './reference.js';
import { registryErrorFrom } from './registry-error-response.js';
import { type RegistryResponse, RegistryTransport } from './registry-transport.js';
import { discardBody, drainBody } from './response-body.js';
import { contentLength, contentRange, headerValue } from './response-headers.js';
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from './retry-policy.js';
import { skipBytes, verifiedBlobStream } from './verified-blob-stream.js';

export interface RegistryClientOptions {
  /**
   * Speak plain http instead of https. Default: plain http for loopback registries (`localhost`,
   * `127.x.x.x`, `[::1]`), https for everything else. There is never a silent fallback between the two.
   */
  plainHttp?: boolean;
  credentials?: CredentialStore;
  /** Retries after the first attempt for 5xx, 429 and connection failures (default 4). */
  retries?: number;
  userAgent?: string;
  /** Bytes per PATCH of a chunked upload (default 16 MiB). */
  uploadChunkSize?: number;
  /** Where retries are reported (never with credentials or query strings). */
  logger?: Logger;
  /** Pull through a Damselfly daemon's registry mirror at this origin (see RegistryTransportOptions). */
  mirror?: string;
}

interface FetchedManifestBase {
  digest: string;
  bytes: Buffer;
}

export type FetchedImageManifest = FetchedManifestBase & {
  kind: 'manifest';
  mediaType: ImageManifestMediaType;
  json: ImageManifest;
};
export type FetchedImageIndex = FetchedManifestBase & {
  kind: 'index';
  mediaType: ImageIndexMediaType;
  json: ImageIndex;
};
/** A manifest or index as fetched: the exact bytes (digest-verified) and their validated JSON. */
export type FetchedManifest = FetchedImageManifest | FetchedImageIndex;

export interface ResolvedImage {
  manifest: ImageManifest;
  manifestDigest: string;
  manifestMediaType: ImageManifestMediaType;
  manifestBytes: Buffer;
  config: Buffer;
  configDigest: string;
  /** The index or manifest list the manifest was chosen from, when the reference named one. */
  index?: FetchedManifest;
  /** The index entry's platform, when chosen from an index. */
  platform?: Platform;
}

export interface ManifestHead {
  digest: string;
  mediaType: string;
  size: number;
}

/** readBlob is for configs and other small blobs: bigger ones must be streamed. */
export const MAX_IN_MEMORY_BLOB = 128 * 1024 * 1024;

function pullScopes(ref: ImageReference): AccessScope[] {
  return [{ repository: ref.repository, actions: ['pull'] }];
}

function signalOf(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

function blobSubject(ref: ImageReference, digest: string): string {
  return `${ref.registry}/${ref.repository}@${digest}`;
}

/**
 * A client for the OCI distribution API (and Docker Registry v2): manifests, blobs (streamed and
 * verified, ranged, pushed in chunks, mounted across repositories), with authentication and retries.
 */
export class RegistryClient {
  private readonly transport: RegistryTransport;
  private readonly policy: RetryPolicy;
  private readonly uploader: BlobUploader;

  constructor(options: RegistryClientOptions = {}) {
    this.policy = {
      ...DEFAULT_RETRY_POLICY,
      ...(options.retries !== undefined ? { retries: options.retries } : {}),
    };
    this.transport = new RegistryTransport({
      policy: this.policy,
      userAgent: options.userAgent ?? 'damselfly',
      ...(options.plainHttp !== undefined ? { plainHttp: options.plainHttp } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.mirror ? { mirror: options.mirror } : {}),
    });
    this.uploader = new BlobUploader(this.transport, {
      chunkSize: options.uploadChunkSize ?? DEFAULT_UPLOAD_CHUNK,
      policy: this.policy,
      fail: (res, subject, registry) => this.fail(res, subject, registry),
    });
  }

  /** Fetches a manifest or index by tag or digest; content fetched by digest is verified against it. */
  async getManifest(ref: ImageReference, signal?: AbortSignal): Promise<FetchedManifest> {
    const subject = formatReference(ref);
    const res = await this.transport.send({
      registry: ref.registry,
      method: 'GET',
      target: `${repositoryPath(ref.repository)}/manifests/${manifestReference(ref)}`,
      scopes: pullScopes(ref),
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      ...signalOf(signal),
    });
    if (res.statusCode !== 200) await this.fail(res, subject, ref.registry);
    const bytes = await readManifestBody(res, subject);
    const digest = verifiedManifestDigest(ref, bytes, res, subject);
    const parsed = parseManifest(bytes, headerValue(res.headers['content-type']), `manifest ${subject}`);
    return { ...parsed, digest, bytes } as FetchedManifest;
  }

  /** Digest, media type and size of a manifest without its body; null if the registry has none. */
  async headManifest(ref: ImageReference, signal?: AbortSignal): Promise<ManifestHead | null> {
    const subject = formatReference(ref);
    const res = await this.transport.send({
      registry: ref.registry,
      method: 'HEAD',
      target: `${repositoryPath(ref.repository)}/manifests/${manifestReference(ref)}`,
      scopes: pullScopes(ref),
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      ...signalOf(signal),
    });
    drainBody(res.body);
    if (res.statusCode === 404) return null;
    if (res.statusCode !== 200) await this.fail(res, subject, ref.registry);
    const digest = headerValue(res.headers['docker-content-digest']) ?? ref.digest;
    if (!digest) {
      throw new RegistryError(`registry sent no Docker-Content-Digest: ${subject}`, 'DIGEST_MISSING', 200);
    }
    parseContentDigest(digest);
    if (ref.digest && digest !== ref.digest) {
      throw new DigestMismatchError(ref.digest, digest, `manifest ${subject}`);
    }
    const mediaType = headerValue(res.headers['content-type'])?.split(';')[0]?.trim() ?? '';
    return { digest, mediaType, size: contentLength(res.headers) ?? -1 };
  }

  /**
   * The image manifest and config for one platform (`os/arch[/variant]`, default this host's): an index
   * or manifest list is followed to its best entry for the platform.
   */
  async resolveImage(ref: ImageReference, platform?: string, signal?: AbortSignal): Promise<ResolvedImage> {
    const top = await this.getManifest(ref, signal);
    const { image, chosen } =
      top.kind === 'index'
        ? await this.followIndex(ref, top, platform, signal)
        : { image: top, chosen: undefined };
    const configDescriptor = image.json.config;
    const config = await this.readBlob(ref, configDescriptor.digest, signal);
    if (config.length !== configDescriptor.size) {
      throw new ManifestInvalidError(
        `config ${configDescriptor.digest} of ${formatReference(ref)} has ${config.length} bytes, manifest says ${configDescriptor.size}`,
      );
    }
    return {
      manifest: image.json,
      manifestDigest: image.digest,
      manifestMediaType: image.mediaType,
      manifestBytes: image.bytes,
      config,
      configDigest: configDescriptor.digest,
      ...(top.kind === 'index' ? { index: top } : {}),
      ...(chosen ? { platform: chosen } : {}),
    };
  }

  private async followIndex(
    ref: ImageReference,
    index: FetchedImageIndex,
    platform: string | undefined,
    signal?: AbortSignal,
  ): Promise<{ image: FetchedImageManifest; chosen: Platform | undefined }> {
    const wanted = platform ? parsePlatform(platform) : hostPlatform();
    const entry = pickIndexEntry(index.json, wanted, formatReference(ref));
    const image = await this.getManifest(withDigest(ref, entry.digest), signal);
    if (image.kind !== 'manifest') {
      throw new ManifestInvalidError(
        `index entry ${entry.digest} of ${formatReference(ref)} is itself an index`,
      );
    }
    return { image, chosen: entry.platform };
  }

  /**
   * Streams a blob. The stream errors (DigestMismatchError) instead of ending when the bytes do not
   * hash to `digest`; a connection lost mid-body is resumed with a Range request.
   */
  async blobStream(ref: ImageReference, digest: string, signal?: AbortSignal): Promise<Readable> {
    parseContentDigest(digest);
    const subject = blobSubject(ref, digest);
    // Open the first response here so that "blob unknown" and auth errors reject this call.
    const first = await this.openBlobAt(ref, digest, 0, signal);
    let opened = false;
    const open = async (offset: number) => {
      if (!opened && offset === 0) {
        opened = true;
        return first;
      }
      return this.openBlobAt(ref, digest, offset, signal);
    };
    return verifiedBlobStream(open, digest, `blob ${subject}`, this.policy, signal);
  }

  /** A small blob (a config), verified, in memory. */
  async readBlob(ref: ImageReference, digest: string, signal?: AbortSignal): Promise<Buffer> {
    const stream = await this.blobStream(ref, digest, signal);
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > MAX_IN_MEMORY_BLOB) {
        discardBody(stream);
        throw new RegistryError(
          `blob ${blobSubject(ref, digest)} is larger than ${MAX_IN_MEMORY_BLOB} bytes; stream it instead`,
          'BLOB_TOO_LARGE',
          200,
        );
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks, total);
  }

  /**
   * Bytes [offset, offset + length) of a blob with one Range request. They cannot be checked against
   * the blob digest: callers verify what they read (chunk digests).
   */
  async readBlobRange(
    ref: ImageReference,
    digest: string,
    offset: number,
    length: number,
    signal?: AbortSignal,
  ): Promise<Buffer> {
    parseContentDigest(digest);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`invalid blob range offset=${offset} length=${length}`);
    }
    if (length === 0) return Buffer.alloc(0);
    const subject = blobSubject(ref, digest);
    const end = offset + length - 1;
    const res = await this.getBlob(ref, digest, { range: `bytes=${offset}-${end}` }, signal);
    if (res.statusCode !== 206) {
      if (res.statusCode === 200) {
        discardBody(res.body);
        throw new RegistryError(`registry ignored the Range request: ${subject}`, 'RANGE_UNSUPPORTED', 200);
      }
      await this.fail(res, `${subject} bytes ${offset}-${end}`, ref.registry);
    }
    const range = contentRange(res.headers);
    if (!range || range[0] !== offset || range[1] !== end) {
      discardBody(res.body);
      throw new RegistryError(
        `registry answered another range than bytes ${offset}-${end}: ${subject}`,
        'RANGE_INVALID',
        206,
      );
    }
    try {
      return await readExactly(res.body, length);
    } catch (err) {
      if (err instanceof ShortBodyError) {
        throw new RegistryError(`${subject}: ${err.message}`, 'SHORT_BODY', 206);
      }
      throw err;
    }
  }

  /** `{ size }` if the repository has the blob, else null. */
  async hasBlob(ref: ImageReference, digest: string, signal?: AbortSignal): Promise<{ size: number } | null> {
    return this.statBlob(ref, digest, pullScopes(ref), signal);
  }

  /**
   * Uploads a blob unless the repository already has it. `open` is called for each attempt (a failed
   * upload restarts from the beginning) and must give exactly `size` bytes hashing to `digest`.
   */
  async pushBlob(
    ref: ImageReference,
    digest: string,
    size: number,
    open: () => Readable,
    signal?: AbortSignal,
  ): Promise<void> {
    parseContentDigest(digest);
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid blob size ${size}`);
    // Asked with the push scope so that a token registry issues one token for the whole push.
    const existing = await this.statBlob(ref, digest, pushScopes(ref), signal);
    if (existing) {
      if (existing.size !== size) {
        throw new RegistryError(
          `registry has ${blobSubject(ref, digest)} with ${existing.size} bytes, not ${size}`,
          'SIZE_MISMATCH',
          200,
        );
      }
      return;
    }
    await this.uploader.upload({ ref, digest, size, open, ...signalOf(signal) });
  }

  /** Links a blob from another repository of the same registry; false if the registry will not. */
  async mountBlob(
    ref: ImageReference,
    fromRepository: string,
    digest: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    parseContentDigest(digest);
    repositoryPath(fromRepository); // validates the name
    const query = new URLSearchParams({ mount: digest, from: fromRepository });
    const res = await this.transport.send({
      registry: ref.registry,
      method: 'POST',
      target: `${repositoryPath(ref.repository)}/blobs/uploads/?${query}`,
      scopes: [...pushScopes(ref), { repository: fromRepository, actions: ['pull'] }],
      headers: { 'content-length': '0' },
      ...signalOf(signal),
    });
    drainBody(res.body);
    if (res.statusCode === 201) return true;
    if (res.statusCode === 202) {
      // The registry opened an ordinary upload instead: close it again.
      const location = headerValue(res.headers.location);
      if (location) await this.uploader.cancel({ ref }, new URL(location, res.url).href);
      return false;
    }
    if ([401, 403, 404].includes(res.statusCode)) return false;
    return this.fail(
      res,
      `mount of ${digest} from ${fromRepository} into ${ref.registry}/${ref.repository}`,
      ref.registry,
    );
  }

  /** Stores a manifest under a tag or digest; returns its digest (checked against the registry's). */
  async putManifest(
    ref: ImageReference,
    reference: string,
    mediaType: string,
    bytes: Buffer,
    signal?: AbortSignal,
  ): Promise<string> {
    if (bytes.length > MAX_MANIFEST_BYTES) {
      throw new ManifestInvalidError(`manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
    }
    checkTagOrDigest(reference);
    const byDigest = reference.includes(':');
    const digest = byDigest ? digestLike(reference, bytes) : sha256Digest(bytes);
    if (byDigest && digest !== reference) {
      throw new DigestMismatchError(reference, digest, `manifest for ${ref.registry}/${ref.repository}`);
    }
    const subject = `${ref.registry}/${ref.repository}${byDigest ? '@' : ':'}${reference}`;
    const res = await this.transport.send({
      registry: ref.registry,
      method: 'PUT',
      target: `${repositoryPath(ref.repository)}/manifests/${reference}`,
      scopes: pushScopes(ref),
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: bytes,
      ...signalOf(signal),
    });
    if (res.statusCode !== 201) await this.fail(res, subject, ref.registry);
    drainBody(res.body);
    const stored = headerValue(res.headers['docker-content-digest']);
    // Only comparable when the registry hashed with the same algorithm.
    if (stored?.startsWith(digest.slice(0, digest.indexOf(':') + 1)) && stored !== digest) {
      throw new DigestMismatchError(digest, stored, `manifest ${subject} as stored by the registry`);
    }
    return digest;
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  private async statBlob(
    ref: ImageReference,
    digest: string,
    scopes: AccessScope[],
    signal?: AbortSignal,
  ): Promise<{ size: number } | null> {
    parseContentDigest(digest);
    const res = await this.transport.send({
      registry: ref.registry,
      method: 'HEAD',
      target: `${repositoryPath(ref.repository)}/blobs/${digest}`,
      scopes,
      followRedirects: true,
      ...signalOf(signal),
    });
    drainBody(res.body);
    if (res.statusCode === 404) return null;
    if (res.statusCode !== 200) await this.fail(res, blobSubject(ref, digest), ref.registry);
    const size = contentLength(res.headers);
    if (size === undefined) {
      throw new RegistryError(
        `registry sent no Content-Length: ${blobSubject(ref, digest)}`,
        'SIZE_MISSING',
        200,
      );
    }
    return { size };
  }

  private getBlob(
    ref: ImageReference,
    digest: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<RegistryResponse> {
    return this.transport.send({
      registry: ref.registry,
      method: 'GET',
      target: `${repositoryPath(ref.repository)}/blobs/${digest}`,
      scopes: pullScopes(ref),
      headers,
      followRedirects: true,
      ...signalOf(signal),
    });
  }

  /** The blob body from `offset` on: a Range request, or a whole body with the head skipped. */
  private async openBlobAt(ref: ImageReference, digest: string, offset: number, signal?: AbortSignal) {
    const subject = blobSubject(ref, digest);
    const res = await this.getBlob(ref, digest, offset > 0 ? { range: `bytes=${offset}-` } : {}, signal);
    if (res.statusCode === 206 && offset > 0) {
      if (contentRange(res.headers)?.[0] === offset) return res.body;
      discardBody(res.body);
      throw new RegistryError(`registry resumed at the wrong offset: ${subject}`, 'RANGE_INVALID', 206);
    }
    if (res.statusCode !== 200) await this.fail(res, subject, ref.registry);
    return offset > 0 ? skipBytes(res.body, offset) : res.body;
  }

  /** Throws the error an unexpected answer deserves (a clear 401, or the registry's own error). */
  private async fail(res: RegistryResponse, subject: string, registry: string): Promise<never> {
    if (res.statusCode === 401) {
      discardBody(res.body);
      throw await this.transport.unauthorized(registry, subject);
    }
    throw await registryErrorFrom(res, subject);
  }
}
