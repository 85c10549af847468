import type { Dispatcher } from 'undici';
import { type AccessScope, RegistryAuthenticator } from './auth.js';
import type { CredentialStore } from './credentials.js';
import { RegistryError } from './errors.js';
import { apiHost } from './reference.js';
import { discardBody } from './response-body.js';
import {
  type HttpMethod,
  RetryingHttpClient,
  type RetryingHttpClientOptions,
} from './retrying-http-client.js';

const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface RegistryRequest {
  /** Registry name as in the reference (`docker.io`, `localhost:5000`): picks host and credentials. */
  registry: string;
  method: HttpMethod;
  /** `/v2/...` path (plus query) or an absolute URL the registry handed us (upload locations). */
  target: string;
  scopes: AccessScope[];
  headers?: Record<string, string>;
  body?: Buffer;
  signal?: AbortSignal;
  /** Follow 3xx (blob GETs are redirected to object storage by many registries). */
  followRedirects?: boolean;
  retry?: boolean;
}

export interface RegistryResponse extends Dispatcher.ResponseData {
  /** Where the answer finally came from (after redirects); Location headers resolve against it. */
  url: URL;
}

export interface RegistryTransportOptions extends RetryingHttpClientOptions {
  plainHttp?: boolean;
  credentials?: CredentialStore;
  /**
   * Origin of a Damselfly daemon's registry mirror (e.g. `http://127.0.0.1:4001`): every request goes
   * there, naming the registry in X-Damselfly-Registry; auth challenges come back relayed, so the usual
   * token flow works. Read-only: for pulls.
   */
  mirror?: string;
}

/** Loopback registries are local test or dev registries: plain http unless told otherwise. */
export function isLoopbackHost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(name);
}

/**
 * Registry HTTP with everything the distribution API wants around it: the right scheme and host,
 * authentication (anonymous first, then the registry's challenge, one retry with fresh credentials),
 * retries, and redirects that never carry our Authorization header to another host.
 */
export class RegistryTransport {
  private readonly http: RetryingHttpClient;
  private readonly auth: RegistryAuthenticator;

  constructor(private readonly options: RegistryTransportOptions) {
    this.http = new RetryingHttpClient(options);
    this.auth = new RegistryAuthenticator(this.http, options.credentials);
  }

  baseUrl(registry: string): URL {
    const host = apiHost(registry);
    const plain = this.options.plainHttp ?? isLoopbackHost(host);
    return new URL(`${plain ? 'http' : 'https'}://${host}/`);
  }

  async send(req: RegistryRequest): Promise<RegistryResponse> {
    const upstream = this.baseUrl(req.registry).origin;
    // Through a mirror, the mirror is who we talk to (and send credentials to); it passes them on.
    const registryOrigin = this.options.mirror ?? upstream;
    if (this.options.mirror) req = { ...req, headers: { ...req.headers, 'x-damselfly-registry': upstream } };
    const url = new URL(req.target, registryOrigin);
    let authorization = await this.auth.authorize(req.registry, req.scopes, req.signal);
    let res = await this.sendTo(req, url, registryOrigin, authorization);
    // Only the registry's own challenges count: a 401 from object storage is not ours to answer.
    if (res.statusCode === 401 && res.url.origin === registryOrigin) {
      const renewed = await this.auth.renew(
        req.registry,
        res.headers['www-authenticate'],
        req.scopes,
        authorization,
        req.signal,
      );
      if (renewed === undefined) return res;
      discardBody(res.body);
      authorization = renewed;
      res = await this.sendTo(req, url, registryOrigin, authorization);
    }
    return res;
  }

  /** A clear error for a 401 that survived renewal. */
  async unauthorized(registry: string, subject: string): Promise<RegistryError> {
    const known = await this.auth.hasCredentials(registry);
    const hint = known ? 'the credentials were refused' : `no credentials configured for ${registry}`;
    return new RegistryError(`authentication required: ${subject} (${hint})`, 'UNAUTHORIZED', 401);
  }

  private async sendTo(
    req: RegistryRequest,
    start: URL,
    registryOrigin: string,
    authorization: string | undefined,
  ): Promise<RegistryResponse> {
    let url = start;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { ...req.headers };
      // Credentials are for the registry only: object storage it redirects to, or an upload
      // Location on another host, must not see them (containerd behaves the same way).
      if (authorization && url.origin === registryOrigin) headers.authorization = authorization;
      const res = await this.http.send({
        method: req.method,
        url,
        headers,
        ...(req.body ? { body: req.body } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
        ...(req.retry === false ? { retry: false } : {}),
      });
      const location = res.headers.location;
      if (!req.followRedirects || !REDIRECT_STATUSES.has(res.statusCode) || typeof location !== 'string') {
        return Object.assign(res, { url });
      }
      discardBody(res.body);
      if (hop >= MAX_REDIRECTS) {
        throw new RegistryError(
          `too many redirects for ${start.pathname}`,
          'TOO_MANY_REDIRECTS',
          res.statusCode,
        );
      }
      url = nextHop(url, location);
    }
  }

  async close(): Promise<void> {
    await this.http.close();
  }
}

function nextHop(from: URL, location: string): URL {
  let next: URL;
  try {
    next = new URL(location, from);
  } catch {
    throw new RegistryError(`registry redirected to an invalid URL`, 'BAD_REDIRECT', 0);
  }
  if (next.protocol !== 'https:' && next.protocol !== 'http:') {
    throw new RegistryError(`registry redirected to a ${next.protocol} URL`, 'BAD_REDIRECT', 0);
  }
  // Never downgrade: an https registry's blobs must not come over plain http.
  if (from.protocol === 'https:' && next.protocol === 'http:') {
    throw new RegistryError(`registry redirected from https to plain http (${next.host})`, 'BAD_REDIRECT', 0);
  }
  return next;
}
